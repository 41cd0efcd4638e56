"""Training objectives, kept apart from models and training loops.

Pix2Pix: the generator minimises an adversarial loss plus lambda * L1 to the
target; the discriminator tells real pairs from generated ones. L1 is taken
over valid pixels only, so nodata in either raster teaches nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gan_loss(logits: torch.Tensor, real: bool, mode: str = "vanilla") -> torch.Tensor:
    """'vanilla' is the paper's cross-entropy GAN; 'lsgan' least squares."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"unknown GAN mode {mode!r}; use vanilla or lsgan")


def masked_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred - target| over valid pixels (valid: (N, H, W) bool)."""
    diff = (pred - target).abs()
    if valid is None:
        return diff.mean()
    weight = valid.unsqueeze(1).to(diff.dtype)
    return (diff * weight).sum() / (weight.sum() * diff.shape[1]).clamp_min(1.0)
