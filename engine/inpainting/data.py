"""Training data for cloud inpainting: clear imagery plus cloud masks laid over it.

The imagery is clear (cloud-free) rasters, any band count and dtype, split
into spatial blocks for training and validation. The clouds are masks of
realistic shape: fractal noise (a sum of octaves of smoothly upsampled white
noise, power falling with frequency as in real cloud fields) thresholded at a
coverage drawn from a range, and, when the user has them, windows cut from
real cloud masks (Landsat BQA, Fmask, a drawn layer) at the same coverages.
The network sees the masked image and the mask, and learns to give back the
clear pixels under the mask.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import torch

from ..errors import InputError
from ..raster import BlockReader, open_raster
from ..scaling import BandScaling, fit_percentiles
from ..splits import BlockSplit, dihedral

Box = tuple[int, int, int, int]  # row0, col0, row1, col1


# --------------------------------------------------------------------------- cloud shapes

def fractal_noise(size: int, rng: np.random.Generator, beta: float = 2.0) -> np.ndarray:
    """(size, size) float32 noise with power spectrum ~ 1/f^beta (spectral synthesis:
    white noise shaped in the Fourier domain), the classic model of cloud fields."""
    fy = np.fft.fftfreq(size, d=1.0)[:, None]  # d is numpy's default, given since numpy 1.24's stubs require it
    fx = np.fft.rfftfreq(size, d=1.0)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0 / size
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) * f ** (-beta / 2)
    spectrum[0, 0] = 0.0
    return np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)


def threshold_coverage(field: np.ndarray, coverage: float) -> np.ndarray:
    """True on the `coverage` share of pixels where the field is highest."""
    if coverage <= 0:
        return np.zeros(field.shape, bool)
    return field >= np.quantile(field, 1.0 - coverage)


def synthetic_mask(size: int, coverage: float, rng: np.random.Generator) -> np.ndarray:
    """A cloud mask of fractal shape covering about `coverage` of a size x size patch.
    Smoothness varies: beta 2.4..3.6, from scattered ragged cumulus to smooth banks."""
    return threshold_coverage(fractal_noise(size, rng, beta=float(rng.uniform(2.4, 3.6))), coverage)


class RealMasks:
    """Windows of real cloud masks (non-zero = cloud) with a wanted coverage.

    Masks are read whole (cloud masks are small: one byte a pixel) and pooled;
    a window of the requested size is drawn at random until its cloud share
    falls within the tolerance of the target, rotated or flipped at random."""

    def __init__(self, paths: Sequence[str | os.PathLike], size: int, tries: int = 40):
        self.size, self.tries = size, tries
        self.masks: list[np.ndarray] = []
        for path in paths:
            with open_raster(path) as src:
                data = src.read(1, masked=True)
            cloud = np.asarray(data.filled(0) != 0)
            if cloud.shape[0] < size or cloud.shape[1] < size:
                cloud = np.pad(cloud, ((0, max(0, size - cloud.shape[0])), (0, max(0, size - cloud.shape[1]))),
                               mode="reflect" if min(cloud.shape) > 1 else "edge")
            if cloud.any():
                self.masks.append(cloud)
        if paths and not self.masks:
            raise InputError(f"none of the cloud masks {', '.join(map(str, paths))} has any cloud pixel "
                             f"(non-zero); give masks where clouds are non-zero")

    def __bool__(self) -> bool:
        return bool(self.masks)

    def sample(self, coverage: float, rng: np.random.Generator, tolerance: float = 0.1) -> np.ndarray | None:
        best, best_err = None, 1.0
        for _ in range(self.tries):
            m = self.masks[int(rng.integers(len(self.masks)))]
            r = int(rng.integers(0, m.shape[0] - self.size + 1))
            c = int(rng.integers(0, m.shape[1] - self.size + 1))
            window = m[r:r + self.size, c:c + self.size]
            err = abs(float(window.mean()) - coverage)
            if err < best_err:
                best, best_err = window, err
            if err <= tolerance * coverage:
                break
        if best is None or best_err > max(0.5 * coverage, 0.05):
            return None
        return dihedral(best, int(rng.integers(8)))


def cloud_mask(size: int, coverage_range: tuple[float, float], rng: np.random.Generator,
               real: RealMasks | None = None, real_share: float = 0.5) -> np.ndarray:
    """A training mask: real shapes `real_share` of the time when there are some, else fractal."""
    coverage = float(rng.uniform(*coverage_range))
    if real and rng.random() < real_share:
        mask = real.sample(coverage, rng)
        if mask is not None:
            return mask
    return synthetic_mask(size, coverage, rng)


# --------------------------------------------------------------------------- clear imagery

@dataclass
class ClearScene:
    path: str
    x: np.ndarray  # (bands, H, W) raster values
    valid: np.ndarray  # (H, W) bool
    split: BlockSplit
    band_names: list[str]
    dtype: str

    @property
    def height(self) -> int:
        return self.x.shape[1]

    @property
    def width(self) -> int:
        return self.x.shape[2]


def load_clear(paths: Sequence[str | os.PathLike], bands: list[int] | None, block: int, val_fraction: float,
               seed: int, patch: int, exclude_masks: Sequence[str | os.PathLike] | None = None) -> list[ClearScene]:
    """Clear rasters read whole (training data), each with its own spatial block split.

    All must have the same bands and dtype; `exclude_masks[i]` (optional, non-zero =
    cloud, on the same grid) marks pixels of raster i that are not clear after all."""
    if not paths:
        raise InputError("give at least one clear raster to train on")
    scenes: list[ClearScene] = []
    for i, path in enumerate(paths):
        with rasterio.Env(GDAL_CACHEMAX=64), open_raster(path) as src:
            chosen = list(bands) if bands else list(range(1, src.count + 1))
            bad = [b for b in chosen if not 1 <= b <= src.count]
            if bad:
                raise InputError(f"band(s) {bad} do not exist in {path}: it has bands 1..{src.count}")
            if src.height < patch // 2 or src.width < patch // 2:
                raise InputError(f"{path} is {src.width} x {src.height} px, too small for {patch} px training "
                                 f"patches; use a smaller patch size")
            reader = BlockReader(src, chosen)
            x, valid = reader.read(0, src.height, 0, src.width)
            valid = np.ones(x.shape[1:], bool) if valid is None else valid
            names = [src.descriptions[b - 1] or f"band {b}" for b in chosen]
            dtype = src.dtypes[chosen[0] - 1]
        if exclude_masks and i < len(exclude_masks) and exclude_masks[i]:
            with open_raster(exclude_masks[i]) as m:
                if (m.height, m.width) != x.shape[1:]:
                    raise InputError(f"the cloud mask {exclude_masks[i]} is {m.width} x {m.height} px but {path} is "
                                     f"{x.shape[2]} x {x.shape[1]} px; give masks on the raster's grid")
                valid &= m.read(1) == 0
        if scenes and (len(names) != len(scenes[0].band_names) or dtype != scenes[0].dtype):
            raise InputError(f"{path} has {len(names)} {dtype} band(s) but {scenes[0].path} has "
                             f"{len(scenes[0].band_names)} {scenes[0].dtype} band(s); train on rasters of one kind")
        if not valid.any():
            raise InputError(f"{path} has no valid pixel to train on")
        split = BlockSplit(x.shape[1], x.shape[2], min(block, max(x.shape[1:]) // 2 or 1), val_fraction,
                           seed + i, valid=valid, min_block_valid=0.25)
        scenes.append(ClearScene(str(path), x, valid, split, names, dtype))
    return scenes


def fit_scaling(scenes: list[ClearScene], max_samples: int = 200_000, seed: int = 0) -> BandScaling:
    """2-98 % percentile stretch per band on valid pixels of the training blocks only."""
    rng = np.random.default_rng(seed)
    per = max(1, max_samples // len(scenes))
    samples = []
    for s in scenes:
        idx = np.flatnonzero(s.split.mask("train") & s.valid)
        if idx.size > per:
            idx = rng.choice(idx, per, replace=False)
        samples.append(s.x.reshape(s.x.shape[0], -1)[:, idx])
    return fit_percentiles(np.concatenate(samples, axis=1).astype(np.float64))


def _padded_window(scene: ClearScene, r: int, c: int, size: int):
    """(bands, size, size) values and validity at (r, c), reflect-padded past the edges."""
    from ..windows import reflect_indices

    rows = reflect_indices(r, r + size, scene.height)
    cols = reflect_indices(c, c + size, scene.width)
    ix = np.ix_(rows, cols)
    return scene.x[(slice(None),) + ix], scene.valid[ix]


class InpaintPatches(torch.utils.data.Dataset):
    """Random patches of the training blocks with a fresh cloud mask each.

    Each item: x (bands, P, P) scaled truth, cloud (P, P) bool mask, valid (P, P).
    Augmentation: the 8 dihedral symmetries and, with `jitter`, a random per-band
    gain and offset in model space, so the model leans on the context around the
    hole rather than on absolute values (it then also serves imagery normalised
    by the scene's own statistics, e.g. another sensor)."""

    def __init__(self, scenes: list[ClearScene], scaling: BandScaling, patch: int, length: int,
                 coverage: tuple[float, float], real: RealMasks | None = None, real_share: float = 0.5,
                 seed: int = 0, jitter: float = 0.15, min_valid: float = 0.9, clip: float = 3.0):
        self.scenes, self.scaling, self.patch, self.length = scenes, scaling, patch, length
        self.coverage, self.real, self.real_share = coverage, real, real_share
        self.seed, self.jitter, self.min_valid, self.clip = seed, jitter, min_valid, clip
        self.epoch = 0
        self.areas = np.array([sum((b[2] - b[0]) * (b[3] - b[1]) for b in s.split.train_blocks) for s in scenes],
                              float)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        for _ in range(50):
            scene = self.scenes[int(rng.choice(len(self.scenes), p=self.areas / self.areas.sum()))]
            blocks = scene.split.train_blocks
            b = blocks[int(rng.integers(len(blocks)))]
            r = int(rng.integers(b[0], max(b[0] + 1, b[2] - self.patch + 1)))
            c = int(rng.integers(b[1], max(b[1] + 1, b[3] - self.patch + 1)))
            values, valid = _padded_window(scene, r, c, self.patch)
            if valid.mean() >= self.min_valid:
                break
        k = int(rng.integers(8))
        x = dihedral(self.scaling.to_model(values, clip=self.clip), k)
        valid = dihedral(valid, k)
        if self.jitter:
            n = x.shape[0]
            gain = np.exp(rng.uniform(-self.jitter, self.jitter, (n, 1, 1))).astype(np.float32)
            x = x * gain + rng.uniform(-self.jitter, self.jitter, (n, 1, 1)).astype(np.float32)
        x[:, ~valid] = 0.0
        cloud = cloud_mask(self.patch, self.coverage, rng, self.real, self.real_share)
        return {"x": torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                "cloud": torch.from_numpy(np.ascontiguousarray(cloud)),
                "valid": torch.from_numpy(np.ascontiguousarray(valid))}


def validation_set(scenes: list[ClearScene], scaling: BandScaling, patch: int, coverage: tuple[float, float],
                   real: RealMasks | None = None, seed: int = 1234, per_block: int = 1, clip: float = 3.0,
                   min_valid: float = 0.5) -> list[dict[str, np.ndarray]]:
    """Fixed held-out samples: patches of the validation blocks with fixed masks,
    coverages spread evenly over the range (the same every epoch and every run)."""
    rng = np.random.default_rng(seed)
    items = []
    for scene in scenes:
        for b in scene.split.val_blocks:
            for _ in range(per_block):
                r = b[0] + max(0, (b[2] - b[0] - patch) // 2)
                c = b[1] + max(0, (b[3] - b[1] - patch) // 2)
                values, valid = _padded_window(scene, r, c, patch)
                if valid.mean() < min_valid:
                    continue
                items.append({"x": scaling.to_model(values, clip=clip), "valid": valid})
    for i, item in enumerate(items):
        lo, hi = coverage
        cov = lo + (hi - lo) * (i + 0.5) / max(1, len(items))
        item["cloud"] = (real.sample(cov, rng) if real and i % 2 else None)
        if item["cloud"] is None:
            item["cloud"] = synthetic_mask(patch, cov, rng)
        item["x"][:, ~item["valid"]] = 0.0
    return items
