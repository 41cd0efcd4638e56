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
from ..icon import ICON

DEVICES = ["auto", "cpu", "cuda"]


def device_parameter() -> QgsProcessingParameterEnum:
    """DEVICE, as every algorithm that runs a model has it."""
    return QgsProcessingParameterEnum("DEVICE", "Device (auto: CUDA GPU when present)", options=DEVICES, defaultValue=0)


class SatGenAlgorithm(QgsProcessingAlgorithm):
    def icon(self):
        from qgis.PyQt.QtGui import QIcon

        return QIcon(str(ICON))

    def group(self):
        return ""

    def groupId(self):
        return ""

    def createInstance(self):
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
            device_parameter(),
        ):
            self.add_advanced(param)

    # (parameter, configuration field, label, advanced) of the training options every trainer shares
    TRAINING_PARAMETERS = (
        ("EPOCHS", "epochs", "Epochs", False),
        ("PATCH_SIZE", "patch_size", "Training patch size in pixels (a power of two, 32-512)", False),
        ("BATCH_SIZE", "batch_size", "Batch size", False),
        ("PATCHES_PER_EPOCH", "patches_per_epoch", "Patches per epoch", True),
        ("WIDTH", "ngf", "Generator width (ngf)", True),
        ("SEED", "seed", "Random seed", True),
    )

    def add_training_parameters(self, config_class, width_help: str | None = None, renamed: dict | None = None):
        """Epochs, patch and batch size, and under Advanced Parameters patches per epoch, network
        width, seed and device; defaults from the engine's training configuration, so the Toolbox
        and the command line train the same model. `renamed` {name: old name}: the old name is still
        accepted (hidden), so saved graphical models keep working."""
        from ..engine.training.options import default_of

        for name, field, label, advanced in self.TRAINING_PARAMETERS:
            if name == "WIDTH" and width_help:
                label = width_help
            if name == "PATCH_SIZE":
                limits = dict(minValue=32, maxValue=512)
            else:
                limits = dict(minValue=0 if name == "SEED" else 1)
            param = QgsProcessingParameterNumber(name, label, QgsProcessingParameterNumber.Integer,
                                                 defaultValue=default_of(config_class, field), **limits)
            if advanced:
                self.add_advanced(param)
            else:
                self.addParameter(param)
        self.add_advanced(device_parameter())
        for name, old in (renamed or {}).items():
            alias = QgsProcessingParameterNumber(old, f"{name} (old name)", QgsProcessingParameterNumber.Integer,
                                                 optional=True)
            alias.setFlags(alias.flags() | QgsProcessingParameterDefinition.FlagHidden)
            self.addParameter(alias)

    def training_values(self, parameters, context, renamed: dict | None = None) -> dict:
        """The configuration fields of the shared training parameters (see add_training_parameters)."""
        values = {field: self.parameterAsInt(parameters, name, context)
                  for name, field, _label, _advanced in self.TRAINING_PARAMETERS}
        for name, old in (renamed or {}).items():
            if parameters.get(old) not in (None, "") and name not in parameters:
                field = next(f for n, f, _l, _a in self.TRAINING_PARAMETERS if n == name)
                values[field] = self.parameterAsInt(parameters, old, context)
        values["device"] = DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]
        return values

    @staticmethod
    def warn_if_temporary(path: str, feedback) -> None:
        from qgis.core import QgsProcessingUtils

        if path.startswith(QgsProcessingUtils.tempFolder()):
            feedback.feedback.pushWarning("The model file is a temporary file and will be deleted when QGIS "
                                          "closes; save it to a lasting place to keep it.")

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
    def processAlgorithm(self, parameters, context, feedback):
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
