"""satgen:translate: satellite raster -> map raster (Pix2Pix), default or own model."""

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .. import styles
from ..engine.calls import FEEDBACK
from .base import SatGenAlgorithm


class TranslateAlgorithm(SatGenAlgorithm):
    def name(self):
        return "translate"

    def displayName(self):
        return "Translate satellite image to map"

    def shortHelpString(self):
        return ("Draws a map from a satellite raster with a Pix2Pix model (U-Net generator trained with a PatchGAN "
                "discriminator). The raster is processed in overlapping tiles blended without seams, so it can "
                "be of any size; the result is an RGB GeoTIFF with the input's CRS and extent.\n\n"
                "Model file: one made by 'Train satellite-to-map model'; empty uses the shipped model that suits "
                "the imagery: for 8-bit RGB without georeferencing, or any imagery finer than 5 m, the RGB "
                "land-cover model trained on the Dubai land-cover set (building, land, road, vegetation, water, "
                "unlabeled); otherwise the Sentinel-2 model: L1C bands B02 B03 B04 B08 at 10 m -> OpenStreetMap "
                "land-use classes (forest, water, wetland, meadow, grass, scrub, farm, residential), trained on a "
                "scene near Brandenburg an der Havel. The log says which. Input bands: the bands in the model's "
                "order (empty: matched by count, or by band names and colours). Legend colours: each pixel takes "
                "the nearest colour of the model's legend, so "
                "the classes can be told apart exactly (untick for the model's raw, blended colours; a model that "
                "scores classes, such as the shipped RGB model, draws each pixel's most likely class either way)."
                "\n\n"
                "Normalization (NORMALIZE, advanced): model, the default, stretches the bands as the model's "
                "training data were; scene fits the stretch on this raster's own values (2-98 %), for imagery of "
                "another sensor, data type or processing level. When the values lie far from those the model "
                "was trained on, the run says so in a warning.\n\n"
                "Command line names: INPUT, BANDS, MODEL, SNAP, NORMALIZE, TILE_SIZE, OVERLAP, BATCH_SIZE, DEVICE, "
                "OVERVIEWS, OUTPUT.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Satellite raster"))
        self.add_band_parameter()
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Translation model file (empty: the shipped model that suits the imagery)", extension="satgen",
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "SNAP", "Draw in the legend's exact colours (crisp classes)", defaultValue=True,
            optional=True))  # optional: graphical models saved before it existed stay valid
        self.add_normalize_parameter()
        self.add_tile_parameters()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Map"))

    def run_engine(self, parameters, context, feedback):
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        result = self.engine(feedback, "translate", self.raster_path(parameters, "INPUT", context), output,
                             self.parameterAsFile(parameters, "MODEL", context) or None,
                             self.tile_options(parameters, context), FEEDBACK,
                             snap=self.parameterAsBool(parameters, "SNAP", context),
                             normalize=self.normalize_value(parameters, context))
        styles.when_loaded(context, output, styles.rgb_exact(result["legend"]))
        return {"OUTPUT": output}
