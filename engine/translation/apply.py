"""Satellite -> map translation with a trained (default or user) model.

Thin layer over the tile pipeline: only 'translate' models are accepted, the
shipped default model is used when none is given, and the map is drawn in the
exact colours of the model's legend unless asked otherwise.
"""

from __future__ import annotations

import os

import numpy as np

from ..card import ModelCard
from ..metrics import decode_legend
from ..modelfile import default_model
from ..pipeline import ApplyResult, TileOptions, apply_model
from ..progress import Feedback


def map_colours(card: ModelCard) -> np.ndarray:
    """(K, 3) legend colours the model draws: the card's legend, less the background
    when training treated it as unmapped land (the model never learned to draw it)."""
    unlabelled = card.training.get("config", {}).get("unlabelled_background", False)
    return np.array([c for k, c in card.legend.items() if not (unlabelled and k == "background")], np.float32)


def snap_to_legend(card: ModelCard):
    """Post-processing for apply_model: every pixel takes its nearest legend colour,
    so the map has crisp classes that decode exactly (no blended colours)."""
    colours = map_colours(card)
    if not len(colours):
        return None

    def snap(values: np.ndarray) -> np.ndarray:
        return colours[decode_legend(values, colours)].transpose(2, 0, 1)

    return snap


def translate(input_path: str | os.PathLike, output_path: str | os.PathLike, model: str | os.PathLike | None = None,
              options: TileOptions | None = None, feedback: Feedback | None = None,
              snap: bool = True, normalize: str = "model") -> ApplyResult:
    """Draw a map of `input_path`; with `snap`, in the exact colours of the model's legend;
    `normalize`: the input's stretch, as in training ("model") or fitted on this raster ("scene")."""
    return apply_model(model or default_model("translate"), input_path, output_path, options, feedback,
                       tasks=("translate",), postprocess=snap_to_legend if snap else None, normalize=normalize)
