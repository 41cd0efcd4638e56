"""satgen:synthesize: N labelled patches of chosen classes (a class-folder data set) and a preview layer."""

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from .. import styles
from ..engine.calls import FEEDBACK
from .base import DEVICES, SatGenAlgorithm, device_parameter

FORMATS = ["tif", "png"]


def default_classes() -> str:
    """The shipped model's classes, for the help text (empty where it cannot be read)."""
    try:
        from ..engine.modelfile import default_model, read_card

        return ", ".join(read_card(default_model("synthesize")).classes)
    except Exception:  # no model file, or no safetensors in this Python: the help just says less
        return ""


class SynthesizeAlgorithm(SatGenAlgorithm):
    def name(self):
        return "synthesize"

    def displayName(self):
        return "Synthesize labelled patches"

    def shortHelpString(self):
        classes = default_classes()
        return ("Generates realistic image patches of chosen land-cover classes with a class-conditional model, to "
                "enlarge a labelled training set (e.g. a rare class). The output folder becomes a labelled data "
                "set: one sub-folder per class with GeoTIFF patches (band values as the model was trained on) or "
                "8-bit natural-colour PNGs, and manifest.csv (file, class, seed, model, guidance, steps). The "
                "preview is a mosaic of the patches, one row per class, that loads as a layer.\n\n"
                "Classes: names from the model's card, separated by commas; empty: every class. A name the model "
                "does not know fails with the list of its classes"
                + (f" (the default model's: {classes})" if classes else "") + ". Same seed, same patches. "
                "Guidance (diffusion models): 1 is plain conditional sampling, higher values give more typical "
                "patches of the class; -1 and 0 steps use the model's defaults.\n\n"
                "Check before relying on them: a classifier trained only on the default model's patches labels "
                "real EuroSAT test patches far less well than one trained on real patches, and whether they help "
                "a classifier with few labels is not measured yet for it (README, Synthesis). 'Evaluate patch "
                "synthesis models' measures it on your own data.\n\n"
                "Model file: one made by 'Train patch synthesis model'; empty uses the default model shipped with "
                "SatGen (EuroSAT RGB: Sentinel-2 natural colour, 64 x 64 px at 10 m, 8-bit, its 10 land-cover "
                "classes; a small model trained on a CPU). resources/models/synthesize_s2_osm.satgen in the "
                "plugin folder is the Sentinel-2 four-band model (B02 B03 B04 B08, 32 px, OpenStreetMap "
                "land-use classes).\n\n"
                "Command line names: MODEL, CLASS, COUNT, SEED, GUIDANCE, STEPS, FORMAT, DEVICE, OUTPUT_FOLDER, "
                "OUTPUT_PREVIEW.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Synthesis model file (empty: the default model)", extension="satgen", optional=True))
        classes = default_classes()
        self.addParameter(QgsProcessingParameterString(
            "CLASS", "Classes, separated by commas (empty: all" + (f"; default model: {classes}" if classes else "")
            + ")", defaultValue="", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "COUNT", "Patches per class", QgsProcessingParameterNumber.Integer, defaultValue=16, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            "SEED", "Random seed (same seed, same patches)", QgsProcessingParameterNumber.Integer, defaultValue=0))
        for param in (
            QgsProcessingParameterNumber("GUIDANCE", "Guidance (1: none; -1: the model's default)",
                                         QgsProcessingParameterNumber.Double, defaultValue=-1.0, minValue=-1.0),
            QgsProcessingParameterNumber("STEPS", "Sampler steps (0: the model's default)",
                                         QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0),
            QgsProcessingParameterEnum("FORMAT", "Patch format", options=FORMATS, defaultValue=0),
            device_parameter(),
        ):
            self.add_advanced(param)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Labelled patches folder"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OUTPUT_PREVIEW", "Preview mosaic", optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputFile("MANIFEST", "Manifest (CSV)"))

    def run_engine(self, parameters, context, feedback):
        preview = self.parameterAsOutputLayer(parameters, "OUTPUT_PREVIEW", context) or None
        guidance = self.parameterAsDouble(parameters, "GUIDANCE", context)
        steps = self.parameterAsInt(parameters, "STEPS", context)
        result = self.engine(
            feedback, "synthesize", self.parameterAsString(parameters, "OUTPUT_FOLDER", context),
            self.parameterAsFile(parameters, "MODEL", context) or None,
            self.parameterAsString(parameters, "CLASS", context),
            count=self.parameterAsInt(parameters, "COUNT", context),
            seed=self.parameterAsInt(parameters, "SEED", context),
            guidance=None if guidance < 0 else guidance, steps=steps or None,
            fmt=FORMATS[self.parameterAsEnum(parameters, "FORMAT", context)], output_preview=preview,
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)], feedback=FEEDBACK)
        styles.when_loaded(context, preview, styles.rgb_exact())
        return {"OUTPUT_FOLDER": result["folder"], "OUTPUT_PREVIEW": result["preview"] if preview else None,
                "MANIFEST": result["manifest"]}
