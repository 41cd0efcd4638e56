"""SatGen engine: generative models for georeferenced satellite rasters.

Plain Python + PyTorch + rasterio; it knows nothing of QGIS, so it runs from the
command line (`python -m engine`) and inside the QGIS plugin alike.
"""

__version__ = "0.1.0"
