"""Shared by the inpainting evaluations (development only): the FillNodata baseline, case rasters."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.fill import fillnodata


def fill_nodata(image: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """GDAL FillNodata per band (inverse-distance interpolation from the hole's edge)."""
    out = np.empty_like(image)
    distance = int(np.ceil(np.hypot(cloud.shape[0], cloud.shape[1])))  # reach every pixel of the hole
    for b in range(image.shape[0]):
        out[b] = fillnodata(image[b].copy(), mask=(~cloud).astype(np.uint8), max_search_distance=distance,
                            smoothing_iterations=0)
    return out


def write_case(path, data: np.ndarray, profile: dict) -> str:
    """Write (bands, rows, cols) `data` as a GeoTIFF with `profile` (its count and dtype from the data)."""
    with rasterio.open(path, "w", **dict(profile, count=data.shape[0], dtype=data.dtype)) as dst:
        dst.write(data)
    return str(path)
