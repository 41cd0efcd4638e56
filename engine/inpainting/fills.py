"""Interpolations that fill the unknown pixels of an image from the known ones (torch,
any device, (N, C, H, W) batches): the fixed first step of every SatGen cloud fill.

- `harmonic_fill`: membrane (Laplace) interpolation, solved coarse to fine.
- `push_pull`: Gortler et al. 1996, masked averages down a pyramid and back up.
- `reference_fill`: a clear image of another date, matched to this one by a linear
  fit per band on the pixels both know, plus the harmonic interpolation of what the
  fit leaves (the residual): the classic gap fill from a second date (as used for
  Landsat-7 SLC-off gaps), no training.

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
    channels = x.shape[1]
    kernel = x.new_tensor([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]]).expand(channels, 1, 3, 3)
    for a, w in reversed(levels):
        value = F.interpolate(value, size=a.shape[-2:], mode="bilinear", align_corners=False)
        for _ in range(sweeps):
            around = F.conv2d(F.pad(value, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
            value = a + (1 - w) * around
    return value


MIN_FIT_PIXELS = 64  # fewer pixels known in both images: no linear fit, the mean difference only


def reference_fill(x: torch.Tensor, known: torch.Tensor, reference: torch.Tensor,
                   reference_ok: torch.Tensor) -> torch.Tensor:
    """Fill the pixels where known == 0 from `reference` (N, C, H, W), another date of the
    same place and bands, valid where reference_ok (N, 1, H, W) == 1. Per image and band,
    reference -> image is fitted as gain * reference + offset on the pixels known in both
    (least squares, gain kept in [0, 10]; with fewer than MIN_FIT_PIXELS such pixels the
    gain is 1 and the offset the mean difference); the residual image - fitted reference
    on those pixels is spread over the rest by `harmonic_fill`, and fitted reference +
    residual is returned. Where the reference is not valid the value is meaningless:
    the caller takes another fill there."""
    both = ((known > 0.5) & (reference_ok > 0.5)).to(x.dtype)
    n = both.sum((2, 3), keepdim=True)
    mean_x = (x * both).sum((2, 3), keepdim=True) / n.clamp(min=1)
    mean_r = (reference * both).sum((2, 3), keepdim=True) / n.clamp(min=1)
    dx, dr = (x - mean_x) * both, (reference - mean_r) * both
    var_r = (dr * dr).sum((2, 3), keepdim=True)
    gain = (dx * dr).sum((2, 3), keepdim=True) / var_r.clamp(min=1e-12)
    fit = (n >= MIN_FIT_PIXELS) & (var_r > 1e-6 * n)
    gain = torch.where(fit, gain.clamp(0.0, 10.0), torch.ones_like(gain))
    offset = mean_x - gain * mean_r
    fitted = gain * reference + offset
    residual = harmonic_fill((x - fitted) * both, both)
    return fitted + residual
