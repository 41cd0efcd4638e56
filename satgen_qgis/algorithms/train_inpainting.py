"""satgen:train_inpainting: train a cloud-inpainting model on your own clear imagery,
so train -> inpaint chains in the modeler through the OUTPUT_MODEL file."""

import math
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

from .base import DEVICES, SatGenAlgorithm


class TrainInpaintingAlgorithm(SatGenAlgorithm):
    def name(self):
        return "train_inpainting"

    def displayName(self):  # noqa: N802
        return "Train cloud inpainting model"

    def shortHelpString(self):  # noqa: N802
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
                "WIDTH, SEED, DEVICE, OUTPUT_MODEL, OUTPUT_REPORT.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT", "Clear raster(s)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", "Bands to use, e.g. 1,2,3,4 (empty: all)", optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "REAL_MASKS", "Real cloud masks lending their shapes (non-zero = cloud)", QgsProcessing.TypeRaster,
            optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "EPOCHS", "Epochs", QgsProcessingParameterNumber.Integer, defaultValue=20, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            "PATCH_SIZE", "Training patch size in pixels (a power of two, 32-512)",
            QgsProcessingParameterNumber.Integer, defaultValue=128, minValue=32, maxValue=512))
        self.addParameter(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Batch size", QgsProcessingParameterNumber.Integer, defaultValue=8, minValue=1))
        self.add_training_parameters(800, 16)
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Model file", fileFilter="SatGen model (*.satgen)"))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_REPORT", "Training report folder"))

    def run_engine(self, parameters, context, feedback):
        from ..engine.training.inpainting import InpaintingConfig, train_inpainting

        report = Path(self.parameterAsString(parameters, "OUTPUT_REPORT", context))
        report.mkdir(parents=True, exist_ok=True)
        patch = self.parameterAsInt(parameters, "PATCH_SIZE", context)
        depth = int(math.log2(patch)) if patch & (patch - 1) == 0 else 0
        if not 5 <= depth <= 9:
            raise QgsProcessingException(f"PATCH_SIZE must be a power of two between 32 and 512, got {patch}")
        depth = min(depth, 7)
        text = self.parameterAsString(parameters, "BANDS", context).replace(" ", "")
        try:
            bands = [int(b) for b in text.split(",") if b] or None
        except ValueError:
            raise QgsProcessingException(f"BANDS must be band numbers separated by commas, e.g. 1,2,3; got {text!r}")
        config = InpaintingConfig(
            inputs=self.raster_paths(parameters, "INPUT", context),
            real_masks=self.raster_paths(parameters, "REAL_MASKS", context),
            output_model=self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context), report_dir=str(report),
            bands=bands, epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            patches_per_epoch=self.parameterAsInt(parameters, "PATCHES_PER_EPOCH", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            patch_size=patch, tile_size=max(patch, 256), depth=depth, block_size=2 * patch,
            ngf=self.parameterAsInt(parameters, "WIDTH", context), seed=self.parameterAsInt(parameters, "SEED", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
        )
        if config.output_model.startswith(QgsProcessingUtils.tempFolder()):
            feedback.feedback.pushWarning("The model file is a temporary file and will be deleted when QGIS "
                                          "closes; save it to a lasting place to keep it.")
        path = train_inpainting(config, feedback)
        return {"OUTPUT_MODEL": str(path), "OUTPUT_REPORT": str(report)}
