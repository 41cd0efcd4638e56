"""PNG previews of rasters side by side (demos, reports, README pictures).

Rasters are read decimated (never whole at full size), stretched per band
between the 2nd and 98th percentiles unless they are already 8-bit RGB maps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from .raster import open_raster


def read_rgb(path: str | os.PathLike, bands: list[int] | None = None, max_size: int = 800,
             window: Window | None = None) -> np.ndarray:
    """(H, W, 3) uint8 picture of a raster (or of a window of it), at most max_size px wide/high."""
    with open_raster(path) as src:
        window = window or Window(0, 0, src.width, src.height)
        bands = bands or ([1, 2, 3] if src.count >= 3 else [1, 1, 1])
        factor = max(1.0, max(window.width, window.height) / max_size)
        shape = (len(bands), max(1, round(window.height / factor)), max(1, round(window.width / factor)))
        data = src.read(bands, window=window, out_shape=shape, resampling=Resampling.nearest, masked=True)
        if all(src.dtypes[b - 1] == "uint8" for b in bands) and src.count <= 4:
            rgb = data.filled(0).astype(np.uint8)
        else:
            rgb = np.zeros(shape, np.uint8)
            for i, band in enumerate(data):
                values = band.compressed()
                lo, hi = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
                rgb[i] = np.clip((band.filled(lo) - lo) * 255.0 / max(hi - lo, 1e-6), 0, 255)
    return rgb.transpose(1, 2, 0)


def side_by_side(images: list[np.ndarray], labels: list[str], output: str | os.PathLike, gap: int = 6) -> Path:
    """Save pictures in a row with a caption above each."""
    from PIL import Image, ImageDraw

    height = max(img.shape[0] for img in images)
    width = sum(img.shape[1] for img in images) + gap * (len(images) - 1)
    caption = 18
    canvas = Image.new("RGB", (width, height + caption), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for img, label in zip(images, labels, strict=False):
        canvas.paste(Image.fromarray(img), (x, caption))
        draw.text((x + 2, 3), label, fill="black")
        x += img.shape[1] + gap
    output = Path(output)
    canvas.save(output)
    return output


def preview(inputs: list[str], labels: list[str], output: str, bands: list[int] | None = None,
            max_size: int = 800) -> Path:
    """Side-by-side PNG of several co-registered rasters; `bands` applies to the first.
    Pictures smaller than max_size are enlarged by whole pixels (patch mosaics)."""
    pictures = [read_rgb(path, bands if i == 0 else None, max_size) for i, path in enumerate(inputs)]
    pictures = [p.repeat(k, 0).repeat(k, 1) if (k := max(1, max_size // max(p.shape[:2]))) > 1 else p
                for p in pictures]
    return side_by_side(pictures, labels, output)


def _read_decimated(src, bands: list[int], max_size: int) -> np.ma.MaskedArray:
    factor = max(1.0, max(src.width, src.height) / max_size)
    shape = (len(bands), max(1, round(src.height / factor)), max(1, round(src.width / factor)))
    return src.read(bands, out_shape=shape, resampling=Resampling.nearest, masked=True)


def inpaint_preview(cloudy: str | os.PathLike, filled: str | os.PathLike, mask: str | os.PathLike,
                    output: str | os.PathLike, cloudy_bands: list[int], filled_bands: list[int],
                    labels: list[str] | None = None, max_size: int = 600) -> Path:
    """cloudy | mask | filled, both images stretched alike (2-98 % of the clear pixels)."""
    with open_raster(cloudy) as a, open_raster(filled) as b, open_raster(mask) as m:
        x = _read_decimated(a, cloudy_bands, max_size)
        y = _read_decimated(b, filled_bands, max_size)
        cloud = _read_decimated(m, [1], max_size)[0]
    clear = (cloud.filled(255) == 0)
    pictures = []
    for data in (x, y):
        rgb = np.zeros(data.shape, np.uint8)
        for i, band in enumerate(data):
            values = band[clear & ~np.ma.getmaskarray(band)]
            lo, hi = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
            rgb[i] = np.clip((band.filled(lo).astype(np.float64) - lo) * 255.0 / max(hi - lo, 1e-6), 0, 255)
        pictures.append(rgb.transpose(1, 2, 0))
    shown = np.where(cloud.filled(255)[..., None] == 1, 255, np.where(clear[..., None], 0, 128)).astype(np.uint8)
    pictures.insert(1, np.repeat(shown, 3, axis=2))
    return side_by_side(pictures, labels or ["cloudy", "cloud mask used", "filled"], output)
