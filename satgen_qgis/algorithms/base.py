"""What every SatGen algorithm shares: tile parameters, reading a raster layer's
file, dependency check, and turning engine errors into Processing errors.

Algorithms stay thin: parse parameters, call one engine function, return outputs.
"""

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProviderRegistry,
)

from .. import deps
from ..feedback import QgisFeedback

DEVICES = ["auto", "cpu", "cuda"]


class SatGenAlgorithm(QgsProcessingAlgorithm):
    def icon(self):
        from ..provider import ICON
        from qgis.PyQt.QtGui import QIcon

        return QIcon(str(ICON))

    def group(self):
        return ""

    def groupId(self):  # noqa: N802
        return ""

    def createInstance(self):  # noqa: N802
        return type(self)()

    # -- parameters ---------------------------------------------------------
    def add_band_parameter(self, parent: str = "INPUT"):
        self.addParameter(QgsProcessingParameterBand(
            "BANDS", "Input bands for the model (in the model's order; empty: matched automatically)",
            parentLayerParameterName=parent, optional=True, allowMultiple=True))

    def add_tile_parameters(self):
        """Tiling and device: sensible defaults, so they sit under Advanced Parameters."""
        for param in (
            QgsProcessingParameterNumber("TILE_SIZE", "Tile size in pixels (0: the model's)",
                                         QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0),
            QgsProcessingParameterNumber("OVERLAP", "Overlap between tiles in pixels (-1: the model's)",
                                         QgsProcessingParameterNumber.Integer, defaultValue=-1, minValue=-1),
            QgsProcessingParameterNumber("BATCH_SIZE", "Tiles per batch", QgsProcessingParameterNumber.Integer,
                                         defaultValue=4, minValue=1),
            QgsProcessingParameterEnum("DEVICE", "Device (auto: CUDA GPU when present)", options=DEVICES,
                                       defaultValue=0),
        ):
            self.add_advanced(param)

    def add_training_parameters(self, patches_per_epoch: int, width: int, width_help: str = "Generator width (ngf)"):
        """Patches per epoch, network width, seed and device: under Advanced Parameters."""
        for param in (
            QgsProcessingParameterNumber("PATCHES_PER_EPOCH", "Patches per epoch", QgsProcessingParameterNumber.Integer,
                                         defaultValue=patches_per_epoch, minValue=1),
            QgsProcessingParameterNumber("WIDTH", width_help, QgsProcessingParameterNumber.Integer,
                                         defaultValue=width, minValue=4),
            QgsProcessingParameterNumber("SEED", "Random seed", QgsProcessingParameterNumber.Integer, defaultValue=0),
            QgsProcessingParameterEnum("DEVICE", "Device (auto: CUDA GPU when present)", options=DEVICES,
                                       defaultValue=0),
        ):
            self.add_advanced(param)

    def add_advanced(self, param):
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(param)

    def tile_options(self, parameters, context):
        from ..engine.pipeline import TileOptions

        tile = self.parameterAsInt(parameters, "TILE_SIZE", context)
        overlap = self.parameterAsInt(parameters, "OVERLAP", context)
        return TileOptions(
            tile_size=tile or None,
            overlap=None if overlap < 0 else overlap,
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            bands=self.parameterAsInts(parameters, "BANDS", context) or None,
        )

    def raster_path(self, parameters, name, context) -> str:
        """The file behind a raster layer parameter; the engine reads files with GDAL."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: no raster layer given")
        return self.raster_file(layer, name)

    def raster_paths(self, parameters, name, context) -> list:
        """The files behind a multiple-raster-layers parameter."""
        return [self.raster_file(layer, name) for layer in self.parameterAsLayerList(parameters, name, context)]

    @staticmethod
    def raster_file(layer, name: str) -> str:
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{name}: layer '{layer.name()}' is not a file raster ({layer.providerType()}); "
                f"save it as GeoTIFF first (right-click > Export > Save As)")
        parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
        return parts.get("path") or layer.source()

    # -- running --------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        missing = deps.missing()
        if missing:
            raise QgsProcessingException(deps.missing_message(missing))
        from ..engine.errors import Cancelled, SatGenError

        try:
            return self.run_engine(parameters, context, QgisFeedback(feedback))
        except Cancelled:
            raise QgsProcessingException("Cancelled by the user; no output was written.") from None
        except SatGenError as exc:
            raise QgsProcessingException(str(exc)) from None

    def run_engine(self, parameters, context, feedback: QgisFeedback) -> dict:
        raise NotImplementedError
