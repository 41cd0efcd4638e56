"""satgen:inpaint_clouds: fill the cloudy pixels of a raster, clear pixels untouched."""

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterMapLayer,
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

from .base import SatGenAlgorithm, raster_file_value


class InpaintCloudsAlgorithm(SatGenAlgorithm):
    def name(self):
        return "inpaint_clouds"

    def displayName(self):
        return "Inpaint clouds"

    def shortHelpString(self):
        return ("Fills the cloudy pixels of a raster with plausible ground: a smooth (harmonic) fill from the "
                "clear pixels around each hole, corrected by a mask-aware U-Net trained on clear imagery, or, "
                "with a REFERENCE date, from that image matched to this one; every other pixel stays exactly "
                "as it was. "
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
                "Reference image (optional): a clear image of the same place on another date (any CRS and "
                "resolution; same bands, chosen in Reference bands, default the same band numbers). Where it has "
                "values, the cloudy pixels are filled from it: matched to this date by a linear fit per band and "
                "tile on the pixels both images see clearly, plus the interpolated difference. This is far closer "
                "to the truth than any single-image fill (see the README's measured figures); the model fills only "
                "where the reference has no value. The reference itself must be clear where this scene is "
                "cloudy.\n\n"
                "Command line names: INPUT, BANDS, MASK, QA_BAND, QA_BAND_INDEX, QA_EXPRESSION, DETECT, DETECT_BANDS, "
                "DILATE, REFERENCE, REFERENCE_BANDS, MODEL, NORMALIZE, TILE_SIZE, OVERLAP, BATCH_SIZE, DEVICE, "
                "OVERVIEWS, OUTPUT, "
                "OUTPUT_MASK.")

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
        self.addParameter(QgsProcessingParameterRasterLayer(
            "REFERENCE", "Clear reference image of another date (optional: fills from it where it has values)",
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Inpainting model file (empty: the default model)", extension="satgen", optional=True))
        self.add_advanced(QgsProcessingParameterBand(
            "REFERENCE_BANDS", "Reference bands matching the input bands (empty: the same band numbers)",
            parentLayerParameterName="REFERENCE", optional=True, allowMultiple=True))
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

    def run_engine(self, parameters, context, feedback):
        from ..engine.errors import SatGenError
        from ..engine.inpainting.apply import MaskOptions, inpaint

        qa_expression = self.parameterAsString(parameters, "QA_EXPRESSION", context).strip() or None
        has_qa = bool(parameters.get("QA_BAND"))
        if qa_expression and not has_qa:
            raise QgsProcessingException("QA_EXPRESSION needs a QA band: choose the QA raster in QA_BAND (the input "
                                         "itself when the QA band is one of its bands)")
        if has_qa and not qa_expression:
            raise QgsProcessingException("QA_BAND needs a QA_EXPRESSION saying which values are cloud, e.g. "
                                         "bits(14, 15) == 3")
        masks = MaskOptions(
            qa=self.raster_path(parameters, "QA_BAND", context) if has_qa else None,
            qa_band=self.parameterAsInt(parameters, "QA_BAND_INDEX", context) if has_qa else None,
            qa_expression=qa_expression,
            detect=self.parameterAsBool(parameters, "DETECT", context),
            detect_bands=self.parameterAsString(parameters, "DETECT_BANDS", context).strip() or None,
            dilate=self.parameterAsInt(parameters, "DILATE", context),
        )
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        output_mask = self.parameterAsOutputLayer(parameters, "OUTPUT_MASK", context) or None
        mask = self.mask_file(parameters, context)
        if mask is not None:
            masks.mask, masks.mask_layer = mask.path, mask.layer
        try:
            result = inpaint(self.raster_path(parameters, "INPUT", context), output,
                             self.parameterAsFile(parameters, "MODEL", context) or None, masks,
                             self.tile_options(parameters, context), feedback, output_mask=output_mask,
                             normalize=self.normalize_value(parameters, context),
                             reference=self.raster_path(parameters, "REFERENCE", context)
                             if parameters.get("REFERENCE") else None,
                             reference_bands=self.parameterAsInts(parameters, "REFERENCE_BANDS", context) or None)
        except SatGenError as exc:
            if mask is None or mask.label is None:
                raise
            raise type(exc)(mask.user_message(str(exc))) from None
        finally:
            if mask is not None:
                mask.remove_copy()
        if result.best_effort:
            feedback.feedback.pushWarning(f"{result.cloud_fraction:.0%} of the scene is cloud: the fill is a best "
                                          f"effort with little clear context")
        return {"OUTPUT": output, "OUTPUT_MASK": output_mask}

    def mask_file(self, parameters, context) -> "MaskFile | None":
        """MASK as the engine reads it: a raster file as it is (no QGIS layer, base.raster_file_value);
        a GeoPackage / GeoJSON layer as its file and layer; any other polygon layer (Shapefile,
        memory, database, a layer with a filter) saved to a temporary GeoPackage, which messages
        then call by the user's layer."""
        from ..engine.vector import GEOJSON_SUFFIXES, GPKG_SUFFIXES, list_layers

        if not parameters.get("MASK"):
            return None
        path = raster_file_value(parameters.get("MASK"), context)
        if path is not None:
            return MaskFile(path)
        layer = self.parameterAsLayer(parameters, "MASK", context)
        if layer is None:
            raise QgsProcessingException("MASK: the layer could not be loaded; check the path")
        if isinstance(layer, QgsRasterLayer):
            return MaskFile(self.raster_file(layer, "MASK"))
        if not isinstance(layer, QgsVectorLayer):
            raise QgsProcessingException(f"MASK: layer '{layer.name()}' is neither a raster nor a vector layer")
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        source, name = parts.get("path") or "", parts.get("layerName") or None
        suffix = Path(source).suffix.lower()
        if layer.providerType() == "ogr" and not layer.subsetString() and Path(source).is_file() and (
                suffix in GEOJSON_SUFFIXES or (suffix in GPKG_SUFFIXES and (name or len(list_layers(source)) == 1))):
            return MaskFile(source, name)  # read by the engine as it is
        copy = QgsProcessingUtils.generateTempFilename("satgen_mask.gpkg")
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = "mask"
        error = QgsVectorFileWriter.writeAsVectorFormatV3(layer, copy, context.transformContext(), options)
        if error[0] != QgsVectorFileWriter.NoError:
            raise QgsProcessingException(f"MASK: could not read the polygons of '{layer.name()}' ({error[1]})")
        where = source or ("a temporary scratch layer" if layer.providerType() == "memory" else layer.publicSource())
        return MaskFile(copy, "mask", f"'{layer.name()}' ({where})")


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
