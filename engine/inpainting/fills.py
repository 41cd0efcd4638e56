"""Interpolations that fill the unknown pixels of an image from the known ones (torch,
any device, (N, C, H, W) batches): the fixed first step of every SatGen cloud fill.

- `harmonic_fill`: membrane (Laplace) interpolation, solved coarse to fine.
- `push_pull`: Gortler et al. 1996, masked averages down a pyramid and back up.
- `combine_references`: other dates of the same place, each matched to this one by a
  local robust linear fit per band on the pixels both know, plus the harmonic
  interpolation of what the fit leaves (the residual), the classic gap fill from a
  second date (as used for Landsat-7 SLC-off gaps); a guard on held-out clear pixels
  falls back to the reference as it is where matching would do worse; the dates are
  averaged by the inverse of their estimated errors, which also give the fill's
  uncertainty. No training.

Measured on the held-out blocks of `make evaluate`: see README, Cloud inpainting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def push_pull(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill pixels where known == 0 from the known ones; x (N, C, H, W), known (N, 1, H, W) in [0, 1]."""
    levels = []
    a, w = x * known, known
    while min(a.shape[-2:]) > 1:
        levels.append((a, w))
        a_sum = F.avg_pool2d(a, 2, ceil_mode=True) * 4
        w_sum = F.avg_pool2d(w, 2, ceil_mode=True) * 4
        w = w_sum.clamp(max=1.0)
        a = a_sum * (w / w_sum.clamp(min=1e-8))  # a stays premultiplied by a weight <= 1
    value = a / w.clamp(min=1e-8)  # the coarsest level: the mean of all known pixels
    for a_f, w_f in reversed(levels):
        up = F.interpolate(value, size=a_f.shape[-2:], mode="bilinear", align_corners=False)
        value = a_f + (1 - w_f) * up
    return value


def harmonic_fill(x: torch.Tensor, known: torch.Tensor, sweeps: int = 20) -> torch.Tensor:
    """Membrane interpolation of the pixels where known == 0 (x (N, C, H, W), known (N, 1, H, W),
    1 = known): the known pixels stay, every unknown one converges to the mean of its four
    neighbours. Solved coarse to fine: a pixel of a coarser level is known where any of the
    2 x 2 pixels below it is (their known mean); each level starts from the coarser
    solution, upsampled, and takes `sweeps` Jacobi sweeps. A tile with no known pixel
    comes back as zeros."""
    known = (known > 0.5).to(x.dtype)
    levels = [(x * known, known)]
    while min(levels[-1][0].shape[-2:]) > 4:
        a, w = levels[-1]
        a_sum = F.avg_pool2d(a, 2, ceil_mode=True)
        w_sum = F.avg_pool2d(w, 2, ceil_mode=True)
        w_next = (w_sum > 0).to(x.dtype)
        levels.append((a_sum / w_sum.clamp(min=1e-8) * w_next, w_next))
    a, w = levels[-1]
    mean = a.sum((2, 3), keepdim=True) / w.sum((2, 3), keepdim=True).clamp(min=1.0)
    value = a + (1 - w) * mean
    for a, w in reversed(levels):
        value = F.interpolate(value, size=a.shape[-2:], mode="bilinear", align_corners=False)
        unknown = 1 - w
        for _ in range(sweeps):  # the mean of the four neighbours (edges replicated), by shifted slices
            p = F.pad(value, (1, 1, 1, 1), mode="replicate")
            around = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1]) + (p[..., 1:-1, :-2] + p[..., 1:-1, 2:])
            value = a + unknown * (0.25 * around)
    return value


# --- several reference dates: local robust matching, a guard against doing worse than pasting, uncertainty ---------

FIT_RADII = (8, 16, 32)  # window radii (px): the local fit uses the first; the error estimates all, finest first
FIT_MIN_PIXELS = 24  # known pixels a window needs for its fit; fewer: the next coarser window
GUARD_RING = 4  # known pixels within this distance (px) of a hole are held out to choose the matching
OUTLIER_MADS = 3.0  # pixels whose residual is this many robust standard deviations off are left out of the fit
CANDIDATES = ("paste", "fit", "fit_residual")
Z80 = 1.2816  # the standard normal's 90 % quantile: +-Z80 sigma holds 80 %
# the error estimates times these give calibrated intervals; fitted on the development dates of
# docs/protocol-multidate-inpainting.md (the 80 % quantile of |error| / estimate, over Z80)
REFERENCE_SIGMA_SCALE = 1.15
FILL_SIGMA_SCALE = 1.02


def box_sum(t: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum over the (2 radius + 1)^2 window around each pixel of t (..., H, W), zero outside (an integral image)."""
    r = int(radius)
    c = F.pad(t, (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)
    k = 2 * r + 1
    return c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]


def _multiscale(stats, weight: torch.Tensor, min_pixels: int = FIT_MIN_PIXELS):
    """Windowed sums of each tensor in `stats` (N, C, H, W) over the pixels where weight (N, 1, H, W) is 1:
    the finest of FIT_RADII whose window holds `min_pixels` of them, else the whole image. Returns
    (count, [sums])."""
    n_out = torch.zeros_like(weight)
    sums_out = [torch.zeros_like(s) for s in stats]
    done = torch.zeros_like(weight, dtype=torch.bool)
    size = max(weight.shape[-2:])
    for r in [r for r in FIT_RADII if r < size] + [None]:
        if r is None:  # the whole image
            n = weight.sum((2, 3), keepdim=True).expand_as(weight)
            sums = [(s * weight).sum((2, 3), keepdim=True).expand_as(s) for s in stats]
            take = ~done
        else:
            n = box_sum(weight, r)
            sums = [box_sum(s * weight, r) for s in stats]
            take = ~done & (n >= min_pixels)
        n_out = torch.where(take, n, n_out)
        sums_out = [torch.where(take, s, o) for s, o in zip(sums, sums_out, strict=True)]
        done |= take
    return n_out, sums_out


def local_fit(x: torch.Tensor, weight: torch.Tensor, reference: torch.Tensor, extend: bool = True) -> torch.Tensor:
    """gain * reference + offset per pixel and band: the least-squares fit of x on the reference over the
    pixels where weight == 1 in the FIT_RADII[0] px window around each pixel whose window holds FIT_MIN_PIXELS
    of them; elsewhere (deep inside a cloud) gain and offset are interpolated harmonically from those pixels,
    so they vary smoothly. Without any such window: one fit over the image (gain 1 where the reference
    does not vary there, or with fewer than FIT_MIN_PIXELS pixels: the mean difference). `extend=False`:
    the image's fit instead of the interpolation (cheaper; for pixels that have a window of their own)."""
    r = FIT_RADII[0]
    stats = [x, reference, x * reference, reference * reference]
    n = box_sum(weight, r)
    sx, sr, sxr, srr = (box_sum(s * weight, r) for s in stats)
    n_all = weight.sum((2, 3), keepdim=True)
    whole = [(s * weight).sum((2, 3), keepdim=True) for s in stats]

    def coefficients(n, sx, sr, sxr, srr):
        n = n.clamp(min=1)
        mx, mr = sx / n, sr / n
        var = srr / n - mr * mr
        gain = torch.where(var > 1e-6, ((sxr / n - mx * mr) / var.clamp(min=1e-6)).clamp(0.0, 10.0),
                           torch.ones_like(var))
        return gain, mx - gain * mr

    gain, offset = coefficients(n, sx, sr, sxr, srr)
    g_all, o_all = coefficients(n_all, *whole)
    g_all = torch.where(n_all >= FIT_MIN_PIXELS, g_all, torch.ones_like(g_all))
    o_all = torch.where(n_all >= FIT_MIN_PIXELS, o_all, (whole[0] - whole[1]) / n_all.clamp(min=1))
    defined = (n >= FIT_MIN_PIXELS).to(x.dtype)
    if not extend:
        gain = torch.where(defined > 0, gain, g_all.expand_as(gain))
        return gain * reference + torch.where(defined > 0, offset, o_all.expand_as(offset))
    has = defined.sum((2, 3), keepdim=True) > 0
    c = gain.shape[1]
    both = harmonic_fill(torch.cat([gain, offset], 1) * defined, defined)  # one pass for both fields
    gain = torch.where(has, both[:, :c], g_all.expand_as(gain))
    offset = torch.where(has, both[:, c:], o_all.expand_as(offset))
    return gain * reference + offset


def _robust_weight(residual: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """weight with the pixels whose residual (any band) lies more than OUTLIER_MADS robust standard deviations
    from the band's median (per image) left out: changed ground, haze the mask missed."""
    n, c = residual.shape[:2]
    out = weight.clone()
    for i in range(n):
        known = weight[i, 0] > 0.5
        if int(known.sum()) < FIT_MIN_PIXELS:
            continue
        values = residual[i][:, known]  # (C, M)
        med = values.median(dim=1, keepdim=True).values
        mad = (values - med).abs().median(dim=1, keepdim=True).values * 1.4826
        bad = ((values - med).abs() > OUTLIER_MADS * mad.clamp(min=1e-4)).any(0)
        out[i, 0][known] = (~bad).to(weight.dtype)
    return out


def reference_candidates(x: torch.Tensor, known: torch.Tensor, reference: torch.Tensor,
                         reference_ok: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The three ways to fill from one reference: the reference as it is (`paste`), matched to x by a local
    robust linear fit (`fit`), and that plus the harmonic interpolation of the fit's residual
    (`fit_residual`). Also the squared residual of the fit on the pixels it used (N, C, H, W), 0 elsewhere."""
    both = ((known > 0.5) & (reference_ok > 0.5)).to(x.dtype)
    fitted = local_fit(x, both, reference, extend=False)  # only its residuals on known pixels are used
    weight = _robust_weight(x - fitted, both)
    fitted = local_fit(x, weight, reference)
    residual = (x - fitted) * both  # every pixel known in both says what the fit misses, outliers too
    smooth = harmonic_fill(residual, both)
    return {"paste": reference, "fit": fitted, "fit_residual": fitted + smooth}, residual * residual


GUARD_BLOCK = 8  # the ring is held out in every other GUARD_BLOCK px block (a checkerboard), so most pixels stay


def _ring(hole: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within `width` px (square) of a hole pixel, not in it, in the dark squares of a checkerboard of
    GUARD_BLOCK px blocks; hole (N, 1, H, W) in {0, 1}."""
    grown = F.max_pool2d(hole, 2 * width + 1, stride=1, padding=width)
    h, w = hole.shape[-2:]
    rows = torch.arange(h, device=hole.device) // GUARD_BLOCK
    cols = torch.arange(w, device=hole.device) // GUARD_BLOCK
    board = ((rows[:, None] + cols[None, :]) % 2).to(hole.dtype)
    return grown * (1 - hole) * board


def matched_reference(x: torch.Tensor, known: torch.Tensor, reference: torch.Tensor, reference_ok: torch.Tensor,
                      guard: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One reference matched to x, (filled, squared error estimate, choice), each (N, C, H, W) but the
    choice (N, C): the index in CANDIDATES used per image and band.

    The guard: the known pixels within GUARD_RING px of the holes are hidden, each candidate fills them
    from the rest, and the one with the smallest squared error there is used for that image and band, so
    a fit that would do worse than pasting the reference as it is gives way to pasting. The error
    estimate is the local mean of that candidate's squared error on the held-out ring (the windows of
    `_multiscale`), or of the fit's squared residual where the ring is empty."""
    both = (known > 0.5) & (reference_ok > 0.5)
    hole = (known <= 0.5).to(x.dtype)
    ring = _ring(hole, GUARD_RING) * both.to(x.dtype)
    n, c = x.shape[:2]
    choice = torch.full((n, c), CANDIDATES.index("fit_residual"), dtype=torch.long, device=x.device)
    ring_err = None
    if guard and bool(ring.sum() > 0):
        trial, _ = reference_candidates(x, known * (1 - ring), reference, reference_ok)
        errs = torch.stack([((trial[name] - x) ** 2 * ring).sum((2, 3)) for name in CANDIDATES])  # (3, N, C)
        has_ring = ring.sum((2, 3)) > 0  # (N, 1)
        choice = torch.where(has_ring.expand(n, c), errs.argmin(0), choice)
        ring_err = torch.stack([(trial[name] - x) ** 2 for name in CANDIDATES])  # (3, N, C, H, W)
    candidates, fit_sq = reference_candidates(x, known, reference, reference_ok)
    stacked = torch.stack([candidates[name] for name in CANDIDATES])  # (3, N, C, H, W)
    index = choice[None, :, :, None, None].expand(1, n, c, *x.shape[-2:])
    filled = stacked.gather(0, index)[0]
    if ring_err is not None:
        sq = ring_err.gather(0, index)[0]
        weight = ring
    else:
        sq, weight = fit_sq, both.to(x.dtype)
    count, (total,) = _multiscale([sq], weight, min_pixels=8)
    err2 = total / count.clamp(min=1)
    return filled, err2, choice


def local_spread(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The local variance of the known pixels of x around each pixel (the windows of `_multiscale`)."""
    k = (known > 0.5).to(x.dtype)
    count, (s, s2) = _multiscale([x, x * x], k, min_pixels=8)
    count = count.clamp(min=1)
    return (s2 / count - (s / count) ** 2).clamp(min=0)


def combine_references(x: torch.Tensor, known: torch.Tensor, references: torch.Tensor, references_ok: torch.Tensor,
                       guard: bool = True,
                       combine: str = "weighted") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fill x (N, C, H, W) where known (N, 1, H, W) == 0 from K references (N, K, C, H, W), each valid where
    references_ok (N, K, 1, H, W) == 1: each matched on its own (`matched_reference`), then averaged per
    pixel over the references valid there, weighted by the inverse of their error estimates
    (`combine="weighted"`), or per pixel the first reference valid there (`"nearest"`: the references
    come nearest date first).

    Returns (filled, variance, weights, any_ok): filled (N, C, H, W), meaningful where any reference is
    valid; the variance of its error (N, C, H, W): the combined error estimate or, where the references
    disagree more, their weighted spread; weights (N, K, H, W), each reference's share of the fill; any_ok
    (N, 1, H, W)."""
    k = references.shape[1]
    fills, inv = [], []
    for i in range(k):
        ok = references_ok[:, i]
        filled, err2, _ = matched_reference(x, known, references[:, i], ok, guard)
        fills.append(filled)
        inv.append(ok / err2.clamp(min=1e-8))  # (N, C, H, W), 0 where this reference is not valid
    fills_t, inv_t = torch.stack(fills, 1), torch.stack(inv, 1)  # (N, K, C, H, W)
    if combine == "nearest":  # all the weight on the first reference valid at each pixel
        ok = references_ok.expand_as(inv_t) > 0.5
        first = ok & (ok.to(torch.int8).cumsum(1) == 1)
        inv_t = torch.where(first, inv_t.clamp(min=1e-12), torch.zeros_like(inv_t))
    total = inv_t.sum(1)
    share = inv_t / total.clamp(min=1e-12)[:, None]
    filled = (share * fills_t).sum(1)
    spread = (share * (fills_t - filled[:, None]) ** 2).sum(1)
    variance = torch.maximum(1 / total.clamp(min=1e-12), spread)
    any_ok = (references_ok.sum(1) > 0.5).to(x.dtype)
    return filled, variance, share.mean(2), any_ok
