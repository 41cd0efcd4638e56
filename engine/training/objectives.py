"""Training objectives, kept apart from models and training loops.

Pix2Pix: the generator minimises an adversarial loss plus lambda * L1 to the
target; the discriminator tells real pairs from generated ones. L1 is taken
over valid pixels only, so nodata in either raster teaches nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import TrainingError


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


def check_losses(entry: dict, epoch: int, checkpoint_epoch: int) -> None:
    """TrainingError when an epoch's mean losses (keys loss_*) are NaN or infinite: the weights have
    diverged and every later epoch would learn nothing. Called before the epoch's checkpoint, so the
    checkpoint keeps the last good epoch (`checkpoint_epoch`)."""
    bad = {k: v for k, v in entry.items() if k.startswith("loss") and not math.isfinite(v)}
    if bad:
        kept = f"the checkpoint holds epoch {checkpoint_epoch}" if checkpoint_epoch else "no checkpoint was written"
        raise TrainingError(
            f"training diverged in epoch {epoch}: {', '.join(f'{k} = {v}' for k, v in bad.items())}; no model file "
            f"was written ({kept}). Train again in a new report folder with a "
            f"lower learning rate, a smaller batch or another seed, and check the training data for extreme values")
