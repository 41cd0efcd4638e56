"""Checks that the Python packages the engine needs can be imported in QGIS."""

from __future__ import annotations

import importlib.util
import sys

REQUIRED = {"torch": "torch", "safetensors": "safetensors", "rasterio": "rasterio", "numpy": "numpy"}


def missing() -> list[str]:
    return [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]


def missing_message(names: list[str]) -> str:
    python = "python3" if sys.platform != "win32" else "the OSGeo4W Shell's python"
    return (f"SatGen needs the Python package(s) {', '.join(names)}, which QGIS's Python cannot import. "
            f"Install them into the Python that QGIS uses, e.g. `{python} -m pip install {' '.join(names)}` "
            f"(keep numpy below 2 on QGIS 3.22-3.34), then restart QGIS.")


def _version(module: str) -> str | None:
    """The installed version of a module's distribution, '' when it imports but says none, None when absent."""
    if importlib.util.find_spec(module) is None:
        return None
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        mod = __import__(module)
        return str(getattr(mod, "__version__", ""))


def report(required: dict[str, str] | None = None) -> dict:
    """What SatGen's engine would run with in this Python: versions, what is missing, and the torch
    device `auto` picks (GPU name and memory, or CPU threads). Never raises for a missing or broken
    package: a broken CUDA set-up is reported and the CPU is used."""
    required = REQUIRED if required is None else required
    out: dict = {"python": sys.version.split()[0], "executable": sys.executable,
                 "packages": {pip: _version(module) for module, pip in required.items()}}
    out["missing"] = [pip for pip, version in out["packages"].items() if version is None]
    out["device"], out["warnings"] = "unavailable (torch is missing)", []
    if out["packages"].get("torch") is None:
        return out
    try:
        import torch
    except Exception as exc:  # a torch that is installed but does not load (wrong build, missing DLL)
        out["missing"].append("torch")
        out["warnings"].append(f"torch is installed but does not load ({exc}); reinstall it")
        return out
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda or ""
    mps = getattr(torch.backends, "mps", None)
    out["mps_available"] = bool(mps is not None and mps.is_available())
    try:
        cuda = bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
        if cuda:
            props = torch.cuda.get_device_properties(0)
            out["device"] = f"cuda:0 ({props.name}, {props.total_memory / 2 ** 30:.0f} GiB)"
    except Exception as exc:  # a driver/runtime mismatch: the CPU is used, said once
        cuda = False
        out["warnings"].append(f"CUDA is present but unusable ({exc}); SatGen runs on the CPU")
    if not cuda:
        out["device"] = f"cpu ({torch.get_num_threads()} threads)"
        if torch.version.cuda:
            out["warnings"].append(f"this torch is built for CUDA {torch.version.cuda} but sees no GPU; "
                                   f"SatGen runs on the CPU")
    return out
