"""Conditional PatchGAN discriminator of pix2pix (Isola et al., 2017).

It sees the input image and a (real or generated) map concatenated on the
channel axis and scores every ~70x70 px patch (n_layers=3) as real or fake,
which pushes the generator towards sharp, locally plausible maps.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchGAN(nn.Module):
    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1  # the last block keeps resolution (receptive field 70 px at 3)
            nxt = ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(width, nxt, 4, stride, 1, bias=False), nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2, True)]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))  # one logit per patch
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))
