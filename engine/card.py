"""The model card: everything the engine needs to know about a model file
besides its weights, as plain JSON (task, architecture, bands and their
scaling, tiling defaults, classes, training data and licence, metrics).

Cards are validated field by field when read, so a malformed or hostile file
fails with a message naming the field, never deep inside the pipeline.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ModelFileError
from .scaling import BandScaling

FORMAT = "satgen-model"
FORMAT_VERSION = 1
TASKS = ("image-to-image", "translate", "inpaint", "synthesize")
DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass
class Bands:
    """Bands on one side of the model and their scaling to/from [-1, 1]."""

    names: list[str]
    low: list[float]
    high: list[float]
    # inputs: the dtype the scaling was fitted on (None: any); outputs: the dtype written
    dtype: str | None = None
    # inputs only: clip scaled values to [-clip, clip] (None: no clipping)
    clip: float | None = None

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def scaling(self) -> BandScaling:
        return BandScaling(tuple(self.low), tuple(self.high))


@dataclass
class ModelCard:
    task: str
    architecture: str
    params: dict[str, Any]
    inputs: Bands
    outputs: Bands
    tile_size: int = 256
    overlap: int = 32
    scale: int = 1  # output pixels per input pixel, along each axis
    classes: list[str] = field(default_factory=list)
    # map colour of each class (translation: decodes output colours back to classes)
    legend: dict[str, list[int]] = field(default_factory=dict)
    name: str = ""
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data, attribution, licence, config
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"the model card is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        _expect(isinstance(data, dict), "the model card must be a JSON object")
        _expect(data.get("format") == FORMAT, f"the model card's 'format' must be {FORMAT!r}")
        version = data.get("format_version")
        _expect(isinstance(version, int), "the model card has no integer 'format_version'")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"the model file has format version {version}, newer than this SatGen "
                f"understands ({FORMAT_VERSION}); update the SatGen plugin"
            )
        card = cls(
            task=_get(data, "task", str),
            architecture=_get(data, "architecture", str),
            params=_get(data, "params", dict),
            inputs=_bands(_get(data, "inputs", dict), "inputs"),
            outputs=_bands(_get(data, "outputs", dict), "outputs"),
            tile_size=_get(data, "tile_size", int, 256),
            overlap=_get(data, "overlap", int, 32),
            scale=_get(data, "scale", int, 1),
            classes=_str_list(data.get("classes", []), "classes"),
            legend=_legend(data.get("legend", {})),
            name=_get(data, "name", str, ""),
            description=_get(data, "description", str, ""),
            training=_get(data, "training", dict, {}),
            metrics=_get(data, "metrics", dict, {}),
        )
        _expect(card.task in TASKS, f"unknown task {card.task!r}; known tasks: {', '.join(TASKS)}")
        _expect(card.tile_size > 0 and 0 <= card.overlap < card.tile_size,
                "the model card's tile_size/overlap are out of range")
        _expect(1 <= card.scale <= 16, "the model card's scale must be an integer 1..16")
        return card


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise ModelFileError(f"invalid model card: {message}")


def _get(data: dict, key: str, kind: type, default: Any = ...):
    if key not in data:
        _expect(default is not ..., f"missing field {key!r}")
        return default
    value = data[key]
    # bool is an int in Python; a card saying "tile_size": true is still wrong
    _expect(isinstance(value, kind) and not (kind is int and isinstance(value, bool)),
            f"field {key!r} must be of type {kind.__name__}")
    return value


def _str_list(value: Any, what: str) -> list[str]:
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value),
            f"{what} must be a list of strings")
    return list(value)


def _numbers(value: Any, what: str, count: int) -> list[float]:
    _expect(isinstance(value, list) and len(value) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and bool(np.all(np.isfinite(value))),
            f"{what} must be a list of {count} finite numbers")
    return [float(v) for v in value]


def _legend(value: Any) -> dict[str, list[int]]:
    _expect(isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(c, list) and len(c) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
        for k, c in value.items()), "legend must map class names to [r, g, b] colours 0..255")
    return {k: list(c) for k, c in value.items()}


def _bands(data: dict, side: str) -> Bands:
    names = _str_list(data.get("names"), f"{side}.names")
    dtype = data.get("dtype")
    _expect(dtype is None or dtype in DTYPES, f"{side}.dtype must be one of {', '.join(DTYPES)}")
    clip = data.get("clip")
    _expect(clip is None or (isinstance(clip, (int, float)) and clip > 0), f"{side}.clip must be positive")
    low = _numbers(data.get("low"), f"{side}.low", len(names))
    high = _numbers(data.get("high"), f"{side}.high", len(names))
    _expect(all(h != lo for lo, h in zip(low, high, strict=True)), f"{side}.low and {side}.high must differ")
    return Bands(names=names, low=low, high=high, dtype=dtype, clip=clip)
