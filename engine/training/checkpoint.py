"""Checkpoints for resuming training after a kill.

A checkpoint is our own file, written by this trainer next to its report; it
is read back with torch.load(weights_only=True), which accepts tensors and
plain containers only, never arbitrary objects. Written atomically, so a kill
during saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_path


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def linear_decay(total_epochs: int, decay_epochs: int):
    """pix2pix schedule: constant learning rate, then linear decay to zero over
    the last `decay_epochs` epochs (a LambdaLR factor)."""
    constant = max(0, total_epochs - decay_epochs)

    def factor(epoch: int) -> float:
        if epoch < constant or decay_epochs <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - constant + 1) / (decay_epochs + 1))

    return factor
