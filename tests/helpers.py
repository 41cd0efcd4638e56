"""Helpers shared by engine and QGIS tests: tiny real rasters and tiny real models.

Rasters are written with rasterio into tmp_path; models are real torch U-Nets,
small enough to run in milliseconds, saved as real SatGen model files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.progress import Feedback  # noqa: E402  (ROOT on sys.path first)

SAMPLES = ROOT / "data" / "samples"


def write_raster(path, data: np.ndarray, *, crs="EPSG:32633", transform=None, nodata=None, descriptions=None,
                 **creation):
    """Write a (bands, rows, cols) array as a GeoTIFF and return its path; `creation`: GDAL creation options
    (e.g. tiled=True, blockxsize=32, blockysize=32, compress="deflate")."""
    bands, rows, cols = data.shape
    transform = transform or from_origin(500000.0, 5800000.0, 10.0, 10.0)
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=bands, dtype=data.dtype,
                       crs=CRS.from_user_input(crs), transform=transform, nodata=nodata, **creation) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return Path(path)


def smooth_image(bands: int, rows: int, cols: int, dtype="uint16", seed: int = 0) -> np.ndarray:
    """Smooth random fields scaled to the dtype, like a blurry scene."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols] / 17.0
    out = []
    for b in range(bands):
        a, c = rng.uniform(0.5, 2.0, 2)
        field = np.sin(a * x + b) * np.cos(c * y - b) + 0.1 * rng.standard_normal((rows, cols))
        out.append(field)
    arr = (np.stack(out) + 1.2) / 2.4
    if np.dtype(dtype).kind == "f":
        return arr.astype(dtype)
    return (arr * min(np.iinfo(dtype).max, 4000)).clip(0, np.iinfo(dtype).max).astype(dtype)


def make_model(path, in_bands=3, out_bands=3, *, depth=3, ngf=4, dtype="uint16", out_dtype="uint8",
               tile=32, overlap=8, scale=1, task="image-to-image", seed=0):
    """A tiny real U-Net with random weights, saved as a SatGen model file."""
    import torch

    from engine.card import Bands, ModelCard
    from engine.modelfile import save_model
    from engine.models.unet import UNet

    torch.manual_seed(seed)
    params = dict(in_channels=in_bands, out_channels=out_bands, ngf=ngf, depth=depth)
    module = UNet(**params)
    hi = 4000.0 if np.dtype(dtype).kind != "f" else 1.0
    card = ModelCard(
        task=task, architecture="unet", params=params,
        inputs=Bands(names=[f"B{i + 1}" for i in range(in_bands)], low=[0.0] * in_bands, high=[hi] * in_bands,
                     dtype=dtype, clip=3.0),
        outputs=Bands(names=["red", "green", "blue"][:out_bands] if out_bands <= 3 else
                      [f"out{i + 1}" for i in range(out_bands)],
                      low=[0.0] * out_bands, high=[255.0] * out_bands, dtype=out_dtype),
        tile_size=tile, overlap=overlap, scale=scale, name="tiny test model",
    )
    return save_model(path, module, card)


def make_inpaint_model(path):
    """A tiny real inpainting model (InpaintUNet, harmonic fill, random weights: the untrained model is the
    harmonic fill itself) for 4 uint16 bands, 32 px tiles, saved as a SatGen model file."""
    import torch

    from engine.card import Bands, ModelCard
    from engine.modelfile import save_model
    from engine.models.inpaint_unet import InpaintUNet

    torch.manual_seed(0)
    params = dict(in_channels=5, out_channels=4, ngf=4, depth=3, fill="harmonic")
    names = ["B1", "B2", "B3", "B4"]
    card = ModelCard(task="inpaint", architecture="inpaint_unet", params=params,
                     inputs=Bands(names=names, low=[0.0] * 4, high=[4000.0] * 4, dtype="uint16", clip=3.0),
                     outputs=Bands(names=names, low=[0.0] * 4, high=[4000.0] * 4, dtype="uint16"),
                     tile_size=32, overlap=8, name="tiny inpainting test model")
    return save_model(path, InpaintUNet(**params), card)


# class colours of the tile data sets below (those of the Dubai land-cover set: building, land, water)
TILE_COLOURS = np.array([[60, 16, 152], [132, 41, 246], [226, 169, 41]], np.uint8)


def tile_scene(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, RGB class mask), both (H, W, 3) uint8: smooth blobs, the class read from the brightness."""
    rng = np.random.default_rng(seed)
    low = rng.random((3, h // 8 + 2, w // 8 + 2))
    img = (np.kron(low, np.ones((8, 8)))[:, :h, :w] * 200 + 20).astype(np.uint8)
    return img.transpose(1, 2, 0).copy(), TILE_COLOURS[np.digitize(img.mean(axis=0), [80, 150])]


def write_tile_dataset(root, tiles: int = 3, per_tile: int = 3):
    """root/Tile N/{images/part_K.jpg, masks/part_K.png}, as the Dubai land-cover set lays its files out:
    sizes differ, names repeat across tiles. Returns root."""
    from PIL import Image

    for t in range(1, tiles + 1):
        for k in range(1, per_tile + 1):
            img, mask = tile_scene(10 * t + k, 64 + 8 * k, 72 + 8 * t)
            for sub, arr, ext in (("images", img, "jpg"), ("masks", mask, "png")):
                (root / f"Tile {t}" / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / f"Tile {t}" / sub / f"part_{k:03d}.{ext}", quality=95)
    return root


class Lines(Feedback):
    """Engine feedback that keeps every info line."""

    def __init__(self):
        self.lines: list[str] = []

    def info(self, message):
        self.lines.append(message)

    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("warning")]


def cloud_scene() -> tuple[np.ndarray, np.ndarray]:
    """(image, cloud): Sentinel-2-like DN, bands B02 B03 B04 B08: vegetation (dark visible, bright
    NIR), water, and a white cloud at rows 10..19, cols 20..29."""
    image = np.zeros((4, 40, 40), np.uint16)
    image[:] = np.array([300, 500, 300, 3500], np.uint16)[:, None, None]
    image[:, :, :8] = np.array([400, 350, 200, 100], np.uint16)[:, None, None]
    image[:, 10:20, 20:30] = np.array([5000, 5100, 5200, 5600], np.uint16)[:, None, None]
    cloud = np.zeros((40, 40), bool)
    cloud[10:20, 20:30] = True
    return image, cloud


def crop_raster(source, out, row: int, col: int, height: int, width: int):
    """Copy a window of a real raster (pixels, band names, georeferencing) to a GeoTIFF."""
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        window = Window(col, row, width, height)
        profile = src.profile | dict(width=width, height=height, transform=src.window_transform(window),
                                     tiled=False, blockxsize=None, blockysize=None)
        with rasterio.open(out, "w", **{k: v for k, v in profile.items() if v is not None}) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return Path(out)

