"""SatGen's own Python environment for the engine: a virtual environment beside QGIS, never QGIS's own.

Why apart: the engine needs torch, rasterio (with a GDAL of its own) and a numpy that may be 2.x;
QGIS's Python has its own GDAL and a numpy its bindings were built against. Installing into QGIS's
Python mixes two GDALs in one process and fights over numpy; in a separate environment the engine
runs as a subprocess (engine_process.py) and QGIS stays as it was.

- Where: $SATGEN_ENV_DIR, else `satgen/engine-env` in QGIS's user folder (the one that holds
  `profiles`), shared by the profiles of one user.
- Made from: a Python of the same version as QGIS's (found beside QGIS's; SATGEN_BASE_PYTHON or
  the PYTHON parameter names another), with its own venv and pip.
- Holds: resources/engine-requirements.txt, from PyPI (torch from PyTorch's CPU index where no NVIDIA
  GPU is present: about 200 MB instead of several GB), or only from a folder of wheels (offline).
- Ready when `satgen-env.json` is in it: written last, after the engine ran in it and found nothing
  missing. A folder without it is unfinished: the next install removes and makes it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess  # nosec B404  # pip and venv of the environment's own Python, without a shell
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import engine_process
from .engine import RESOURCES, calls
from .engine.errors import Cancelled
from .engine.progress import Feedback
from .engine_process import EngineMissingError

MARKER = "satgen-env.json"
CREATING = "satgen-env.creating"  # written before anything else: the folder is ours to remove
REQUIREMENTS = RESOURCES / "engine-requirements.txt"  # resources/ lies beside the engine in a checkout and the zip
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA_WINDOWS_INDEX = "https://download.pytorch.org/whl/cu128"


@dataclass
class EngineEnv:
    folder: Path

    @property
    def python(self) -> Path:
        return self.folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    @property
    def ready(self) -> bool:
        return (self.folder / MARKER).is_file() and self.python.exists()

    def record(self) -> dict:
        try:
            return json.loads((self.folder / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @property
    def outdated(self) -> bool:
        """Whether this plugin asks for other packages than the environment was made with (an update)."""
        return self.record().get("requirements") != requirements_digest()


def requirements_digest() -> str:
    import hashlib

    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]


def folder() -> Path:
    chosen = os.environ.get("SATGEN_ENV_DIR", "").strip()
    if chosen:
        return Path(chosen).expanduser()
    local = os.environ.get("LOCALAPPDATA", "")
    if os.name == "nt" and local:  # not the roaming profile (GBs), and a short path (torch's are long)
        return Path(local) / "SatGen" / "engine-env"
    from qgis.core import QgsApplication

    profile = Path(QgsApplication.qgisSettingsDirPath())  # <user folder>/profiles/<profile>/
    user = profile.parent.parent if profile.parent.name == "profiles" else profile
    return user / "satgen" / "engine-env"


def current() -> EngineEnv | None:
    """The environment, when it is ready."""
    env = EngineEnv(folder())
    return env if env.ready else None


# -- the Python to build it from ------------------------------------------------------------
def base_python_candidates() -> list[Path]:
    """Where a Python of QGIS's own version lies: QGIS's embedded Python reports sys.executable as
    QGIS itself (qgis.exe, qgis_process.bin), so look in its installation."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found: list[Path] = []
    for prefix in dict.fromkeys([Path(sys.base_exec_prefix), Path(sys.exec_prefix), Path(sys.base_prefix)]):
        if os.name == "nt":
            found += [prefix / "python.exe", prefix / "python3.exe"]
        else:
            found += [prefix / "bin" / f"python{version}", prefix / "bin" / "python3"]
    for name in (f"python{version}", "python3", "python"):
        path = shutil.which(name)
        if path:
            found.append(Path(path))
    if Path(sys.executable).name.lower().startswith("python"):  # QGIS desktop may report the PATH's python3
        found.append(Path(sys.executable))
    return list(dict.fromkeys(found))


def probe(python: Path) -> tuple[str | None, str]:
    """(version, '') when `python` can make a venv with pip, else (None, why not)."""
    code = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run([str(python), "-I", "-X", "utf8", "-c", code], capture_output=True, text=True,  # nosec
                              timeout=60, env=engine_process.child_environment(), **engine_process.NO_WINDOW)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, last
    return done.stdout.strip(), ""


def base_python(chosen: str | None = None) -> Path:
    """The Python to build the environment from: `chosen` or SATGEN_BASE_PYTHON, else the first of
    base_python_candidates() of QGIS's version that has venv and ensurepip."""
    chosen = chosen or os.environ.get("SATGEN_BASE_PYTHON", "").strip() or None
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    tried = []
    for python in [Path(chosen)] if chosen else base_python_candidates():
        version, why = probe(python)
        if version is not None and (chosen or version == want):
            return python
        tried.append(f"{python} ({why or 'Python ' + version})")
    hint = ("install Python's venv module (Debian/Ubuntu: sudo apt install python3-venv)" if sys.platform.startswith(
        "linux") else "install Python " + want + " from python.org")
    raise EngineMissingError(f"found no Python {want} that can make a virtual environment; tried "
                             f"{'; '.join(tried) or 'nothing'}. {hint}, or name a Python in PYTHON")


# -- installing --------------------------------------------------------------------------------
def nvidia_gpu() -> bool:
    """Whether an NVIDIA driver reports a GPU (before torch is there to ask)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20,  # nosec B603
                              **engine_process.NO_WINDOW)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def torch_index(platform: str, gpu: bool) -> str | None:
    """The package index for torch: PyTorch's CPU-only builds on Linux without an NVIDIA GPU (PyPI's
    Linux torch is a CUDA build of several GB), its CUDA builds on Windows with one (PyPI's Windows
    torch is CPU-only); None: PyPI's (CUDA on Linux, CPU on Windows, MPS on macOS)."""
    if platform.startswith("linux") and not gpu:
        return TORCH_CPU_INDEX
    if platform == "win32" and gpu:
        return TORCH_CUDA_WINDOWS_INDEX
    return None


def pip_commands(python: Path, wheels: str | None, platform: str, gpu: bool) -> list[list[str]]:
    """The pip runs that install the engine's requirements into `python`'s environment."""
    pip = [str(python), "-I", "-X", "utf8", "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off", "--only-binary", ":all:"]  # wheels only: no package's build code runs
    requirements = ["-r", str(REQUIREMENTS)]
    if wheels:
        return [pip + ["--no-index", "--find-links", str(Path(wheels).resolve()), *requirements]]
    index = torch_index(platform, gpu)
    if index is None:
        return [pip + requirements]
    torch = [line.strip() for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
             if line.strip().startswith("torch")]
    return [pip + ["--index-url", index, *torch], pip + requirements]


def check_wheels(wheels: str) -> None:
    path = Path(wheels)
    if not path.is_dir():
        raise EngineMissingError(f"WHEELS: {wheels} is not a folder; give the folder that holds the wheel "
                                 f"(.whl) files")
    if not any(path.glob("torch-*.whl")):
        raise EngineMissingError(f"WHEELS: {wheels} holds no torch wheel (torch-*.whl); download the wheels on "
                                 f"a machine with internet: pip download -d {path.name} -r "
                                 f"engine-requirements.txt (in the plugin's resources folder)")


def run_step(command: list[str], feedback, stage: str, start: float, end: float) -> None:
    """Run one install command, its output as log lines and progress between `start` and `end`
    (one step per package pip names); cancel ends it."""
    feedback.info(stage)
    process = engine_process.start(command)
    process.stdin.close()
    done, tail = 0, []

    def check():
        if feedback.is_cancelled():
            engine_process.kill(process)
            raise Cancelled("cancelled by the user")

    for _stream, line in engine_process.follow(process, check):
        tail = (tail + [line])[-10:]
        if line.startswith(("Collecting", "Processing", "Installing collected", "Successfully installed")):
            feedback.info(line)
            done += 1
            feedback.progress(start + (end - start) * (1 - 0.9 ** done))
        else:
            engine_process.log(feedback, line)
    process.wait()
    engine_process.close_pipes(process)
    if process.returncode != 0:
        raise EngineMissingError(f"{stage} failed (exit status {process.returncode}): "
                                 f"{' | '.join(tail[-4:])}")
    feedback.progress(end)


def remove(folder: Path) -> None:
    """Remove an environment folder of ours; the CREATING mark goes last, so a folder that could not be
    emptied (a file still in use) is still known as ours next time."""
    for child in folder.iterdir():
        if child.name != CREATING:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()
    if [child.name for child in folder.iterdir()] in ([], [CREATING]):
        shutil.rmtree(folder, ignore_errors=True)


def install(feedback, wheels: str | None = None, python: str | None = None, rebuild: bool = False) -> EngineEnv:
    """Make (or complete, or update) the environment and install the engine's requirements into it, then
    run the engine there to check it; returns the ready environment. `rebuild`: make it anew (one whose
    Python no longer runs, e.g. removed by a QGIS upgrade). A folder this run made is removed again on
    an error or cancel. OSError (permissions, a file in use) becomes EngineMissingError."""
    try:
        return _install(feedback or Feedback(), wheels, python, rebuild)
    except OSError as exc:
        raise EngineMissingError(f"cannot make SatGen's engine environment in {folder()}: {exc}; check that the "
                                 f"folder is writable and no other QGIS is using it, or set SATGEN_ENV_DIR to "
                                 f"another folder") from None


def _install(feedback, wheels: str | None, python: str | None, rebuild: bool) -> EngineEnv:
    if wheels:
        check_wheels(wheels)
    env = EngineEnv(folder())
    made = False
    if rebuild or not env.ready:
        base = base_python(python)  # before anything is removed
        feedback.check_cancelled()
        engine_process.close_idle()  # an idle engine process may be running from this folder
        if env.folder.exists():
            ours = (env.folder / CREATING).exists() or (env.folder / MARKER).exists()
            if not ours and any(env.folder.iterdir()):
                raise EngineMissingError(f"{env.folder} exists and is not SatGen's environment; remove it or set "
                                         f"SATGEN_ENV_DIR to another folder")
            (env.folder / CREATING).write_text("SatGen is making its engine environment here\n", encoding="utf-8")
            remove(env.folder)
        env.folder.mkdir(parents=True, exist_ok=True)
        (env.folder / CREATING).write_text("SatGen is making its engine environment here\n", encoding="utf-8")
        made = True
    try:
        if made:
            run_step([str(base), "-I", "-X", "utf8", "-m", "venv", str(env.folder)], feedback,
                     f"making SatGen's engine environment in {env.folder} with {base}", 0.0, 0.1)
        gpu = nvidia_gpu()
        commands = pip_commands(env.python, wheels, sys.platform, gpu)
        for i, command in enumerate(commands):
            what = "from " + wheels if wheels else ("torch" if len(commands) > 1 and i == 0 else "the packages")
            run_step(command, feedback, f"installing {what} ({'NVIDIA GPU found' if gpu else 'no NVIDIA GPU'})",
                     0.1 + 0.8 * i / len(commands), 0.1 + 0.8 * (i + 1) / len(commands))
        found = engine_process.run_in_subprocess(str(env.python), calls.Call("environment").request(), feedback)
        if found["missing"]:
            raise EngineMissingError(f"the environment still lacks {', '.join(found['missing'])} after the install; "
                                     f"the log above says why")
        record = {"made": time.strftime("%Y-%m-%dT%H:%M:%S"), "wheels": wheels,
                  "requirements": requirements_digest(), **found}
        (env.folder / MARKER).write_text(json.dumps(record, indent=1), encoding="utf-8")
        (env.folder / CREATING).unlink(missing_ok=True)
        feedback.progress(1.0)
        return env
    except BaseException:
        if made:
            remove(env.folder)
        raise
