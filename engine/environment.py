"""What the engine would run with in this Python: package versions, what is missing, and the torch
device `auto` picks. Imports only the standard library until it looks at torch, so it answers in a
Python where torch (or numpy) is missing or broken."""

from __future__ import annotations

import importlib.util
import os
import sys

# import name -> distribution name, of what the engine needs to run
REQUIRED = {"torch": "torch", "safetensors": "safetensors", "rasterio": "rasterio", "numpy": "numpy",
            "shapely": "shapely", "PIL": "pillow", "matplotlib": "matplotlib"}  # the last two: reports, PNGs
OPTIONAL = {"torchvision": "torchvision"}  # evaluate_synthesis's Inception network only


def version_of(module: str) -> str | None:
    """The installed version of a module's distribution, '' when it imports but says none, None when absent."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    from importlib import metadata

    for name in (module, {"PIL": "pillow"}.get(module, module)):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def missing(required: dict[str, str] | None = None) -> list[str]:
    """The distributions of `required` (default REQUIRED) that this Python cannot import."""
    return [dist for module, dist in (REQUIRED if required is None else required).items()
            if version_of(module) is None]


def report(required: dict[str, str] | None = None) -> dict:
    """Python, package versions, what is missing, and the device: `device` is the one `auto` picks
    (GPU name and memory, or the CPU and its threads). Never raises for a missing or broken package:
    a broken CUDA set-up is reported in `warnings` and the CPU is used."""
    required = REQUIRED if required is None else required
    out: dict = {"python": sys.version.split()[0], "executable": sys.executable, "prefix": sys.prefix,
                 "packages": {dist: version_of(module) for module, dist in {**required, **OPTIONAL}.items()}}
    out["missing"] = [dist for module, dist in required.items() if out["packages"][dist] is None]
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
        out["device"] = f"cpu ({torch.get_num_threads()} threads of {os.cpu_count()} cores)"
        if torch.version.cuda:
            out["warnings"].append(f"this torch is built for CUDA {torch.version.cuda} but sees no GPU; "
                                   f"SatGen runs on the CPU")
    return out
