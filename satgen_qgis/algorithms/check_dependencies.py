"""satgen:check_dependencies: where the engine runs, with what, on which device; installs what is missing."""

import json
import os
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
)

from .. import engine_env, runner
from ..engine import calls, environment
from ..engine.errors import Cancelled, SatGenError
from ..feedback import QgisFeedback
from .base import SatGenAlgorithm


class CheckDependenciesAlgorithm(SatGenAlgorithm):
    def name(self):
        return "check_dependencies"

    def displayName(self):
        return "Check dependencies"

    def shortHelpString(self):
        return ("Reports where SatGen's engine runs and with what: the Python, the versions of torch, rasterio, "
                "numpy, safetensors and shapely, torch's CUDA or Apple MPS support, what is missing, and the "
                "device the algorithms will use (the GPU's name and memory, or the CPU and its threads). A torch "
                "built for CUDA that sees no usable GPU is reported once, and the CPU is used.\n\n"
                "Install what is missing: makes SatGen's own Python environment beside QGIS (QGIS's own Python "
                "and its packages are never changed) and installs the engine's packages into it from PyPI; "
                "where no NVIDIA GPU is present torch comes as PyTorch's CPU-only build (about 200 MB instead of "
                "several GB). The algorithms then run the engine there. Wheel folder: install only from a "
                "folder of wheels, for machines without internet (make it elsewhere with `pip download -d "
                "wheels -r engine-requirements.txt`, the file in the plugin's resources folder). The "
                "environment lies in SATGEN_ENV_DIR, else in satgen/engine-env in QGIS's user folder; delete "
                "the folder to remove it.\n\n"
                "Command line names: INSTALL, WHEELS, PYTHON (advanced: the Python to make the environment "
                "with); outputs ENGINE (where the engine runs), DEVICE, MISSING (comma-separated, empty when "
                "nothing is missing), REPORT (JSON).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterBoolean(
            "INSTALL", "Install what is missing (into SatGen's own environment)", defaultValue=False, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "WHEELS", "Install only from this folder of wheels (offline; empty: from the internet)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.add_advanced(QgsProcessingParameterFile(
            "PYTHON", "Python to make the environment with (empty: one of QGIS's version, found beside QGIS)",
            optional=True))
        self.addOutput(QgsProcessingOutputString("ENGINE", "Where the engine runs"))
        self.addOutput(QgsProcessingOutputString("DEVICE", "Device the algorithms will use"))
        self.addOutput(QgsProcessingOutputString("MISSING", "Missing packages"))
        self.addOutput(QgsProcessingOutputString("REPORT", "Report (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # no dependency check first: this is the check
        engine_feedback = QgisFeedback(feedback)
        install = self.parameterAsBool(parameters, "INSTALL", context)
        wheels = self.parameterAsFile(parameters, "WHEELS", context) or None
        python = self.parameterAsFile(parameters, "PYTHON", context) or None
        if (wheels or python) and not install:
            raise QgsProcessingException("WHEELS and PYTHON are for installing: tick INSTALL (INSTALL=true) too")
        try:
            found = self.engine_report(engine_feedback)
            chosen = os.environ.get("SATGEN_PYTHON", "").strip()
            if install and chosen:
                raise QgsProcessingException(f"SATGEN_PYTHON names the engine's Python ({chosen}): install into it "
                                             f"yourself (pip install -r {engine_env.REQUIREMENTS}), or unset "
                                             f"SATGEN_PYTHON to let SatGen make its own environment")
            if install and (found["missing"] or found.get("broken") or found.get("outdated")):
                feedback.pushInfo(f"installing SatGen's engine environment into {engine_env.folder()}")
                engine_env.install(engine_feedback, wheels=wheels, python=python, rebuild=bool(found.get("broken")))
                found = self.engine_report(engine_feedback)
            elif install:
                feedback.pushInfo("nothing is missing: nothing to install")
        except Cancelled:
            raise QgsProcessingException("Cancelled by the user; nothing was changed, or the unfinished environment "
                                         "was removed.") from None
        except SatGenError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo(f"plugin: {found['plugin']}")
        feedback.pushInfo(f"engine: {found['engine']}")
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
            feedback.pushWarning(runner.missing_message())
        else:
            feedback.pushInfo("nothing is missing")
        return {"ENGINE": found["engine"], "DEVICE": found["device"], "MISSING": ",".join(found["missing"]),
                "REPORT": json.dumps(found)}

    @staticmethod
    def engine_report(feedback) -> dict:
        """environment.report() of the Python that runs the engine: SatGen's environment when there is one
        (`broken` and its missing packages where it does not run), else QGIS's own."""
        python = runner.engine_python()
        plugin = {"engine": runner.where(), "plugin": str(Path(__file__).resolve().parent.parent)}
        if python is None:
            return {**plugin, **environment.report()}
        try:
            found = runner.run_in_subprocess(python, calls.Call("environment").request(), feedback)
        except Cancelled:
            raise
        except SatGenError as exc:  # its Python is gone or does not start: nothing of QGIS's own is imported
            found = {"python": "", "executable": python, "prefix": "", "broken": str(exc),
                     "packages": {dist: None for dist in {**environment.REQUIRED, **environment.OPTIONAL}.values()},
                     "missing": list(environment.REQUIRED.values()), "device": "unavailable (broken environment)",
                     "warnings": [f"SatGen's engine environment does not run: {exc}"]}
        env = engine_env.current()
        if env is not None and env.outdated:
            found["outdated"] = True
            found["warnings"].append("this version of SatGen asks for other packages than its environment holds: "
                                     "run Check dependencies with Install ticked to update it")
        return {**plugin, **found}
