"""Mask-aware inpainting generator: a smooth fill of the holes, then a U-Net that
adds what the fill lacks.

Input (N, C + 1, H, W): the bands with unknown pixels zeroed and, last, the mask
(1 = unknown: cloud or nodata). The holes are first filled by push-pull
interpolation (Gortler et al. 1996: masked averages pushed down an image pyramid,
pulled back up, so every hole takes a smooth blend of the nearest known values,
much like GDAL's FillNodata); the U-Net sees that fill and the mask and returns a
correction: texture, edges and structure the interpolation cannot make. Starting
from a fill rather than from zeros, the network never has to learn to copy the
surroundings into the hole, and small holes are right from the first step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .unet import UNet


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


class InpaintUNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ngf: int = 32, depth: int = 7, max_mult: int = 8,
                 dropout: float = 0.0):
        super().__init__()
        if in_channels != out_channels + 1:
            raise ValueError("InpaintUNet takes the bands plus one mask channel and returns the bands")
        self.unet = UNet(in_channels, out_channels, ngf=ngf, depth=depth, max_mult=max_mult, dropout=dropout)

    @property
    def multiple(self) -> int:
        return self.unet.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands, hole = x[:, :-1], x[:, -1:]
        fill = push_pull(bands, 1 - hole)
        return fill + self.unet(torch.cat([fill, hole], dim=1))
