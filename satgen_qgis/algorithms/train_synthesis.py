"""satgen:train_synthesis: train a class-conditional patch synthesis model (diffusion or the cDCGAN baseline)."""

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProviderRegistry,
)

from ..engine.calls import FEEDBACK
from ..engine.synthesis.config import ARCHS, STRETCHES, SynthesisConfig
from ..engine.training.options import default_of
from .base import DEVICES, SatGenAlgorithm, device_parameter, precision_parameter, precision_value, raster_file_value


class TrainSynthesisAlgorithm(SatGenAlgorithm):
    def name(self):
        return "train_synthesis"

    def displayName(self):
        return "Train patch synthesis model"

    def shortHelpString(self):
        return ("Trains a class-conditional model that generates image patches of each class, for 'Synthesize "
                "labelled patches'. Data: a folder with one sub-folder of images per class (EuroSAT, UC Merced, AID "
                "layout; any size and band count, unreadable files are skipped and listed), or a raster with a "
                "class raster or a polygon layer whose FIELD holds the class: windows whose dominant class covers "
                "THRESHOLD of the patch, split into training and held-out blocks of the scene.\n\n"
                "Architectures: 'diffusion', a class-conditional U-Net (EDM) with classifier-free guidance, and "
                "'cdcgan', the conditional DCGAN baseline. Each epoch writes a checkpoint and the report "
                "(loss_curves.png, samples.png with a row per class, metrics.json); running again with the same "
                "report folder resumes. Slow on a CPU; a CUDA GPU is used when present.\n\n"
                "Diffusion models store a default GUIDANCE for 'Synthesize labelled patches'; left empty, it is chosen "
                "after training: the weight (0.5-3) whose patches come closest to the training patches of their class "
                "(KID in the features of a classifier trained on them; the table is in metrics.json).\n\n"
                "Few labels, many images: UNLABELLED, a folder of images without classes, trains the diffusion "
                "model's unconditional branch (half of each batch), while the classes are learnt from the labelled "
                "data alone.\n\n"
                "Command line names: DATASET, INPUT, LABELS, FIELD, ARCH, PATCH_SIZE, THRESHOLD, UNLABELLED, STRETCH, "
                "EPOCHS, BATCH_SIZE, SEED, GUIDANCE, DEVICE, PRECISION, OUTPUT_MODEL, OUTPUT_REPORT; output "
                "OUTPUT_HTML (the report as one page).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(
            "DATASET", "Class folders (one sub-folder of images per class)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Or: a raster ...", optional=True))
        self.addParameter(QgsProcessingParameterMapLayer(
            "LABELS", "... with a class raster or a polygon layer", optional=True))
        self.addParameter(QgsProcessingParameterString("FIELD", "Class field of the polygon layer", optional=True))
        self.addParameter(QgsProcessingParameterEnum("ARCH", "Architecture", options=list(ARCHS), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            "PATCH_SIZE", "Patch size in pixels (16-128)", QgsProcessingParameterNumber.Integer,
            defaultValue=default_of(SynthesisConfig, "patch_size"),
            minValue=16, maxValue=128))
        self.addParameter(QgsProcessingParameterNumber(
            "EPOCHS", "Epochs", QgsProcessingParameterNumber.Integer,
            defaultValue=default_of(SynthesisConfig, "epochs"), minValue=1))
        for param in (
            QgsProcessingParameterNumber("THRESHOLD", "Share of a patch its dominant class must cover",
                                         QgsProcessingParameterNumber.Double,
                                         defaultValue=default_of(SynthesisConfig, "threshold"), minValue=0.01,
                                         maxValue=1.0),
            QgsProcessingParameterFile("UNLABELLED", "Images without labels, any folder layout (diffusion: they "
                                       "teach the unconditional model; the classes come from the labelled data)",
                                       behavior=QgsProcessingParameterFile.Folder, optional=True),
            QgsProcessingParameterEnum("STRETCH", "Values mapped to the model's range: percentile (0.5-99.5 %) or "
                                       "minmax (minimum to maximum: 8-bit photos such as EuroSAT)",
                                       options=list(STRETCHES), defaultValue=0),
            QgsProcessingParameterNumber("BATCH_SIZE", "Batch size", QgsProcessingParameterNumber.Integer,
                                         defaultValue=default_of(SynthesisConfig, "batch_size"), minValue=1),
            QgsProcessingParameterNumber("SEED", "Random seed", QgsProcessingParameterNumber.Integer,
                                         defaultValue=default_of(SynthesisConfig, "seed")),
            QgsProcessingParameterNumber("GUIDANCE", "Default guidance stored in the model (diffusion; empty: "
                                         "chosen after training)", QgsProcessingParameterNumber.Double,
                                         optional=True, minValue=0.0),
            device_parameter(),
            precision_parameter(),
        ):
            self.add_advanced(param)
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Model file", fileFilter="SatGen model (*.satgen)"))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_REPORT", "Training report folder"))
        self.addOutput(QgsProcessingOutputHtml("OUTPUT_HTML", "Training report (page: curves, samples, metrics)"))

    def labels_path(self, parameters, context):
        path = raster_file_value(parameters.get("LABELS"), context)  # a class raster: no QGIS layer (base.py)
        if path is not None:
            return path, None
        layer = self.parameterAsLayer(parameters, "LABELS", context)
        if layer is None:
            return None
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        path = parts.get("path")
        if not path:
            raise QgsProcessingException(f"LABELS: layer '{layer.name()}' is not a file; save it as GeoPackage or "
                                         f"GeoTIFF first")
        return path, parts.get("layerName") or None

    def run_engine(self, parameters, context, feedback):
        report = Path(self.parameterAsString(parameters, "OUTPUT_REPORT", context))
        report.mkdir(parents=True, exist_ok=True)
        labels = self.labels_path(parameters, context)
        dataset = self.parameterAsFile(parameters, "DATASET", context) or None
        if not dataset and not (parameters.get("INPUT") and labels):
            raise QgsProcessingException("no training data: give class folders (DATASET), or a raster (INPUT) with "
                                         "a class raster or polygon layer (LABELS)")
        config = SynthesisConfig(
            output_model=self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context), report_dir=str(report),
            arch=ARCHS[self.parameterAsEnum(parameters, "ARCH", context)], dataset=dataset,
            input=self.raster_path(parameters, "INPUT", context) if parameters.get("INPUT") else None,
            labels=labels[0] if labels else None, field=self.parameterAsString(parameters, "FIELD", context) or None,
            patch_size=self.parameterAsInt(parameters, "PATCH_SIZE", context),
            threshold=self.parameterAsDouble(parameters, "THRESHOLD", context),
            unlabelled=self.parameterAsFile(parameters, "UNLABELLED", context) or None,
            stretch=STRETCHES[self.parameterAsEnum(parameters, "STRETCH", context)],
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            seed=self.parameterAsInt(parameters, "SEED", context),
            guidance=(None if parameters.get("GUIDANCE") in (None, "")
                      else self.parameterAsDouble(parameters, "GUIDANCE", context)),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            precision=precision_value(self, parameters, context))
        path = self.engine(feedback, "train_synthesis", config, FEEDBACK)
        return {"OUTPUT_MODEL": str(path), "OUTPUT_REPORT": str(report), "OUTPUT_HTML": str(report / "index.html")}
