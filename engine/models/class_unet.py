"""Class-conditional denoising U-Net with EDM preconditioning (Karras et al., 2022).

`ClassUNet(x, sigma, labels)` returns the denoised image D(x; sigma, class):
D = c_skip x + c_out F(c_in x, c_noise, class), F a small U-Net (ResBlocks with
GroupNorm and SiLU, noise level and class embedding added in every block,
self-attention at the lowest resolution). Label index `num_classes` is the
"no class" token that classifier-free guidance uses (Ho & Salimans, 2022): the
trainer drops labels to it at random, the sampler mixes both predictions.
Objective and sampler live in engine.synthesis.diffusion.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)  # scale and shift of the second norm
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        assert self.conv2.bias is not None  # nosec B101  # Conv2d's bias=True default
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(self.drop(h))


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm, self.qkv, self.out = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None  # nosec B101  # Conv2d's bias=True default
        nn.init.zeros_(self.out.bias)

    def forward(self, x, emb=None):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(a.transpose(-1, -2).reshape(n, c, h, w))


class ClassUNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, base: int = 32, depth: int = 3, max_mult: int = 2,
                 blocks: int = 1, emb: int = 128, attention: bool = True, dropout: float = 0.1,
                 sigma_data: float = 0.5, patchify: int = 1):
        super().__init__()
        self.in_channels, self.num_classes, self.sigma_data = in_channels, num_classes, float(sigma_data)
        widths = [base * min(2 ** i, max_mult) for i in range(depth)]
        self.patchify = patchify  # pixel (un)shuffle: the U-Net runs at 1/patchify resolution, cheaply
        self.multiple = patchify * 2 ** (depth - 1)
        self.emb_dim = emb
        self.noise_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.class_emb = nn.Embedding(num_classes + 1, emb)  # last: unconditional
        self.stem = nn.Conv2d(in_channels * patchify ** 2, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [widths[0]]
        ch = widths[0]
        for i, w in enumerate(widths):
            for _ in range(blocks):
                self.down.append(ResBlock(ch, w, emb, dropout))
                ch = w
                skips.append(ch)
            if i < depth - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb, dropout)] + ([Attention(ch)] if attention else [])
                                 + [ResBlock(ch, ch, emb, dropout)])
        self.up = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), w, emb, dropout))
                ch = w
            if i > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.head = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels * patchify ** 2, 3, padding=1))
        head_conv = self.head[-1]
        assert isinstance(head_conv, nn.Conv2d) and head_conv.bias is not None  # nosec B101  # type narrowing
        nn.init.zeros_(head_conv.weight)
        nn.init.zeros_(head_conv.bias)

    def _embed_noise(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.emb_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=c_noise.device) / half)
        args = c_noise[:, None].float() * 1000 * freqs[None] / 250  # c_noise = ln(sigma)/4 spans about [-2, 2]
        return self.noise_mlp(torch.cat([args.cos(), args.sin()], dim=1))

    def network(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = F.silu(self._embed_noise(c_noise) + self.class_emb(labels))
        if self.patchify > 1:
            x = F.pixel_unshuffle(x, self.patchify)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        h = self.head(h)
        return F.pixel_shuffle(h, self.patchify) if self.patchify > 1 else h

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Denoised estimate of clean images from x = clean + sigma * noise; labels == num_classes: no class."""
        sigma = sigma.reshape(-1, 1, 1, 1).to(x.dtype)
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sigma ** 2 + sd ** 2).sqrt()
        f = self.network(c_in * x, sigma.log().flatten() / 4, labels)
        return c_skip * x + c_out * f
