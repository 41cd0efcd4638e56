"""Conditional DCGAN (Radford et al., 2016; conditioned as in Mirza & Osindero, 2014),
the baseline recipe of the seed's EuroSAT experiment, kept faithful:

- G: noise z (nz = 100) and the class one-hot as a (nz + K, 1, 1) input, transposed
  convolutions 4x4 doubling the size from 4x4 up to the patch size, BatchNorm + ReLU,
  Tanh output;
- D: the image plus the one-hot as K constant extra channels, strided 4x4
  convolutions, LeakyReLU 0.2, BatchNorm on all but the first layer, one logit;
- weights N(0, 0.02), BatchNorm scales N(1, 0.02); Adam 2e-4, beta1 0.5 (trainer).

Patch sizes are powers of two from 16 to 128; a 64 px generator is the paper's.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _levels(patch_size: int) -> int:
    levels = int(math.log2(patch_size)) - 2 if patch_size > 0 else 0
    if patch_size != 2 ** (levels + 2) or not 2 <= levels <= 5:
        raise ValueError(f"cDCGAN patch size must be a power of two from 16 to 128, got {patch_size}")
    return levels


def dcgan_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class CDCGANGenerator(nn.Module):
    def __init__(self, out_channels: int, num_classes: int, patch_size: int = 64, nz: int = 100, ngf: int = 64):
        super().__init__()
        levels = _levels(patch_size)
        self.nz, self.num_classes = nz, num_classes
        widths = [ngf * 2 ** (levels - 1 - i) for i in range(levels)]  # 64 px: 512 256 128 64
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz + num_classes, widths[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(True)]  # 4x4
        for a, b in zip(widths, widths[1:], strict=False):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z (N, nz), labels (N,) int -> (N, C, P, P) in [-1, 1]."""
        onehot = nn.functional.one_hot(labels, self.num_classes).to(z.dtype)
        return self.net(torch.cat([z, onehot], dim=1)[:, :, None, None])


class CDCGANDiscriminator(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, patch_size: int = 64, ndf: int = 64):
        super().__init__()
        levels = _levels(patch_size)
        self.num_classes = num_classes
        widths = [ndf * 2 ** i for i in range(levels)]  # 64 px: 64 128 256 512
        layers: list[nn.Module] = [nn.Conv2d(in_channels + num_classes, widths[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]
        for a, b in zip(widths, widths[1:], strict=False):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))  # 4x4 -> one logit
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n, _, h, w = image.shape
        maps = nn.functional.one_hot(labels, self.num_classes).to(image.dtype)[:, :, None, None].expand(-1, -1, h, w)
        return self.net(torch.cat([image, maps], dim=1)).view(n)
