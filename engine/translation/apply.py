"""Satellite -> map translation with a trained (default or user) model.

Thin layer over the tile pipeline: only 'translate' models are accepted, the
shipped default model is used when none is given, and the map is drawn in the
exact colours of the model's legend unless asked otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import RESOURCES
from ..card import ModelCard
from ..metrics import decode_legend
from ..modelfile import default_model
from ..pipeline import ApplyResult, TileOptions, apply_model
from ..progress import Feedback
from ..raster import ground_resolution, open_raster

# the shipped model for 8-bit RGB imagery finer than FINE_M (the default model is for 10 m Sentinel-2)
RGB_MODEL = "translate_rgb_dubai.satgen"
FINE_M = 5.0


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
    feedback = feedback or Feedback()
    if model is None:
        model = shipped_model_for(input_path, feedback)
    return apply_model(model, input_path, output_path, options, feedback,
                       tasks=("translate",), postprocess=snap_to_legend if snap else None, normalize=normalize)


def shipped_model_for(input_path: str | os.PathLike, feedback: Feedback) -> Path:
    """The shipped translation model that suits a raster: the RGB model for imagery finer than FINE_M (or,
    without georeferencing, for 8-bit imagery of 3 or 4 bands), else the Sentinel-2 model (the default)."""
    rgb = RESOURCES / "models" / RGB_MODEL
    if not rgb.is_file():
        return default_model("translate")
    with open_raster(input_path) as src:
        res = ground_resolution(src.crs, src.transform, src.height)
        eight_bit = src.count in (3, 4) and all(d == "uint8" for d in src.dtypes)
    if (res is not None and res < FINE_M) or (res is None and eight_bit):
        why = f"{res:.2g} m pixels" if res is not None else "8-bit imagery without georeferencing"
        feedback.info(f"model: the shipped RGB land-cover model ({why}; give MODEL / --model to choose)")
        return rgb
    return default_model("translate")
