"""What every SatGen algorithm shares: tile parameters, reading a raster layer's
file, dependency check, and turning engine errors into Processing errors.

Algorithms stay thin: parse parameters, call one engine function, return outputs.

Raster files named by path go to the engine as they are, never through a QGIS layer:
making a QgsRasterLayer computes band statistics (and a histogram) for its default
renderer, and GDAL saves them in `<file>.aux.xml` beside the file, a new file beside
the user's input on every run. Such a file is checked with GDAL's data provider alone
(no renderer, no statistics): in the parameters' own check (`FileAware`, which
`addParameter` swaps in for raster, map-layer and multiple-layers parameters) as in
`raster_path`. Layers of the project (by ID, name or source) and anything that is not a
raster file on disk (URIs, vector files) go through QGIS as before.
"""

import os

from qgis.core import (
    QgsDataProvider,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsProperty,
    QgsProviderRegistry,
)

from .. import runner
from ..engine.calls import Call, Obj
from ..engine.training.options import PRECISIONS
from ..feedback import QgisFeedback
from ..icon import ICON

DEVICES = ["auto", "cpu", "cuda"]
NORMALIZE = ["model", "scene"]  # the engine's scaling.NORMALIZE, in its order
OVERVIEWS = ["auto", "yes", "no"]  # the engine's raster.OVERVIEWS, in its order


def layer_entries(value) -> list:
    """The entries of a layer parameter's value: one, or each of a multiple-layers list."""
    if isinstance(value, QgsProperty) and value.propertyType() == QgsProperty.StaticProperty:
        value = value.staticValue()
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def raster_file_value(value, context) -> str | None:
    """`value` as the path of a raster file to hand to the engine as it is: an existing file,
    no layer of the project or of this run (QGIS's own order: those come first), that GDAL's
    data provider opens as a raster. None for anything else."""
    if not isinstance(value, str) or not value or not os.path.isfile(value):
        return None
    if QgsProcessingUtils.mapLayerFromString(value, context, False) is not None:
        return None
    return value if gdal_raster_provider(value) is not None else None


def is_raster_parameter(definition) -> bool:
    """Whether a parameter takes raster layers only."""
    return isinstance(definition, QgsProcessingParameterRasterLayer) or (
        isinstance(definition, QgsProcessingParameterMultipleLayers)
        and definition.layerType() == QgsProcessing.TypeRaster)


def gdal_raster_provider(path: str):
    """QGIS's GDAL raster data provider for a file, or None where GDAL cannot read it as a raster.
    A provider alone, unlike a layer, computes no statistics and so writes no .aux.xml."""
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")  # a vector file is no raster, and no error either
    try:
        provider = QgsProviderRegistry.instance().createProvider("gdal", path, QgsDataProvider.ProviderOptions())
    finally:
        gdal.PopErrorHandler()
    return provider if provider is not None and provider.isValid() else None


class FileAware:
    """A layer parameter that takes a raster file named by path as it is: acceptable when GDAL's data
    provider opens it, without the QGIS layer whose statistics would be saved beside it as .aux.xml.
    Anything else (layers of the project, URIs, vector files) is checked by QGIS as before. Also
    qgis_process checks every parameter this way before the algorithm's checkParameterValues."""

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802
        entries = layer_entries(value)
        if context is None or not entries:
            return super().checkValueIsAcceptable(value, context)
        rest = [e for e in entries if raster_file_value(e, context) is None]
        if len(rest) == len(entries):
            return super().checkValueIsAcceptable(value, context)
        check = super().checkValueIsAcceptable
        return all(check(e, context) for e in rest)  # the raster files are fine; QGIS checks the rest

    def clone(self):
        return type(self).copy_of(self)

    @classmethod
    def copy_of(cls, definition):
        """This parameter type with everything `definition` has (name, description, flags, default, ...)."""
        copy = cls(definition.name())
        copy.fromVariantMap(definition.toVariantMap())
        return copy


class RasterLayerParameter(FileAware, QgsProcessingParameterRasterLayer):
    pass


class MapLayerParameter(FileAware, QgsProcessingParameterMapLayer):
    pass


class MultipleLayersParameter(FileAware, QgsProcessingParameterMultipleLayers):
    pass


FILE_AWARE = {QgsProcessingParameterRasterLayer: RasterLayerParameter,
              QgsProcessingParameterMapLayer: MapLayerParameter,
              QgsProcessingParameterMultipleLayers: MultipleLayersParameter}


def device_parameter() -> QgsProcessingParameterEnum:
    """DEVICE, as every algorithm that runs a model has it."""
    return QgsProcessingParameterEnum("DEVICE", "Device (auto: CUDA GPU when present)", options=DEVICES, defaultValue=0)


def precision_parameter() -> QgsProcessingParameterEnum:
    """PRECISION, as every training algorithm has it (advanced; optional, so graphical models saved before it
    existed stay valid: left out, it is auto)."""
    return QgsProcessingParameterEnum("PRECISION", "Training arithmetic (auto: bf16 on a CUDA GPU that has it, "
                                      "else fp32; fp16 needs a CUDA GPU)", options=list(PRECISIONS), defaultValue=0,
                                      optional=True)


def precision_value(algorithm, parameters, context) -> str:
    return PRECISIONS[algorithm.parameterAsEnum(parameters, "PRECISION", context)]


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

    # layer parameters QGIS itself renders (as layers, with their styles): checked and read by QGIS
    QGIS_RENDERED: tuple[str, ...] = ()

    # -- parameters ---------------------------------------------------------
    def addParameter(self, definition, create_output=True):  # noqa: N802
        """QGIS's addParameter; a raster, map-layer or multiple-layers parameter whose files go to the
        engine becomes its file-aware twin (module docstring), so every algorithm gets it. The twin is
        a copy: set a definition's flags before adding it, as add_advanced does."""
        twin = FILE_AWARE.get(type(definition))
        if twin is not None and definition.name() not in self.QGIS_RENDERED:
            definition = twin.copy_of(definition)
        return super().addParameter(definition, create_output)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """QGIS's check (file-aware for raster files), with a plain message for a file that GDAL
        cannot read as a raster where QGIS would say it was "not found"."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            for definition in self.parameterDefinitions():
                if not is_raster_parameter(definition):
                    continue
                unreadable = [e for e in layer_entries(parameters.get(definition.name()))
                              if isinstance(e, str) and os.path.isfile(e) and gdal_raster_provider(e) is None]
                if unreadable:
                    return False, (f"{definition.name()}: cannot read {', '.join(unreadable)} as a raster; give a "
                                   f"GeoTIFF or another raster GDAL reads")
        return ok, message

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
            # optional: graphical models saved before it existed stay valid
            QgsProcessingParameterEnum("OVERVIEWS", "Overviews in the output, for fast display (auto: when longer "
                                       "than 4096 px)", options=OVERVIEWS, defaultValue=0, optional=True),
            QgsProcessingParameterBoolean("CLOUD_OPTIMIZED", "Write cloud-optimized GeoTIFFs (COG)", defaultValue=False,
                                          optional=True),
        ):
            self.add_advanced(param)

    def add_normalize_parameter(self, fitted_on: str = "this raster's valid pixels"):
        """NORMALIZE: the input bands stretched as in training, or by the input's own values."""
        self.add_advanced(QgsProcessingParameterEnum(
            "NORMALIZE", f"Normalization (model: the model's training stretch; scene: {fitted_on}, for imagery "
                         f"unlike the model's training data)", options=NORMALIZE, defaultValue=0, optional=True))

    def normalize_value(self, parameters, context) -> str:
        return NORMALIZE[self.parameterAsEnum(parameters, "NORMALIZE", context)]

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
        self.add_advanced(precision_parameter())
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
        values["precision"] = precision_value(self, parameters, context)
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

    def tile_options(self, parameters, context) -> Obj:
        """The engine's TileOptions."""
        tile = self.parameterAsInt(parameters, "TILE_SIZE", context)
        overlap = self.parameterAsInt(parameters, "OVERLAP", context)
        return Obj(
            "pipeline:TileOptions",
            tile_size=tile or None,
            overlap=None if overlap < 0 else overlap,
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            bands=self.parameterAsInts(parameters, "BANDS", context) or None,
            overviews=OVERVIEWS[self.parameterAsEnum(parameters, "OVERVIEWS", context)],
            join="cog" if self.parameterAsBool(parameters, "CLOUD_OPTIMIZED", context) else "geotiff",
        )

    def raster_path(self, parameters, name, context) -> str:
        """The file behind a raster layer parameter; the engine reads files with GDAL. A raster file
        named by path is taken as it is, without a QGIS layer (module docstring)."""
        entries = layer_entries(parameters.get(name))
        path = raster_file_value(entries[0], context) if len(entries) == 1 else None
        if path is not None:
            return path
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: no raster layer given")
        return self.raster_file(layer, name)

    def raster_paths(self, parameters, name, context) -> list:
        """The files behind a multiple-raster-layers parameter, in order (files as raster_path takes them)."""
        paths = []
        for entry in layer_entries(parameters.get(name)):
            path = raster_file_value(entry, context)
            if path is None:
                layers = self.parameterAsLayerList({name: [entry]}, name, context)
                if not layers:
                    raise QgsProcessingException(f"{name}: {entry} is not a raster layer or file; check the path")
                path = self.raster_file(layers[0], name)
            paths.append(path)
        return paths

    @staticmethod
    def raster_file(layer, name: str) -> str:
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{name}: layer '{layer.name()}' is not a file raster ({layer.providerType()}); "
                f"save it as GeoTIFF first (right-click > Export > Save As)")
        parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
        return parts.get("path") or layer.source()

    # -- running --------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # where the engine is missing, runner.run says so
        from ..engine.errors import Cancelled, SatGenError

        try:
            return self.run_engine(parameters, context, QgisFeedback(feedback))
        except Cancelled:
            raise QgsProcessingException("Cancelled by the user; no output was written.") from None
        except SatGenError as exc:
            raise QgsProcessingException(str(exc)) from None

    def run_engine(self, parameters, context, feedback: QgisFeedback) -> dict:
        raise NotImplementedError

    @staticmethod
    def engine(feedback: QgisFeedback, name: str, /, *args, **kwargs):
        """Run the engine's entry point `name` (engine/calls.py) with these arguments where the engine
        lives (runner.py), engine.calls.FEEDBACK standing for `feedback`; its plain result (dataclasses
        as dicts)."""
        return runner.run(Call(name, *args, **kwargs), feedback)
