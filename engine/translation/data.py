"""Aligned satellite -> map training pairs for Pix2Pix, split by spatial blocks.

`load_pair` reads the input bands and warps the target map onto the input's
grid (nearest neighbour, so map colours stay pure), whatever the target's CRS
and resolution; the pair is cropped to where both are valid.

Many pairs (`find_pairs`, `load_pairs`): folders of images and folders of maps
or class masks matched by name, lists of files, or side-by-side images (input
on the left half, map on the right, as in the pix2pix data sets).

A `PairSet` holds the pairs and the regions of each that training and
validation may use. One pair is split by `BlockSplit`, which cuts the grid
into square blocks and holds a deterministic, scene-wide spread of them out;
many pairs are split by whole images (or whole folders), never by windows
across the split. Training patches (`PairPatches`) are drawn wholly inside one
training region and validation tiles (`val_tiles`) wholly inside one held-out
region, so no training window ever touches a held-out pixel. The input scaling
is fitted on training regions only.

Augmentation is joint: the same one of the 8 dihedral transforms (flips and
quarter turns) is applied to input, target and validity, so the pair stays
aligned.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from ..errors import InputError
from ..raster import GDAL_ENV, BlockReader, band_name, open_raster
from ..scaling import BandScaling, fit_percentiles
from ..splits import BlockSplit, Box, box_slices, dihedral
from .config import HOLDOUTS

# points per axis sampled to find where two rasters overlap
OVERLAP_SAMPLES = 257
# a target finer than the input is read decimated to at most this many times the input's pixels
TARGET_OVERSAMPLING = 4
# all the pairs of a training set together, in pixels (the arrays stay in memory: about 10 bytes a pixel for 3
# 8-bit bands and an RGB map)
MAX_SET_PIXELS = 400_000_000
# files taken as images in a folder of pairs
IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".img", ".vrt", ".bmp", ".webp")
# ways to reach the fix for a one-band target
MAP_HINT = "give an RGB(A) map image, or render one from vector land use with satgen:render_map_target"


@dataclass
class Pair:
    """An input raster and its map target on the same pixel grid."""

    x: np.ndarray  # (bands, H, W) input values in the raster's dtype
    y: np.ndarray  # (3, H, W) uint8 RGB map
    valid: np.ndarray  # (H, W) bool: input valid and target covered and valid (what the loss sees)
    transform: Affine  # of pixel (0, 0) of x, y and valid
    crs: object  # rasterio CRS of the input
    band_names: list[str]
    bands: list[int]  # 1-based input bands read
    window: Box  # where x lies in the input raster
    input_valid: np.ndarray | None = None  # (H, W) bool: input pixels that are not nodata (None: all)

    @property
    def height(self) -> int:
        return int(self.x.shape[1])

    @property
    def width(self) -> int:
        return int(self.x.shape[2])

    @property
    def dtype(self) -> str:
        return str(self.x.dtype)


Region = tuple[int, Box]  # (index of the pair, box in its grid)


@dataclass
class PairSet:
    """Pairs and the regions of each that training and validation use.

    One pair is split into blocks (`block_split` keeps its `BlockSplit`); many
    pairs are split by whole images, each pair wholly in `train` or in `val`."""

    pairs: list[Pair]
    names: list[str]  # one per pair: the input's name (relative to its folder for folders of pairs)
    train: list[Region]
    val: list[Region]
    split: str  # how the regions were drawn, in words, for the model card and the report
    block_split: BlockSplit | None = None
    groups: list[str] = field(default_factory=list)  # per pair: the folder (or file) it came from

    @classmethod
    def of_blocks(cls, pair: Pair, split: BlockSplit, name: str = "") -> PairSet:
        _check_grid(pair, split)
        return cls([pair], [name], [(0, b) for b in split.train_blocks], [(0, b) for b in split.val_blocks],
                   f"{len(split.val_blocks)} held-out blocks of {split.block} px", split)

    @property
    def channels(self) -> int:
        return int(self.pairs[0].x.shape[0])

    def held_out_names(self) -> list[str]:
        return sorted({self.names[i] for i, _ in self.val})


def as_pair_set(pairs: PairSet | Pair, split: BlockSplit | None = None) -> PairSet:
    """A PairSet as given, or one pair with its block split."""
    if isinstance(pairs, PairSet):
        return pairs
    if split is None:
        raise ValueError("one pair needs its BlockSplit")
    return PairSet.of_blocks(pairs, split)


# --------------------------------------------------------------------------- loading

def load_pair(input_path: str | os.PathLike, target_path: str | os.PathLike, bands: list[int] | None = None,
              max_pixels: int = 64_000_000, patch: int | None = None) -> Pair:
    """Read `bands` (1-based; None: all) of the input and the target map warped onto the input's grid.

    The result is cropped to the bounding box of pixels valid in both. `patch`,
    if given, is the training patch size the overlap must at least hold.
    """
    with rasterio.Env(**GDAL_ENV):
        with open_raster(input_path) as src, open_raster(target_path) as tgt:
            band_idx = _input_bands(src, bands, input_path)
            t_bands, alpha, lut = _target_layout(tgt, target_path)
            _check_crs(src, tgt, input_path, target_path)
            box = _overlap_box(src, (0, 0, src.height, src.width), tgt, (0, 0, tgt.height, tgt.width))
            if box is None:
                raise InputError(_no_overlap_message(src, tgt, input_path, target_path))
            r0, c0, r1, c1 = box
            h, w = r1 - r0, c1 - c0
            if h * w > max_pixels:
                raise InputError(
                    f"the area where {_name(input_path)} and {_name(target_path)} overlap is {w} x {h} px "
                    f"({h * w / 1e6:.0f} million pixels), more than the {max_pixels / 1e6:.0f} million that "
                    f"training holds in memory; crop the input to a smaller area of interest (QGIS: Clip Raster "
                    f"by Extent; GDAL: gdal_translate -projwin) or resample it to a coarser resolution")
            reader = BlockReader(src, band_idx)
            x, x_valid = reader.read(r0, r1, c0, c1)
            dst_transform = window_transform(Window(c0, r0, w, h), src.transform)
            y, y_valid = _warp_target(tgt, t_bands, alpha, lut, src, box, dst_transform, target_path)
            names = [band_name(src, b) for b in band_idx]
            crs = src.crs

    x_valid = np.ones((h, w), bool) if x_valid is None else x_valid
    valid = y_valid & x_valid
    if not valid.any():
        raise InputError(f"{_name(target_path)} covers no valid pixel of {_name(input_path)} (their extents touch "
                         f"but one is nodata wherever the other has data); give a target map of the same area")
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    a0, a1, b0, b1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (a0, b0, a1, b1) != (0, 0, h, w):
        x = np.ascontiguousarray(x[:, a0:a1, b0:b1])
        y = np.ascontiguousarray(y[:, a0:a1, b0:b1])
        valid = np.ascontiguousarray(valid[a0:a1, b0:b1])
        x_valid = np.ascontiguousarray(x_valid[a0:a1, b0:b1])
        dst_transform = dst_transform * Affine.translation(b0, a0)
    h, w = a1 - a0, b1 - b0
    if patch is not None and (h < patch or w < patch):
        res = abs(dst_transform.a)
        units = _units(crs)
        raise InputError(
            f"{_name(input_path)} and {_name(target_path)} overlap on only {w} x {h} px of the input grid "
            f"(about {w * res:.4g} x {h * res:.4g} {units}), but a training patch needs {patch} x {patch} px; "
            f"give a target map covering more of the input"
            + (f", or use a patch size of at most {_largest_patch(min(h, w))}" if min(h, w) >= 16 else ""))
    return Pair(x=x, y=y, valid=valid, transform=dst_transform, crs=crs, band_names=names, bands=band_idx,
                window=(r0 + a0, c0 + b0, r0 + a1, c0 + b1), input_valid=x_valid)


def _expand(text: str, what: str) -> list[Path]:
    """The paths `text` names: one path, or a glob pattern (sorted), each a file or a folder."""
    if any(ch in text for ch in "*?["):
        found = [Path(p) for p in sorted(glob.glob(os.path.expanduser(text)))]
        if not found:
            raise InputError(f"the {what} pattern {text!r} matches no file or folder; check the path")
        return found
    path = Path(os.path.expanduser(text))
    if not path.exists():
        raise InputError(f"the {what} {text} does not exist; check the path")
    return [path]


def _images_in(folder: Path) -> dict[str, Path]:
    """Image files under `folder` (recursively), keyed by their path relative to it without the suffix."""
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in out:
                raise InputError(f"{folder} holds two images named {key} ({out[key].name} and {path.name}); "
                                 f"keep one of them so each image has one map")
            out[key] = path
    return out


def find_pairs(input: str, target: str = "", side_by_side: bool = False) -> list[tuple[Path, Path | None, str]]:
    """(input file, target file or None for side-by-side images, group) for every pair named.

    `input` and `target` are each a file, a folder or a glob pattern. Files pair with
    files in order; folders pair with folders in order, their images matched by name
    (relative path without the suffix, so a .jpg finds its .png mask). The group is
    the folder (or file) a pair came from, for holding out whole folders."""
    inputs = _expand(input, "input")
    out: list[tuple[Path, Path | None, str]] = []
    if side_by_side:
        if target:
            raise InputError("side-by-side images hold their map in the right half; give no target with them")
        for entry in inputs:
            files = _images_in(entry) if entry.is_dir() else {entry.stem: entry}
            out.extend((path, None, str(entry)) for path in files.values())
        if not out:
            raise InputError(f"no image found in {input}; give a folder of side-by-side images "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        return out
    if not target:
        raise InputError("give the target map(s) for the input(s), or say that the images are side by side")
    targets = _expand(target, "target")
    if len(inputs) != len(targets):
        raise InputError(f"{input!r} names {len(inputs)} file(s) or folder(s) but {target!r} names {len(targets)}; "
                         f"give one target file or folder for each input file or folder")
    for a, b in zip(inputs, targets, strict=True):
        if a.is_dir() != b.is_dir():
            raise InputError(f"{a} and {b} must both be files or both be folders")
        if not a.is_dir():
            out.append((a, b, str(a)))
            continue
        images, maps = _images_in(a), _images_in(b)
        alone = sorted(set(images) - set(maps))
        if alone:
            raise InputError(f"{len(alone)} image(s) in {a} have no map of the same name in {b} (e.g. "
                             f"{', '.join(alone[:3])}); give each image its map, or move the others out")
        if not images:
            raise InputError(f"no image found in {a} ({', '.join(IMAGE_SUFFIXES)})")
        out.extend((images[key], maps[key], str(a)) for key in images)
    return out


def load_side_by_side(path: str | os.PathLike, bands: list[int] | None = None) -> Pair:
    """A side-by-side image: the left half is the input, the right half the map (3 bands, 8-bit)."""
    with rasterio.Env(**GDAL_ENV), open_raster(path) as src:
        band_idx = _input_bands(src, bands, path)
        if src.count < 3 or any(src.dtypes[b - 1] != "uint8" for b in (1, 2, 3)):
            raise InputError(f"{_name(path)} is not an 8-bit RGB image; side-by-side pairs hold an RGB map in "
                             f"their right half")
        if src.width < 2 or src.width % 2:
            raise InputError(f"{_name(path)} is {src.width} px wide, which does not halve into input and map; "
                             f"side-by-side images are two images of the same size, left and right")
        half = src.width // 2
        x = src.read(band_idx, window=Window(0, 0, half, src.height))
        y = src.read([1, 2, 3], window=Window(half, 0, half, src.height))
        names = [band_name(src, b) for b in band_idx]
    h, w = y.shape[1:]
    return Pair(x=x, y=y, valid=np.ones((h, w), bool), transform=Affine.identity(), crs=None, band_names=names,
                bands=band_idx, window=(0, 0, h, w))


def load_pairs(input: str, target: str = "", *, side_by_side: bool = False, bands: list[int] | None = None,
               val_fraction: float = 0.25, seed: int = 0, holdout: str = "image",
               max_pixels: int = MAX_SET_PIXELS) -> PairSet:
    """Every pair `find_pairs` names, loaded, and split by whole images (`holdout` "image") or whole
    folders ("folder"): about `val_fraction` of them held out, chosen by a seeded hash of their names,
    so the choice does not depend on the order of the files. Use `load_pair` and a `BlockSplit` for
    one pair."""
    if holdout not in HOLDOUTS:
        raise InputError(f"holdout must be one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    found = find_pairs(input, target, side_by_side)
    units = [g if holdout == "folder" else str(a) for a, _, g in found]
    if len(set(units)) < 2:
        what = "folders" if holdout == "folder" else "pairs"
        raise InputError(f"{len(set(units))} {what} found, but training and validation need at least one "
                         f"each; give more pairs" + (", or hold out images instead of folders"
                                                     if holdout == "folder" else ""))
    pairs: list[Pair] = []
    names: list[str] = []
    groups: list[str] = []
    total = 0
    for a, b, group in found:
        pair = load_side_by_side(a, bands) if b is None else load_pair(a, b, bands=bands)
        total += pair.height * pair.width
        if total > max_pixels:
            raise InputError(f"the pairs hold more than {max_pixels / 1e6:.0f} million pixels, more than training "
                             f"holds in memory; train on fewer of them, or resample them to a coarser resolution")
        if pairs and (pair.x.shape[0], pair.dtype) != (pairs[0].x.shape[0], pairs[0].dtype):
            raise InputError(f"{_name(a)} has {pair.x.shape[0]} {pair.dtype} band(s) but {names[0]} has "
                             f"{pairs[0].x.shape[0]} {pairs[0].dtype}; every input of a training set needs the "
                             f"same bands")
        pairs.append(pair)
        root = Path(group) if Path(group).is_dir() else Path(a).parent
        names.append(Path(a).relative_to(root).as_posix() if Path(a).is_relative_to(root) else Path(a).name)
        groups.append(group)
    # known by the path below the folder all of them share, so the split does not depend on where the data lie
    common = os.path.commonpath([os.path.abspath(u) for u in units])
    unique = sorted(set(units), key=lambda u: hashlib.sha1(  # a hash for an order, not for security
        f"{seed}:{Path(os.path.relpath(os.path.abspath(u), common)).as_posix()}".encode(),
        usedforsecurity=False).hexdigest())
    n_val = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
    held = set(unique[:n_val])
    train: list[Region] = []
    val: list[Region] = []
    for i, (pair, unit) in enumerate(zip(pairs, units, strict=True)):
        (val if unit in held else train).append((i, (0, 0, pair.height, pair.width)))
    kind = "folder" if holdout == "folder" else "image"
    split = (f"{n_val} of {len(unique)} {kind}s held out by a hash of their names (seed {seed}): "
             f"{len(val)} of {len(pairs)} pairs")
    return PairSet(pairs, names, train, val, split, groups=groups)


def _name(path) -> str:
    return os.path.basename(str(path)) or str(path)


def _units(crs) -> str:
    try:
        if crs is not None and crs.is_geographic:
            return "degrees"
        return crs.linear_units or "units"
    except Exception:  # noqa: BLE001 - only for a message
        return "units"


def _largest_patch(size: int) -> int:
    """Largest power of two <= size (a U-Net-friendly patch size), at least 1."""
    return 1 << max(0, int(size).bit_length() - 1)


def _input_bands(src, bands, path) -> list[int]:
    if not bands:
        return list(range(1, src.count + 1))
    bad = [b for b in bands if not 1 <= int(b) <= src.count]
    if bad:
        raise InputError(f"band(s) {bad} do not exist in {_name(path)}: it has bands 1..{src.count}")
    return [int(b) for b in bands]


def _target_layout(tgt, path):
    """(RGB band indexes or [palette band], alpha band or None, palette LUT or None)."""
    if tgt.count >= 3:
        kinds = {np.dtype(tgt.dtypes[b - 1]).kind for b in (1, 2, 3)}
        if "f" in kinds or "c" in kinds:
            raise InputError(f"target {_name(path)} has floating-point bands ({tgt.dtypes[0]}); a map target must "
                             f"be an 8-bit RGB(A) image: export the map as 8-bit RGB, or {MAP_HINT}")
        interp = list(tgt.colorinterp)
        alpha = next((i + 1 for i, c in enumerate(interp) if c == ColorInterp.alpha and i >= 3), None)
        if alpha is None and tgt.count == 4:
            alpha = 4  # RGBA without the alpha flag: still the alpha
        return [1, 2, 3], alpha, None
    if tgt.count == 1 and tgt.dtypes[0] == "uint8":
        try:
            cmap = tgt.colormap(1)
        except ValueError:
            cmap = None
        if cmap:
            lut = np.zeros((256, 4), np.uint8)
            for k, v in cmap.items():
                lut[int(k)] = v
            return [1], None, lut
    raise InputError(
        f"target {_name(path)} has {tgt.count} band(s); a map target must have 3 bands (RGB) or 4 (RGBA), "
        f"in the colours the model should draw: {MAP_HINT}")


def _check_crs(src, tgt, input_path, target_path) -> None:
    if src.crs is None and tgt.crs is None and (src.width, src.height) == (tgt.width, tgt.height) \
            and src.transform == tgt.transform:
        return  # same pixel grid without georeferencing: aligned pixel for pixel
    for ds, path in ((src, input_path), (tgt, target_path)):
        if ds.crs is None:
            raise InputError(f"{_name(path)} has no coordinate reference system, so it cannot be aligned with the "
                             f"other raster; assign one (QGIS: Assign Projection; GDAL: gdal_edit.py -a_srs)")


def _robust_transform(src_crs, dst_crs, xs: np.ndarray, ys: np.ndarray):
    """Transform coordinates; points that fail become NaN instead of failing the batch."""
    ox = np.full(xs.shape, np.nan)
    oy = np.full(ys.shape, np.nan)
    if src_crs is None or dst_crs is None or src_crs == dst_crs:
        return xs.astype(float), ys.astype(float)

    def run(lo: int, hi: int) -> None:
        try:
            tx, ty = warp_transform(src_crs, dst_crs, xs[lo:hi], ys[lo:hi])
            ox[lo:hi], oy[lo:hi] = tx, ty
        except Exception:  # noqa: BLE001 - GDAL fails the batch for one point outside the projection's domain
            if hi - lo > 1:
                step = max(1, (hi - lo) // 16)
                for s in range(lo, hi, step):
                    run(s, min(hi, s + step))

    run(0, xs.size)
    return ox, oy


def _grid(box: Box, n: int):
    """Pixel-centre (rows, cols) of an up-to n x n grid spanning `box`, as 2-D arrays."""
    r0, c0, r1, c1 = box
    rows = np.linspace(r0 + 0.5, r1 - 0.5, min(r1 - r0, n))
    cols = np.linspace(c0 + 0.5, c1 - 0.5, min(c1 - c0, n))
    return np.meshgrid(rows, cols, indexing="ij")


def _map_pixels(a, rows, cols, b):
    """Pixel (rows, cols) of raster a -> pixel coordinates in raster b (NaN where it fails)."""
    with np.errstate(invalid="ignore", over="ignore"):  # points outside a projection's domain are inf/NaN
        xs, ys = a.transform * (cols.ravel(), rows.ravel())
        xs, ys = _robust_transform(a.crs, b.crs, np.asarray(xs, float), np.asarray(ys, float))
        bc, br = ~b.transform * (xs, ys)
    return np.asarray(br, float).reshape(rows.shape), np.asarray(bc, float).reshape(rows.shape)


def _inside(rows, cols, box: Box):
    r0, c0, r1, c1 = box
    with np.errstate(invalid="ignore"):
        return np.isfinite(rows) & np.isfinite(cols) & (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)


def _overlap_box(a, a_box: Box, b, b_box: Box, n: int = OVERLAP_SAMPLES) -> Box | None:
    """Pixel box of raster a (within a_box) holding everything of a_box that b_box of b covers.

    Sampled both ways (a grid of a mapped into b, and of b into a), then widened
    by the sampling step, so it errs on the large side; None when no sample overlaps.
    """
    ar, ac = _grid(a_box, n)
    br_, bc_ = _map_pixels(a, ar, ac, b)
    hit_a = _inside(br_, bc_, b_box)
    gr, gc = _grid(b_box, n)
    mr, mc = _map_pixels(b, gr, gc, a)
    hit_b = _inside(mr, mc, a_box)
    if not hit_a.any() and not hit_b.any():
        return None
    rows = np.concatenate([ar[hit_a], mr[hit_b]])
    cols = np.concatenate([ac[hit_a], mc[hit_b]])
    r0, c0, r1, c1 = a_box
    step = max((r1 - r0) / max(1, ar.shape[0] - 1), (c1 - c0) / max(1, ar.shape[1] - 1))
    # spacing of b's samples seen in a's pixels, between neighbouring samples that both fall inside
    for axis in (0, 1):
        both = np.logical_and(np.take(hit_b, range(1, hit_b.shape[axis]), axis=axis),
                              np.take(hit_b, range(0, hit_b.shape[axis] - 1), axis=axis))
        if both.any():
            d = np.hypot(np.diff(mr, axis=axis), np.diff(mc, axis=axis))[both]
            step = max(step, float(d.max()))
    margin = int(math.ceil(step)) + 1
    return (max(r0, int(math.floor(rows.min())) - margin), max(c0, int(math.floor(cols.min())) - margin),
            min(r1, int(math.floor(rows.max())) + margin + 1), min(c1, int(math.floor(cols.max())) + margin + 1))


def _no_overlap_message(src, tgt, input_path, target_path) -> str:
    def bounds(ds):
        b = ds.bounds
        return f"{b.left:.6g}, {b.bottom:.6g}, {b.right:.6g}, {b.top:.6g} in {ds.crs}"
    return (f"{_name(input_path)} and {_name(target_path)} do not overlap (input bounds {bounds(src)}; "
            f"target bounds {bounds(tgt)}); give a target map of the same area as the input, or check that "
            f"both rasters carry the right CRS")


def _target_mask(tgt, t_bands, data, window, shape) -> np.ndarray:
    """Validity of the target pixels read: nodata (a pixel is nodata when all its
    colour bands are), else GDAL's per-dataset or alpha mask; cheap when all valid."""
    flags = [tgt.mask_flag_enums[b - 1] for b in t_bands]
    if all(MaskFlags.all_valid in f for f in flags):
        return np.ones(shape, bool)
    if tgt.nodata is not None:
        return ~(data == tgt.nodata).all(axis=0)
    return tgt.read_masks(t_bands[0], window=window, out_shape=shape, resampling=Resampling.nearest) > 0


def _warp_target(tgt, t_bands, alpha, lut, src, box: Box, dst_transform, target_path):
    """Target RGB (3, h, w) uint8 and validity (h, w) bool on the input's window `box`."""
    h, w = box[2] - box[0], box[3] - box[1]
    t_box = _overlap_box(tgt, (0, 0, tgt.height, tgt.width), src, box) if src.crs is not None else \
        (box[0], box[1], min(box[2], tgt.height), min(box[3], tgt.width))
    if t_box is None:
        return np.zeros((3, h, w), np.uint8), np.zeros((h, w), bool)
    tr0, tc0, tr1, tc1 = t_box
    th, tw = tr1 - tr0, tc1 - tc0
    window = Window(tc0, tr0, tw, th)
    out_h, out_w = th, tw
    if th * tw > TARGET_OVERSAMPLING * h * w:  # far finer than the input: read it decimated (nearest)
        f = math.sqrt(th * tw / (TARGET_OVERSAMPLING * h * w))
        out_h, out_w = max(1, math.ceil(th / f)), max(1, math.ceil(tw / f))
    # colour band(s) and validity in one uint8 stack, warped together so they stay consistent
    stack = np.empty((len(t_bands) + 1, out_h, out_w), np.uint8)
    if all(tgt.dtypes[b - 1] == "uint8" for b in t_bands):
        data = tgt.read(t_bands, window=window, out=stack[:-1], resampling=Resampling.nearest)
    else:
        data = tgt.read(t_bands, window=window, out_shape=(len(t_bands), out_h, out_w),
                        resampling=Resampling.nearest)
    valid = _target_mask(tgt, t_bands, data, window, (out_h, out_w))
    if alpha is not None:
        valid &= tgt.read(alpha, window=window, out_shape=(out_h, out_w), resampling=Resampling.nearest) > 0
    if data.dtype != np.uint8:
        vals = data[:, valid]
        if vals.size and (vals.min() < 0 or vals.max() > 255):
            raise InputError(f"target {_name(target_path)} holds values {vals.min()}..{vals.max()} ({data.dtype}); "
                             f"a map target must be an 8-bit RGB(A) image with colours 0..255: export the map as "
                             f"8-bit RGB, or {MAP_HINT}")
        np.clip(data, 0, 255, out=data)
        stack[:-1] = data
    del data
    stack[-1] = valid
    del valid
    src_transform = window_transform(window, tgt.transform) * Affine.scale(tw / out_w, th / out_h)
    same_grid = (src.crs == tgt.crs or (src.crs is None and tgt.crs is None)) \
        and src_transform.almost_equals(dst_transform) and (out_h, out_w) == (h, w)
    if same_grid:
        warped = stack
    elif src.crs is None:  # ungeoreferenced but identical grids are handled above; nothing else aligns
        raise InputError("cannot align rasters without a coordinate reference system")
    else:
        warped = np.zeros((stack.shape[0], h, w), np.uint8)  # 0 in the validity band: not covered
        for i in range(stack.shape[0]):  # band by band: GDAL copies its source, so this bounds the copy
            reproject(stack[i], warped[i], src_transform=src_transform, src_crs=tgt.crs,
                      dst_transform=dst_transform, dst_crs=src.crs, resampling=Resampling.nearest,
                      src_nodata=None, dst_nodata=None, init_dest_nodata=False, num_threads=1)
        del stack
    ok = warped[-1] > 0
    if lut is not None:
        idx = warped[0]
        ok &= lut[idx, 3] > 0
        rgb = np.ascontiguousarray(np.moveaxis(lut[idx, :3], -1, 0))
    else:
        rgb = np.ascontiguousarray(warped[:3])
    return rgb, ok


def _check_grid(pair: Pair, split: BlockSplit) -> None:
    if (split.height, split.width) != (pair.height, pair.width):
        raise InputError(f"the split is for a {split.width} x {split.height} px grid but the pair is "
                         f"{pair.width} x {pair.height} px; build the split from the pair's height and width")


# --------------------------------------------------------------------------- scaling

def training_pixels(pairs: PairSet | Pair, which: str, split: BlockSplit | None = None,
                    max_samples: int = 200_000, seed: int = 0) -> np.ndarray:
    """(C, n) float64: up to `max_samples` valid pixels of the training regions only, of the inputs
    (`which` "x") or of the maps ("y"), drawn uniformly (seeded) across all pairs."""
    ps = as_pair_set(pairs, split)
    masks: dict[int, np.ndarray] = {}
    for i, box in ps.train:  # per pair, its valid pixels in training regions
        pair = ps.pairs[i]
        mask = masks.setdefault(i, np.zeros((pair.height, pair.width), bool))
        mask[box_slices(box)] = pair.valid[box_slices(box)]
    counts = {i: int(m.sum()) for i, m in masks.items()}
    total = sum(counts.values())
    if total == 0:
        raise InputError("the training blocks hold no valid pixels to fit the input scaling (or palette) on; use "
                         "a smaller block size or a larger validation-free area")
    rng = np.random.default_rng(seed)
    parts = []
    for i, mask in masks.items():
        if counts[i]:
            want = max(1, round(max_samples * counts[i] / total)) if total > max_samples else counts[i]
            idx = _draw(mask, counts[i], want, rng)
            array = getattr(ps.pairs[i], which)
            parts.append(array.reshape(array.shape[0], -1)[:, idx].astype(np.float64))
    return np.concatenate(parts, axis=1)


def fit_input_scaling(pairs: PairSet | Pair, split: BlockSplit | None = None, lower: float = 2, upper: float = 98,
                      max_samples: int = 200_000, seed: int = 0) -> BandScaling:
    """Per-band percentile stretch fitted on valid pixels of the training regions only."""
    return fit_percentiles(training_pixels(pairs, "x", split, max_samples, seed), lower, upper)


def fit_palette(pairs: PairSet, size: int, seed: int = 0, max_samples: int = 100_000, iterations: int = 50,
                restarts: int = 8) -> dict[str, list[int]]:
    """A legend of `size` flat colours fitted to the training maps' pixels (k-means; of `restarts` k-means++
    seedings, the one with the least squared error), for a generator of class scores when the maps come
    without one: each colour named by its hex code, the most common first."""
    pixels = training_pixels(pairs, "y", max_samples=max_samples, seed=seed).T  # (n, 3) in 0..255
    distinct = np.unique(pixels, axis=0)
    if len(distinct) < size:
        raise InputError(f"the training maps hold {len(distinct)} distinct colours, fewer than the {size} asked "
                         f"for; give a smaller palette size (--palette-size / PALETTE_SIZE) or the map's legend")
    rng = np.random.default_rng(seed)
    best, least = distinct[:size], np.inf
    for _ in range(restarts):
        centres = _kmeans(pixels, _kmeans_pp(pixels, distinct, size, rng), iterations)
        error = float(((pixels - centres[_nearest_centre(pixels, centres)]) ** 2).sum())
        if error < least:
            best, least = centres, error
    share = np.bincount(_nearest_centre(pixels, best), minlength=size)
    colours = [[int(v) for v in np.clip(np.rint(best[k]), 0, 255)] for k in np.argsort(-share, kind="stable")]
    legend: dict[str, list[int]] = {}
    for c in colours:
        legend.setdefault("#{:02x}{:02x}{:02x}".format(*c), c)
    if len(legend) < size:
        raise InputError(f"the training maps' colours form fewer than {size} distinct groups; give a smaller "
                         f"palette size (--palette-size / PALETTE_SIZE) or the map's legend")
    return legend


def _kmeans_pp(pixels: np.ndarray, distinct: np.ndarray, size: int, rng) -> np.ndarray:
    """k-means++ seeding: a first centre at random, each next one drawn in proportion to its squared distance
    from the nearest centre so far."""
    centres = distinct[[rng.integers(len(distinct))]]
    nearest = ((pixels - centres[0]) ** 2).sum(1)
    while len(centres) < size:
        chosen = pixels[rng.choice(len(pixels), p=nearest / nearest.sum())]
        centres = np.vstack([centres, chosen])
        nearest = np.minimum(nearest, ((pixels - chosen) ** 2).sum(1))
    return centres


def _kmeans(pixels: np.ndarray, centres: np.ndarray, iterations: int) -> np.ndarray:
    for _ in range(iterations):
        label = _nearest_centre(pixels, centres)
        moved = np.array([pixels[label == k].mean(0) if (label == k).any() else centres[k]
                          for k in range(len(centres))])
        if np.allclose(moved, centres, atol=1e-3):
            return moved
        centres = moved
    return centres


def _nearest_centre(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    out = np.empty(len(pixels), np.int64)
    for i in range(0, len(pixels), 65_536):
        chunk = pixels[i:i + 65_536]
        out[i:i + 65_536] = ((chunk[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)
    return out


def _draw(mask: np.ndarray, count: int, want: int, rng) -> np.ndarray:
    """Flat indexes of up to `want` of the `count` True pixels of `mask`, uniformly without listing all of them."""
    if count <= want:
        return np.flatnonzero(mask)
    found, total = [], 0
    batch = int(min(4 * want * mask.size / count, 16_000_000))
    flat = mask.ravel()
    while total < want:
        cand = rng.integers(0, mask.size, batch)
        cand = cand[flat[cand]]
        found.append(cand)
        total += cand.size
    idx = np.unique(np.concatenate(found))
    return rng.choice(idx, want, replace=False) if idx.size > want else idx


# --------------------------------------------------------------------------- samples

def pair_sample(pair: Pair, scaling: BandScaling, row: int, col: int, patch: int, k: int = 0,
                clip: float = 3.0) -> dict[str, np.ndarray]:
    """The patch at (row, col) as model arrays, transformed jointly by dihedral k.

    x: float32 (C, p, p), scaled to about [-1, 1] and clipped to +-clip;
    y: float32 (3, p, p) in [-1, 1]; valid: bool (p, p), the pixels the loss may use.
    Input nodata is 0 in x, as the tile pipeline feeds it at inference; target pixels
    that are not valid (uncovered, nodata, unlabelled) are 0 in y. The input stays
    intact wherever it has data, even where the target has no label.
    """
    sl = (slice(row, row + patch), slice(col, col + patch))
    valid = pair.valid[sl]
    if valid.shape != (patch, patch):
        raise ValueError(f"patch at ({row}, {col}) runs past the {pair.width} x {pair.height} grid")
    x = scaling.to_model(pair.x[(slice(None),) + sl], clip=clip)
    y = pair.y[(slice(None),) + sl].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    if pair.input_valid is not None:
        x[:, ~pair.input_valid[sl]] = 0.0
    y[:, ~valid] = 0.0
    if k:
        x, y, valid = dihedral(x, k), dihedral(y, k), dihedral(valid, k)
    return {"x": np.ascontiguousarray(x, np.float32), "y": np.ascontiguousarray(y, np.float32),
            "valid": np.ascontiguousarray(valid)}


class PairPatches(torch.utils.data.Dataset):
    """`length` random training patches per epoch, each wholly inside one training region.

    Item i of epoch e depends only on (seed, e, i), so results do not depend on
    DataLoader workers or order; call `set_epoch(e)` before each epoch (before
    creating the epoch's DataLoader iterator when workers are persistent).
    Positions are uniform over all patch positions in training regions (of all
    pairs); a patch with fewer than `min_valid` valid pixels is redrawn (up to
    `max_tries` times, then the best one drawn is kept). Items are dicts of
    tensors: x (C, p, p) float32, y (3, p, p) float32 in [-1, 1], valid (p, p)
    bool, and the patch's pair, row, col and dihedral transform k.
    """

    def __init__(self, pairs: PairSet | Pair, split: BlockSplit | None, scaling: BandScaling, patch: int = 256,
                 length: int = 1000, seed: int = 0, min_valid: float = 0.9, augment: bool = True, clip: float = 3.0,
                 max_tries: int = 50):
        self.pairs = as_pair_set(pairs, split)
        if patch < 1 or length < 1:
            raise InputError(f"patch size and patches per epoch must be positive, got {patch} and {length}")
        if seed < 0:
            raise InputError(f"seed must be 0 or more, got {seed}")
        self.scaling = scaling
        self.patch, self.length, self.seed = int(patch), int(length), int(seed)
        self.min_valid, self.augment, self.clip, self.max_tries = float(min_valid), bool(augment), clip, max_tries
        self.epoch = 0
        self.regions = [(i, b) for i, b in self.pairs.train if b[2] - b[0] >= patch and b[3] - b[1] >= patch]
        if not self.regions:
            if self.pairs.block_split is not None:
                block = self.pairs.block_split.block
                raise InputError(f"no training block is at least {patch} x {patch} px (blocks are {block} px, "
                                 f"smaller at the scene's edges); use a block size of at least {patch} "
                                 f"(better {2 * patch}) or a smaller patch size")
            raise InputError(f"no training image is at least {patch} x {patch} px; use a smaller patch size")
        weights = np.array([(b[2] - b[0] - patch + 1) * (b[3] - b[1] - patch + 1)
                            * self.pairs.pairs[i].valid[box_slices(b)].mean() for i, b in self.regions],
                           dtype=np.float64)
        if weights.sum() <= 0:
            raise InputError("the training blocks hold no valid pixels; check the input's nodata and the target's "
                             "coverage, or use other blocks (another seed or block size)")
        self.weights = weights / weights.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> tuple[int, int, int, int]:
        """(pair, row, col, k) of item `index` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        p = self.patch
        best, best_frac = None, -1.0
        for _ in range(self.max_tries):
            i, (r0, c0, r1, c1) = self.regions[int(rng.choice(len(self.regions), p=self.weights))]
            row = int(rng.integers(r0, r1 - p + 1))
            col = int(rng.integers(c0, c1 - p + 1))
            frac = float(self.pairs.pairs[i].valid[row:row + p, col:col + p].mean())
            if frac > best_frac:
                best, best_frac = (i, row, col), frac
            if frac >= self.min_valid:
                break
        k = int(rng.integers(8)) if self.augment else 0
        assert best is not None  # nosec B101  # every draw beats the initial -1.0 (max_tries >= 1)
        return best[0], best[1], best[2], k

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        i, row, col, k = self.window(index)
        s = pair_sample(self.pairs.pairs[i], self.scaling, row, col, self.patch, k, self.clip)
        return {"x": torch.from_numpy(s["x"]), "y": torch.from_numpy(s["y"]), "valid": torch.from_numpy(s["valid"]),
                "pair": i, "row": row, "col": col, "k": k}


def val_tiles(pairs: PairSet | Pair, split: BlockSplit | None, patch: int, scaling: BandScaling | None = None,
              min_valid: float = 0.5, clip: float = 3.0) -> list:
    """Non-overlapping `patch` tiles inside the held-out regions, in a fixed order.

    Tiles are laid from each region's top-left corner; those with fewer than
    `min_valid` valid pixels are left out. Without `scaling`: a list of
    (row, col) for one pair, (pair, row, col) for a PairSet; with it: a list
    of `pair_sample` dicts (numpy arrays, no augmentation) plus their "pair",
    "row" and "col".
    """
    ps = as_pair_set(pairs, split)
    out = []
    for i, (r0, c0, r1, c1) in ps.val:
        valid = ps.pairs[i].valid
        for row in range(r0, r1 - patch + 1, patch):
            for col in range(c0, c1 - patch + 1, patch):
                if valid[row:row + patch, col:col + patch].mean() >= min_valid:
                    out.append((i, row, col))
    if scaling is None:
        return out if isinstance(pairs, PairSet) else [(row, col) for _, row, col in out]
    return [{**pair_sample(ps.pairs[i], scaling, row, col, patch, 0, clip), "pair": i, "row": row, "col": col}
            for i, row, col in out]
