"""Training objectives, kept apart from models and training loops.

Pix2Pix: the generator minimises an adversarial loss plus lambda * L1 to the
target; the discriminator tells real pairs from generated ones. L1 is taken
over valid pixels only, so nodata in either raster teaches nothing.

With a legend, `colour_class_loss` adds the map's classes: the output's colours are read as
class scores (nearer the class colour, higher), so the loss rewards the colour that decodes
to the right class, where L1 alone settles on the per-band median of the plausible colours,
which may decode to a third class.
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


def legend_labels(target: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """(N, H, W) index of the colour nearest each pixel of `target` (N, 3, H, W); colours (K, 3),
    both in [-1, 1]."""
    with torch.no_grad():
        c = colours.to(target.dtype).view(1, -1, 3, 1, 1)
        return ((target.unsqueeze(1) - c) ** 2).sum(2).argmin(1)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """Mean cross-entropy of (N, K, H, W) class scores over the valid (N, H, W) pixels."""
    loss = F.cross_entropy(logits, labels, reduction="none")
    if valid is None:
        return loss.mean()
    weight = valid.to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def colour_class_loss(pred: torch.Tensor, target: torch.Tensor, colours: torch.Tensor,
                      valid: torch.Tensor | None = None, temperature: float = 0.05) -> torch.Tensor:
    """Cross-entropy of the legend classes read from colours: the logit of class k at a pixel is
    -|pred - colours[k]|^2 / temperature, its label the class of the colour nearest the target's.
    pred, target: (N, 3, H, W) in [-1, 1]; colours: (K, 3) in [-1, 1]; valid: (N, H, W) bool."""
    c = colours.to(pred.dtype).view(1, -1, 3, 1, 1)
    logits = -((pred.unsqueeze(1) - c) ** 2).sum(2) / temperature  # (N, K, H, W)
    return masked_cross_entropy(logits, legend_labels(target.to(pred.dtype), colours), valid)


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
