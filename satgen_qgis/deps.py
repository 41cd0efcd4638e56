"""Checks that the Python packages the engine needs can be imported in QGIS."""

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
