"""satgen:train_inpainting: train a cloud-inpainting model on your own clear imagery,
so train -> inpaint chains in the modeler through the OUTPUT_MODEL file."""

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)

from ..engine.calls import FEEDBACK
from ..engine.inpainting.config import InpaintingConfig
from .base import SatGenAlgorithm


class TrainInpaintingAlgorithm(SatGenAlgorithm):
    def name(self):
        return "train_inpainting"

    def displayName(self):
        return "Train cloud inpainting model"

    def shortHelpString(self):
        return ("Trains a cloud-inpainting model on clear (cloud-free) rasters: a U-Net that takes the bands with "
                "cloudy pixels blanked plus the cloud mask, and a conditional PatchGAN judging the filled result; "
                "losses: L1 inside the mask, L1 outside it, adversarial. The clouds are masks of realistic shape "
                "laid over the clear imagery: fractal noise fields thresholded at 5-60 % cover and, when you give "
                "real cloud masks (non-zero = cloud, e.g. from a Landsat QA band), windows of those.\n\n"
                "Any band count and data type (16-bit Sentinel-2 or Landsat, 8-bit RGB); all input rasters need "
                "the same bands. The percentile stretch of each band is fitted on the training blocks and kept in "
                "the model file. Each scene is split into square blocks, a quarter held out for validation; each "
                "epoch ends with validation, a checkpoint and an updated report (loss_curves.png, samples.png: "
                "cloudy | mask | filled | truth, metrics.json); running again with the same report folder resumes.\n\n"
                "Save the model file somewhere lasting; it goes into 'Inpaint clouds'.\n\n"
                "Command line names: INPUT, BANDS, REAL_MASKS, EPOCHS, PATCH_SIZE, BATCH_SIZE, PATCHES_PER_EPOCH, "
                "WIDTH, SEED, DEVICE, PRECISION, OUTPUT_MODEL, OUTPUT_REPORT; output OUTPUT_HTML (the report as one "
                "page).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT", "Clear raster(s)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", "Bands to use, e.g. 1,2,3,4 (empty: all)", optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "REAL_MASKS", "Real cloud masks lending their shapes (non-zero = cloud)", QgsProcessing.TypeRaster,
            optional=True))
        self.add_training_parameters(InpaintingConfig)
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Model file", fileFilter="SatGen model (*.satgen)"))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_REPORT", "Training report folder"))
        self.addOutput(QgsProcessingOutputHtml("OUTPUT_HTML", "Training report (page: curves, samples, metrics)"))

    def run_engine(self, parameters, context, feedback):
        from ..engine.bands import parse_bands
        from ..engine.errors import InputError

        report = Path(self.parameterAsString(parameters, "OUTPUT_REPORT", context))
        report.mkdir(parents=True, exist_ok=True)
        try:
            bands = parse_bands(self.parameterAsString(parameters, "BANDS", context))
            config = InpaintingConfig(
                inputs=self.raster_paths(parameters, "INPUT", context),
                real_masks=self.raster_paths(parameters, "REAL_MASKS", context),
                output_model=self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context), report_dir=str(report),
                bands=bands, **self.training_values(parameters, context))
        except InputError as exc:
            raise QgsProcessingException(str(exc)) from None
        self.warn_if_temporary(config.output_model, feedback)
        path = self.engine(feedback, "train_inpainting", config, FEEDBACK)
        return {"OUTPUT_MODEL": str(path), "OUTPUT_REPORT": str(report), "OUTPUT_HTML": str(report / "index.html")}
