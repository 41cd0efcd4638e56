"""Satellite -> map translation with a trained (default or user) model.

Thin layer over the tile pipeline: only 'translate' models are accepted, and
the shipped default model is used when none is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelFileError
from .pipeline import ApplyResult, TileOptions, apply_model
from .progress import Feedback

# engine/ and resources/ are siblings both in the source tree and inside the plugin zip
MODELS_DIR = Path(__file__).resolve().parent.parent / "resources" / "models"
DEFAULT_MODEL = MODELS_DIR / "translate_s2_osm.satgen"


def default_model() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise ModelFileError(f"the default translation model {DEFAULT_MODEL} is missing; reinstall the SatGen "
                             f"plugin or choose a model file (developers: `make models` rebuilds it)")
    return DEFAULT_MODEL


def translate(input_path: str | os.PathLike, output_path: str | os.PathLike, model: str | os.PathLike | None = None,
              options: TileOptions | None = None, feedback: Feedback | None = None) -> ApplyResult:
    return apply_model(model or default_model(), input_path, output_path, options, feedback, tasks=("translate",))
