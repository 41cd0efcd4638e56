"""satgen:apply_model: run any image-to-image SatGen model file over a raster layer."""

from qgis.core import (
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .. import styles
from ..engine.calls import FEEDBACK
from .base import SatGenAlgorithm


class ApplyModelAlgorithm(SatGenAlgorithm):
    def name(self):
        return "apply_model"

    def displayName(self):
        return "Apply model file"

    def shortHelpString(self):
        return ("Runs an image-to-image SatGen model file (.satgen) over a raster of any size: the raster is "
                "cut into overlapping tiles, the tiles run through the model in batches, and the results are "
                "blended back without seams into a GeoTIFF with the input's CRS and extent.\n\n"
                "BANDS picks the input bands in the model's order (empty: all bands when the count matches, "
                "else bands whose names match the model card). Nodata pixels of the input stay nodata.\n\n"
                "Normalization (NORMALIZE, advanced): model, the default, stretches the bands as the model's "
                "training data were; scene fits the stretch on this raster's own values (2-98 %), for imagery of "
                "another sensor, data type or processing level. When the values lie far from those the model "
                "was trained on, the run says so in a warning.\n\n"
                "Command line names: INPUT, BANDS, MODEL, NORMALIZE, TILE_SIZE, OVERLAP, BATCH_SIZE, DEVICE, "
                "OVERVIEWS, OUTPUT.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.add_band_parameter()
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Model file", extension="satgen"))
        self.add_normalize_parameter()
        self.add_tile_parameters()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Output raster"))

    def run_engine(self, parameters, context, feedback):
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        result = self.engine(feedback, "apply_model", self.parameterAsFile(parameters, "MODEL", context),
                             self.raster_path(parameters, "INPUT", context), output,
                             self.tile_options(parameters, context), FEEDBACK,
                             normalize=self.normalize_value(parameters, context))
        if result["legend"]:  # a map: its exact colours and legend
            styles.when_loaded(context, output, styles.rgb_exact(result["legend"]))
        return {"OUTPUT": output}
