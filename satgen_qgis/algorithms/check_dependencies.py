"""satgen:check_dependencies: what the engine would run with here, and what is missing."""

import json

from qgis.core import QgsProcessingOutputString

from .. import deps
from .base import SatGenAlgorithm


class CheckDependenciesAlgorithm(SatGenAlgorithm):
    def name(self):
        return "check_dependencies"

    def displayName(self):
        return "Check dependencies"

    def shortHelpString(self):
        return ("Reports the Python that QGIS runs SatGen in, the versions of the packages SatGen's engine needs "
                "(torch, safetensors, rasterio, numpy), what is missing and how to get it, and the device the "
                "algorithms will use: the GPU's name and memory, or the CPU and its threads. A torch built for "
                "CUDA that sees no usable GPU is reported, and the CPU is used. Runs even where torch is "
                "missing.\n\n"
                "Command line names: outputs DEVICE, MISSING (comma-separated, empty when nothing is missing), "
                "REPORT (JSON).")

    def initAlgorithm(self, config=None):
        self.addOutput(QgsProcessingOutputString("DEVICE", "Device the algorithms will use"))
        self.addOutput(QgsProcessingOutputString("MISSING", "Missing packages"))
        self.addOutput(QgsProcessingOutputString("REPORT", "Report (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # no dependency check first: this is the check
        found = deps.report()
        feedback.pushInfo(f"Python {found['python']} ({found['executable']})")
        for name, version in found["packages"].items():
            feedback.pushInfo(f"{name}: {version if version is not None else 'MISSING'}")
        if "torch" in found:
            feedback.pushInfo(f"torch CUDA build: {found['torch_cuda'] or 'none (CPU build)'}; "
                              f"Apple MPS: {'yes' if found['mps_available'] else 'no'}")
        feedback.pushInfo(f"device: {found['device']}")
        for warning in found["warnings"]:
            feedback.pushWarning(warning)
        if found["missing"]:
            feedback.pushWarning(deps.missing_message(found["missing"]))
        else:
            feedback.pushInfo("nothing is missing")
        return {"DEVICE": found["device"], "MISSING": ",".join(found["missing"]), "REPORT": json.dumps(found)}
