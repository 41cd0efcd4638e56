"""satgen:inpaint_clouds: fill the cloudy pixels of a raster, clear pixels untouched."""

import re
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from .. import styles
from ..engine.calls import FEEDBACK, Obj
from .base import MultipleLayersParameter, SatGenAlgorithm, layer_entries, raster_file_value

COMBINE = ["weighted", "nearest"]  # the engine's references.COMBINE, in its order
NO_MASK = ("none", "-")  # a REFERENCE_MASKS entry for a reference without a mask of its own, as on the engine's CLI


def is_no_mask(entry) -> bool:
    return entry is None or (isinstance(entry, str) and entry.strip().lower() in ("", *NO_MASK))


class ReferenceMasksParameter(MultipleLayersParameter):
    """REFERENCE_MASKS: layers (raster or polygon), one per reference in the order of REFERENCE; an
    entry 'none' (or None) for a reference without a mask of its own. QGIS checks the layers."""

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802
        entries = layer_entries(value)
        layers = [e for e in entries if not is_no_mask(e)]
        if len(layers) == len(entries):
            return super().checkValueIsAcceptable(value, context)
        return not layers or super().checkValueIsAcceptable(layers, context)


class CombineParameter(QgsProcessingParameterEnum):
    """REFERENCE_COMBINE: an option's number, as every enum, or its name (REFERENCE_COMBINE=nearest)."""

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802
        return (isinstance(value, str) and value.strip().lower() in COMBINE) or super().checkValueIsAcceptable(
            value, context)

    def clone(self):
        copy = CombineParameter(self.name())
        copy.fromVariantMap(self.toVariantMap())
        return copy


class InpaintCloudsAlgorithm(SatGenAlgorithm):
    def name(self):
        return "inpaint_clouds"

    def displayName(self):
        return "Inpaint clouds"

    def shortHelpString(self):
        return ("Fills the cloudy pixels of a raster with plausible ground: a smooth (harmonic) fill from the "
                "clear pixels around each hole, corrected by a mask-aware U-Net trained on clear imagery, or, "
                "with REFERENCE dates, from those images clear there, matched to this one; every other pixel "
                "stays exactly as it was. "
                "Tiles without cloud are copied, not run through the model; filled tiles are blended without "
                "seams, so the raster can be of any size.\n\n"
                "The cloud mask comes from any of (combined when several are given): a mask layer (a raster, "
                "non-zero = cloud, or a polygon layer; any CRS, reprojected onto the input's grid); a QA band with "
                "a bit expression, e.g. 'bits(14, 15) == 3' for Landsat-8 BQA high-confidence cloud or "
                "'qa in (8, 9, 10)' for Sentinel-2 SCL cloud classes (operators & | ^ ~ >> <<, comparisons, in, "
                "and/or/not; bits(lo, hi), bit(n)); or detection (a spectral test, see the README for its "
                "measured accuracy; it finds the bands by their names, e.g. B02 B03 B04 B08, or, for unnamed bands, "
                "by Detection bands under Advanced Parameters, e.g. blue=1,green=2,red=3,nir=4,swir1=5). "
                "Dilation grows the mask by that many pixels to cover cloud edges and haze. "
                "The mask used is written as a second output (1 cloud, 0 clear, 255 nodata).\n\n"
                "Model file: empty uses the default model shipped with SatGen: Sentinel-2 L1C bands B02 B03 B04 B08 "
                "(uint16, 10 m), trained on a cloud-free scene of Virginia. For other imagery (e.g. Landsat-8 "
                "bands 2-5) set Normalization to 'scene' so the bands are stretched by this scene's own clear "
                "pixels, or train a model on your own clear imagery with 'Train cloud inpainting model'. "
                "The output has the selected bands, the input's data type, CRS, extent and nodata.\n\n"
                "Reference dates (optional): other images of the same place on other dates, e.g. a stack of partly "
                "cloudy scenes (any CRS and resolution; the same bands, chosen in Reference bands as band numbers, "
                "e.g. 1,2,3,4, default the input's band numbers). Each may bring its own clouds: a mask layer of its "
                "own (Reference cloud masks: one per reference, in the same order; on the command line 'none' for "
                "a reference without), a QA band of its own with an expression, or detection; its nodata and its "
                "clouds are never used. Dates come from Reference dates (YYYY-MM-DD, comma-separated, in the order "
                "of the references), else each raster's metadata, else its file name (2021-06-30, 20210630); the "
                "input's date likewise from Input date. Each cloudy pixel is filled from the references clear "
                "there, each matched to this date locally (a robust gain and offset per band around the pixel, "
                "plus the interpolated difference), with a guard that tries the fit on clear pixels held out near "
                "the clouds and falls back to pasting the reference as it is where matching would do worse. Where "
                "several references are clear, they are averaged by their measured error (weighted), or the "
                "nearest date is taken (nearest). This is far closer to the truth than any single-image fill (see "
                "the README's measured figures); the model fills only where no reference is clear.\n\n"
                "Optional outputs: the fill source (uint8: 0 the input's own pixel, 1, 2, ... the reference that "
                "carried most weight, numbered in the order given, 100 the model, 255 nodata) and the uncertainty "
                "(float32, per band: the half-width of the 80 % interval of each filled value, in the data's "
                "units; 0 where the input's pixel is kept, NaN at nodata).\n\n"
                "Command line names: INPUT, BANDS, MASK, QA_BAND, QA_BAND_INDEX, QA_EXPRESSION, DETECT, DETECT_BANDS, "
                "DILATE, REFERENCE (repeat it for several: REFERENCE=a.tif REFERENCE=b.tif), REFERENCE_MASKS (as "
                "many, in the same order), REFERENCE_BANDS (e.g. 1,2,3,4), REFERENCE_QA_BAND, "
                "REFERENCE_QA_EXPRESSION, REFERENCE_DETECT, REFERENCE_DATES (e.g. 2021-06-30,2021-08-02), "
                "INPUT_DATE, REFERENCE_COMBINE (0 or weighted, 1 or nearest), MODEL, NORMALIZE, TILE_SIZE, OVERLAP, "
                "BATCH_SIZE, DEVICE, OVERVIEWS, OUTPUT, OUTPUT_MASK, OUTPUT_SOURCE, OUTPUT_UNCERTAINTY.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Cloudy raster"))
        self.add_band_parameter()
        self.addParameter(QgsProcessingParameterMapLayer(
            "MASK", "Cloud mask layer (raster: non-zero = cloud, or polygons)", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "QA_BAND", "QA band raster (empty: none; the input itself for a QA band inside it)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "QA_EXPRESSION", "QA bit expression, e.g. bits(14, 15) == 3", optional=True))
        self.addParameter(QgsProcessingParameterBoolean("DETECT", "Detect clouds (spectral test)", defaultValue=False))
        self.addParameter(QgsProcessingParameterNumber(
            "DILATE", "Dilate the mask by (pixels)", QgsProcessingParameterNumber.Integer, defaultValue=0,
            minValue=0, maxValue=500))
        # several layers; one path, as before, still works (REFERENCE=a.tif, saved graphical models)
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "REFERENCE", "Reference images of other dates (optional: fill from them where they are clear)",
            QgsProcessing.TypeRaster, optional=True))
        self.addParameter(ReferenceMasksParameter(
            "REFERENCE_MASKS", "Reference cloud masks, one per reference in the same order (raster: non-zero = "
            "cloud, or polygons)", QgsProcessing.TypeMapLayer, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Inpainting model file (empty: the default model)", extension="satgen", optional=True))
        # band numbers as text: a band parameter cannot list the bands of several layers
        self.add_advanced(QgsProcessingParameterString(
            "REFERENCE_BANDS", "Reference bands matching the input bands, e.g. 1,2,3,4 (empty: the same band "
            "numbers)", optional=True))
        self.add_advanced(QgsProcessingParameterNumber(
            "REFERENCE_QA_BAND", "Band of each reference holding QA flags (empty: none)",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=1))
        self.add_advanced(QgsProcessingParameterString(
            "REFERENCE_QA_EXPRESSION", "QA bit expression for the references' QA band, e.g. bits(3, 4) > 0",
            optional=True))
        self.add_advanced(QgsProcessingParameterBoolean(  # optional: saved graphical models stay valid
            "REFERENCE_DETECT", "Detect the references' clouds (spectral test)", defaultValue=False, optional=True))
        self.add_advanced(QgsProcessingParameterString(
            "REFERENCE_DATES", "Reference dates, YYYY-MM-DD, comma-separated, in the order of the references "
            "(empty: from their metadata or file names)", optional=True))
        self.add_advanced(QgsProcessingParameterString(
            "INPUT_DATE", "Date of the input, YYYY-MM-DD (empty: from its metadata or file name)", optional=True))
        self.add_advanced(CombineParameter(  # optional: saved graphical models stay valid
            "REFERENCE_COMBINE", "Combine references clear at the same pixel (weighted: by their measured error; "
            "nearest: the nearest date)", options=COMBINE, defaultValue=0, optional=True))
        self.add_advanced(QgsProcessingParameterString(
            "DETECT_BANDS", "Detection bands where band names do not tell them, e.g. blue=1,green=2,red=3,nir=4,"
            "swir1=5 (roles: blue, green, red, nir, swir1; empty: from the band names)", optional=True))
        self.add_advanced(QgsProcessingParameterNumber(
            "QA_BAND_INDEX", "Band of the QA raster", QgsProcessingParameterNumber.Integer, defaultValue=1,
            minValue=1))
        self.add_normalize_parameter("this scene's clear pixels")
        self.add_tile_parameters()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Filled raster"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_MASK", "Cloud mask used", optional=True,
                                                                  createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_SOURCE", "Fill source (0 input, 1, 2, ... reference, 100 model, 255 nodata)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_UNCERTAINTY", "Uncertainty (half-width of the 80 % interval of each filled value)", optional=True,
            createByDefault=False))

    def run_engine(self, parameters, context, feedback):
        from ..engine.errors import SatGenError

        qa_expression = self.parameterAsString(parameters, "QA_EXPRESSION", context).strip() or None
        has_qa = bool(parameters.get("QA_BAND"))
        if qa_expression and not has_qa:
            raise QgsProcessingException("QA_EXPRESSION needs a QA band: choose the QA raster in QA_BAND (the input "
                                         "itself when the QA band is one of its bands)")
        if has_qa and not qa_expression:
            raise QgsProcessingException("QA_BAND needs a QA_EXPRESSION saying which values are cloud, e.g. "
                                         "bits(14, 15) == 3")
        masks = Obj(
            "inpainting.apply:MaskOptions",
            qa=self.raster_path(parameters, "QA_BAND", context) if has_qa else None,
            qa_band=self.parameterAsInt(parameters, "QA_BAND_INDEX", context) if has_qa else None,
            qa_expression=qa_expression,
            detect=self.parameterAsBool(parameters, "DETECT", context),
            detect_bands=self.parameterAsString(parameters, "DETECT_BANDS", context).strip() or None,
            dilate=self.parameterAsInt(parameters, "DILATE", context),
        )
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        output_mask = self.parameterAsOutputLayer(parameters, "OUTPUT_MASK", context) or None
        output_source = self.parameterAsOutputLayer(parameters, "OUTPUT_SOURCE", context) or None
        output_uncertainty = self.parameterAsOutputLayer(parameters, "OUTPUT_UNCERTAINTY", context) or None
        mask = self.mask_file(parameters, context)
        if mask is not None:
            masks.fields.update(mask=mask.path, mask_layer=mask.layer)
        files = [mask]  # the mask files read, whose temporary copies go at the end
        try:
            references = self.reference_options(parameters, context, files)
            result = self.engine(feedback, "inpaint", self.raster_path(parameters, "INPUT", context), output,
                                 self.parameterAsFile(parameters, "MODEL", context) or None, masks,
                                 self.tile_options(parameters, context), FEEDBACK, output_mask=output_mask,
                                 normalize=self.normalize_value(parameters, context), reference=references,
                                 reference_bands=self.band_numbers(parameters, "REFERENCE_BANDS", context),
                                 output_source=output_source, output_uncertainty=output_uncertainty)
        except SatGenError as exc:
            copies = [f for f in files if f is not None and f.label is not None]
            if not copies:
                raise
            message = str(exc)
            for copy in copies:
                message = copy.user_message(message)
            raise type(exc)(message) from None
        finally:
            for file in files:
                if file is not None:
                    file.remove_copy()
        if result["best_effort"]:
            feedback.feedback.pushWarning(f"{result['cloud_fraction']:.0%} of the scene is cloud: the fill is a best "
                                          f"effort with little clear context")
        styles.when_loaded(context, output_mask, styles.CLOUD_MASK)
        references_given = len(references.fields["paths"]) if references else 0
        styles.when_loaded(context, output_source, styles.fill_source(references_given))
        styles.when_loaded(context, output_uncertainty, styles.ramp())
        return {"OUTPUT": output, "OUTPUT_MASK": output_mask, "OUTPUT_SOURCE": output_source,
                "OUTPUT_UNCERTAINTY": output_uncertainty}

    def reference_options(self, parameters, context, files: list):
        """REFERENCE and the settings of the references as the engine's ReferenceOptions (None without
        references), as engine/cli.py maps its flags; the mask files read are appended to `files`."""
        paths = self.raster_paths(parameters, "REFERENCE", context)
        qa_band = parameters.get("REFERENCE_QA_BAND")
        qa_band = self.parameterAsInt(parameters, "REFERENCE_QA_BAND", context) if qa_band not in (None, "") else None
        qa_expression = self.parameterAsString(parameters, "REFERENCE_QA_EXPRESSION", context).strip() or None
        dates = self.text_list(parameters, "REFERENCE_DATES", context)
        masks = layer_entries(parameters.get("REFERENCE_MASKS"))
        if not paths:
            given = [name for name, value in (("REFERENCE_MASKS", [m for m in masks if not is_no_mask(m)]),
                                              ("REFERENCE_QA_BAND", qa_band),
                                              ("REFERENCE_QA_EXPRESSION", qa_expression),
                                              ("REFERENCE_DATES", dates)) if value]
            if given:
                raise QgsProcessingException(f"{', '.join(given)} given without REFERENCE; give the reference "
                                             f"rasters or leave {'them' if len(given) > 1 else 'it'} out")
            return None
        mask_paths: list[str | None] = []
        for entry in masks:
            if is_no_mask(entry):
                mask_paths.append(None)
                continue
            file = self.layer_mask_file(entry, "REFERENCE_MASKS", context)
            files.append(file)
            mask_paths.append(file.path)
        combine = parameters.get("REFERENCE_COMBINE")
        if not (isinstance(combine, str) and combine.strip().lower() in COMBINE):
            combine = COMBINE[self.parameterAsEnum(parameters, "REFERENCE_COMBINE", context)]
        return Obj(
            "inpainting.references:ReferenceOptions",
            paths=paths, masks=mask_paths or None, qa_band=qa_band, qa_expression=qa_expression,
            detect=self.parameterAsBool(parameters, "REFERENCE_DETECT", context), dates=dates or None,
            date=self.parameterAsString(parameters, "INPUT_DATE", context).strip() or None,
            combine=combine.strip().lower())

    def text_list(self, parameters, name: str, context) -> list[str]:
        """A text parameter's comma-separated items; a list (the parameter repeated on the command line,
        or a list in processing.run) gives its entries' items in order."""
        value = parameters.get(name)
        if isinstance(value, (list, tuple)):
            text = ",".join("" if v is None else str(v) for v in value)
        else:
            text = self.parameterAsString(parameters, name, context)
        return [item.strip() for item in text.split(",") if item.strip()]

    def band_numbers(self, parameters, name: str, context) -> list[int] | None:
        """1-based band numbers written as text (1,2,3 or 1 2 3), or given as a list of numbers."""
        items = [part for item in self.text_list(parameters, name, context) for part in re.split(r"\s+", item)]
        try:
            bands = [int(item) for item in items]
        except ValueError:
            bands = [0]
        if any(b < 1 for b in bands):
            raise QgsProcessingException(f"{name}: cannot read '{','.join(items)}' as band numbers; give 1-based "
                                         f"band numbers separated by commas, e.g. 1,2,3,4")
        return bands or None

    def mask_file(self, parameters, context) -> "MaskFile | None":
        """MASK as the engine reads it (layer_mask_file)."""
        if not parameters.get("MASK"):
            return None
        path = raster_file_value(parameters.get("MASK"), context)
        if path is not None:
            return MaskFile(path)
        layer = self.parameterAsLayer(parameters, "MASK", context)
        return self.layer_mask_file(layer, "MASK", context, layer_names=True)

    def layer_mask_file(self, value, name: str, context, layer_names: bool = False) -> "MaskFile":
        """A mask layer (or a path or ID naming one) as the engine reads it: a raster file as it is (no QGIS
        layer, base.raster_file_value); a GeoPackage / GeoJSON layer as its file (and layer, with
        `layer_names`; else only a file with one layer); any other polygon layer (Shapefile, memory,
        database, a layer with a filter) saved to a temporary GeoPackage, which messages then call by
        the user's layer."""
        from qgis.core import QgsMapLayer

        path = raster_file_value(value, context)
        if path is not None:
            return MaskFile(path)
        layer = value if isinstance(value, QgsMapLayer) or value is None else next(
            iter(self.parameterAsLayerList({name: [value]}, name, context)), None)
        if layer is None:
            raise QgsProcessingException(f"{name}: the layer{'' if name == 'MASK' else f' {value}'} could not be "
                                         f"loaded; check the path")
        if isinstance(layer, QgsRasterLayer):
            return MaskFile(self.raster_file(layer, name))
        if not isinstance(layer, QgsVectorLayer):
            raise QgsProcessingException(f"{name}: layer '{layer.name()}' is neither a raster nor a vector layer")
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        source, layer_name = parts.get("path") or "", parts.get("layerName") or None
        suffix = Path(source).suffix.lower()
        if layer.providerType() == "ogr" and not layer.subsetString() and Path(source).is_file():
            if suffix in GEOJSON_SUFFIXES:
                return MaskFile(source, layer_name if layer_names else None)  # read by the engine as it is
            if suffix in GPKG_SUFFIXES:
                names = vector_layers(source)
                if layer_names and (layer_name or len(names) == 1):
                    return MaskFile(source, layer_name)
                if len(names) == 1 and layer_name in (None, names[0]):
                    return MaskFile(source)
        copy = QgsProcessingUtils.generateTempFilename("satgen_mask.gpkg")
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = "mask"
        error = QgsVectorFileWriter.writeAsVectorFormatV3(layer, copy, context.transformContext(), options)
        if error[0] != QgsVectorFileWriter.NoError:
            raise QgsProcessingException(f"{name}: could not read the polygons of '{layer.name()}' ({error[1]})")
        where = source or ("a temporary scratch layer" if layer.providerType() == "memory" else layer.publicSource())
        return MaskFile(copy, "mask", f"'{layer.name()}' ({where})")


GEOJSON_SUFFIXES = (".geojson", ".json")  # the vector files the engine reads itself (engine/vector.py)
GPKG_SUFFIXES = (".gpkg",)


def vector_layers(path: str) -> list[str]:
    """The names of a vector file's layers, by GDAL's OGR (QGIS's own)."""
    from osgeo import ogr

    data = ogr.Open(path)
    return [] if data is None else [data.GetLayer(i).GetName() for i in range(data.GetLayerCount())]


class MaskFile:
    """The file the engine reads for MASK: `path` and GeoPackage `layer`; `label`: for a temporary
    copy of the user's layer, how messages name that layer instead of the copy."""

    def __init__(self, path: str, layer: str | None = None, label: str | None = None):
        self.path, self.layer, self.label = path, layer, label

    def user_message(self, message: str) -> str:
        """An engine message with the temporary copy called by the user's layer."""
        for copy in (f"mask layer {self.layer} of {self.path}", f"{self.path} (layer {self.layer})", self.path):
            message = message.replace(copy, f"mask layer {self.label}")
        return message

    def remove_copy(self) -> None:
        if self.label is not None:
            Path(self.path).unlink(missing_ok=True)
