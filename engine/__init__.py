"""SatGen engine: generative models for georeferenced satellite rasters.

Plain Python + PyTorch + rasterio; it knows nothing of QGIS, so it runs from the
command line (`python -m engine`) and inside the QGIS plugin alike.
"""

from pathlib import Path

# engine/, resources/ and metadata.txt are siblings both in the source tree and inside the plugin zip
ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"


def _version() -> str:
    """The one version number: metadata.txt's, which QGIS's plugin manager reads too."""
    try:
        for line in (ROOT / "metadata.txt").read_text(encoding="utf-8").splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


__version__ = _version()
