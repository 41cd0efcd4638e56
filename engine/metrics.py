"""Image metrics for generated maps: uint8 RGB arrays (3, H, W), optional valid mask (H, W).

- `acc_delta`: share of pixels whose largest per-channel error is below a
  threshold (the pixel accuracy used in the map-translation literature, e.g. 5 and 10);
- `miou`: mean intersection over union after decoding colours to the nearest legend colour;
- `psnr`, `ssim` (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03);
- `trivial_prediction`: the most frequent target colour everywhere, the baseline to beat.

numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

DECODE_CHUNK = 1 << 18  # pixels decoded at once (memory ~ chunk x classes x 4 bytes)


def _check_pair(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None) -> None:
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be (bands, H, W) of one shape, got {pred.shape} and "
                         f"{target.shape}")
    if valid is not None and valid.shape != pred.shape[1:]:
        raise ValueError(f"valid must be (H, W) = {pred.shape[1:]}, got {valid.shape}")


def _valid_or_all(valid, shape) -> np.ndarray:
    return np.ones(shape, bool) if valid is None else np.asarray(valid, bool)


def acc_delta(pred: np.ndarray, target: np.ndarray, threshold: float, valid: np.ndarray | None = None) -> float:
    """Share of (valid) pixels with max over bands of |pred - target| < threshold; NaN if none is valid."""
    _check_pair(pred, target, valid)
    err = np.abs(pred.astype(np.int32) - target.astype(np.int32)).max(axis=0)
    ok = err < threshold
    if valid is not None:
        ok = ok[valid]
    return float(ok.mean()) if ok.size else float("nan")


def legend_colors(legend) -> tuple[list[str], np.ndarray]:
    """(labels, (K, 3) colours) from a {label: [r, g, b]} dict, a list of colours, or a
    render_map_target legend {"categories": [{"label", "color"}], "background": [r, g, b]}."""
    if isinstance(legend, Mapping) and "categories" in legend:
        labels = [str(c["label"]) for c in legend["categories"]]
        colors = [c["color"] for c in legend["categories"]]
        if legend.get("background") is not None:
            labels.append("background")
            colors.append(legend["background"])
    elif isinstance(legend, Mapping):
        labels, colors = [str(k) for k in legend], list(legend.values())
    else:
        colors = list(legend)
        labels = [str(i) for i in range(len(colors))]
    arr = np.asarray(colors, dtype=np.int32).reshape(-1, 3)
    if arr.size == 0:
        raise ValueError("the legend has no colours")
    return labels, arr


def decode_legend(rgb: np.ndarray, colors) -> np.ndarray:
    """(3, H, W) colours -> (H, W) int index of the nearest legend colour (Euclidean in RGB)."""
    _, table = legend_colors(colors)
    flat = rgb.reshape(3, -1)
    out = np.empty(flat.shape[1], dtype=np.int32)
    table = table.astype(np.int32)
    norms = (table ** 2).sum(axis=1)  # |c|^2; |p - c|^2 = |p|^2 - 2 p.c + |c|^2, |p|^2 is constant per pixel
    for s in range(0, flat.shape[1], DECODE_CHUNK):
        px = flat[:, s:s + DECODE_CHUNK].astype(np.int32).T  # (n, 3)
        out[s:s + DECODE_CHUNK] = np.argmin(norms[None, :] - 2 * (px @ table.T), axis=1)
    return out.reshape(rgb.shape[1:])


def miou(pred: np.ndarray, target: np.ndarray, colors, valid: np.ndarray | None = None
         ) -> tuple[float, dict[str, float]]:
    """Mean IoU over legend classes present in the (valid) target; both images are first
    decoded to the nearest legend colour. Per-class IoU covers classes present in the
    target or the prediction (a class only predicted scores 0 and is not in the mean).
    Class keys are the legend's labels (indexes as strings for a plain list)."""
    _check_pair(pred, target, valid)
    labels, table = legend_colors(colors)
    p, t = decode_legend(pred, table), decode_legend(target, table)
    if valid is not None:
        p, t = p[valid], t[valid]
    else:
        p, t = p.ravel(), t.ravel()
    k = len(labels)
    inter = np.bincount(t[p == t], minlength=k)
    area_p = np.bincount(p, minlength=k)
    area_t = np.bincount(t, minlength=k)
    union = area_p + area_t - inter
    per_class = {labels[i]: float(inter[i] / union[i]) for i in range(k) if union[i] > 0}
    present = [labels[i] for i in range(k) if area_t[i] > 0]
    mean = float(np.mean([per_class[c] for c in present])) if present else float("nan")
    return mean, per_class


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 255, valid: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over (valid) pixels and all bands; inf when identical."""
    _check_pair(pred, target, valid)
    diff = pred.astype(np.float64) - target.astype(np.float64)
    if valid is not None:
        diff = diff[:, valid]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian of `size` taps."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (..., H, W) with the outer product g g^T."""
    n = g.size
    h, w = img.shape[-2] - n + 1, img.shape[-1] - n + 1
    rows = sum(g[i] * img[..., i:i + h, :] for i in range(n))
    return sum(g[j] * rows[..., :, j:j + w] for j in range(n))


def ssim_map(pred: np.ndarray, target: np.ndarray, data_range: float = 255, win: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """(bands, H - win + 1, W - win + 1) local SSIM over windows lying wholly inside the image."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} and {target.shape}")
    if pred.shape[-1] < win or pred.shape[-2] < win:
        raise ValueError(f"SSIM needs images of at least {win} x {win} px, got {pred.shape[-1]} x {pred.shape[-2]}")
    x, y = pred.astype(np.float64), target.astype(np.float64)
    g = gaussian_window(win, sigma)
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cxy = _filter_valid(x * y, g) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 255, valid: np.ndarray | None = None) -> float:
    """Mean SSIM over bands and windows inside the image (with `valid`: windows whose
    centre pixel is valid). Identical images score 1."""
    m = ssim_map(pred, target, data_range)
    if pred.ndim == 2:
        m = m[None]
    if valid is not None:
        half = (valid.shape[0] - m.shape[-2]) // 2
        centre = np.asarray(valid, bool)[half:half + m.shape[-2], half:half + m.shape[-1]]
        if not centre.any():
            return float("nan")
        return float(m[:, centre].mean())
    return float(m.mean())


def trivial_prediction(target: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(3, H, W) image filled with the most frequent (valid) target colour."""
    keep = _valid_or_all(valid, target.shape[1:])
    px = target[:, keep].astype(np.uint32)
    if px.size == 0:
        raise ValueError("no valid target pixel to take the most frequent colour from")
    codes = (px[0] << 16) | (px[1] << 8) | px[2]
    values, counts = np.unique(codes, return_counts=True)
    top = int(values[np.argmax(counts)])
    colour = np.array([(top >> 16) & 255, (top >> 8) & 255, top & 255], dtype=target.dtype)
    return np.broadcast_to(colour[:, None, None], target.shape).copy()


def map_metrics(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None, legend=None,
                thresholds: Sequence[float] = (5, 10)) -> dict[str, float]:
    """The usual set in one dict: acc_delta per threshold, PSNR, SSIM and (with a legend) mIoU."""
    out = {f"acc_delta{t:g}": acc_delta(pred, target, t, valid) for t in thresholds}
    out["psnr_db"] = psnr(pred, target, valid=valid)
    out["ssim"] = ssim(pred, target, valid=valid)
    if legend is not None:
        out["miou"] = miou(pred, target, legend, valid)[0]
    return out


def cut_lines(offsets, overlap: int, scale: int = 1, size: int | None = None) -> list[int]:
    """Positions x where tiles meet: the middle of each overlap (x = offset + overlap // 2
    for every tile offset but the first), where plain centre-crop stitching switches tiles."""
    lines = [(o + overlap // 2) * scale for o in offsets[1:]]
    return [x for x in lines if size is None or x < size]


def seam_ratio(image: np.ndarray, row_lines, col_lines) -> float:
    """Mean |first difference| across the given lines over the mean in all other
    places, along both axes, all bands; 1.0: the lines look like any other pixel pair."""
    img = image.astype(np.float64)
    boundary_sum = interior_sum = 0.0
    boundary_n = interior_n = 0
    for axis, lines in ((1, row_lines), (2, col_lines)):
        d = np.abs(np.diff(img, axis=axis))  # index i: pixels i and i + 1
        per_line = d.sum(axis=tuple(a for a in range(3) if a != axis))
        count = d.size // d.shape[axis]
        at = np.zeros(d.shape[axis], bool)
        at[[x - 1 for x in lines]] = True
        boundary_sum += per_line[at].sum()
        boundary_n += at.sum() * count
        interior_sum += per_line[~at].sum()
        interior_n += (~at).sum() * count
    boundary, interior = boundary_sum / max(boundary_n, 1), interior_sum / max(interior_n, 1)
    if interior == 0:  # a piecewise-constant image: any step at a line is an infinite seam
        return math.inf if boundary else 1.0
    return float(boundary / interior)


def grid_contrast(image, period: int = 8, block: int = 64) -> float:
    """How much a pattern repeating every `period` px (and its harmonics: 8 takes in 4 and 2) stands out
    of an image's spectrum: the power on those frequency lines over the power on the lines next to them
    (mean of the bands, blocks of `block` px, power summed over blocks; `image` may be a list of images,
    pooled). About 1 for imagery and maps, whose spectra are smooth; well above 1 with the checkerboard
    that a decoder of stride-2 transposed convolutions paints (periods 2, 4, 8 ..., one per layer)."""
    if period < 4 or block % period:
        raise ValueError(f"the block ({block} px) must be a multiple of the period ({period} px, at least 4)")
    lines = np.sum([_spectrum_lines(one, block) for one in (image if isinstance(image, list) else [image])], axis=0)
    step = block // period
    grid = np.arange(step, block, step)
    near = np.setdiff1d(np.concatenate([grid - 1, grid + 1]), np.concatenate([[0], grid]))
    base = lines[near].mean()
    return float(lines[grid].mean() / base) if base > 0 else 1.0


def _spectrum_lines(image: np.ndarray, block: int) -> np.ndarray:
    """Spectral power per frequency of the mean band, over `block` px blocks, along rows plus along columns."""
    gray = np.asarray(image, np.float64).mean(axis=0)
    h, w = (gray.shape[0] // block) * block, (gray.shape[1] // block) * block
    if not h or not w:
        raise ValueError(f"the image ({gray.shape[1]} x {gray.shape[0]} px) is smaller than one {block} px block")
    blocks = gray[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)
    blocks = blocks - blocks.mean(axis=(2, 3), keepdims=True)
    power = (np.abs(np.fft.fft2(blocks)) ** 2).sum(axis=(0, 1))
    return power.sum(axis=0) + power.sum(axis=1)


def checkerboard(pred, target, period: int = 8, block: int = 64) -> float:
    """`grid_contrast` of a prediction over that of its target: about 1 when the output has no more
    periodic pattern than the real map, well above 1 with a checkerboard."""
    return grid_contrast(pred, period, block) / grid_contrast(target, period, block)
