"""The model card: everything the engine needs to know about a model file
besides its weights, as plain JSON (task, architecture, bands and their
scaling, tiling defaults, classes, training data and licence, metrics).

Cards are validated field by field when read, so a malformed or hostile file
fails with a message naming the field, never deep inside the pipeline.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ModelFileError
from .scaling import BandScaling

FORMAT = "satgen-model"
FORMAT_VERSION = 1
TASKS = ("image-to-image", "translate", "inpaint", "synthesize")
DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")

# Bounds of every card field, generous for any real model yet small enough that nothing
# built or run from a card can exhaust memory (the architecture parameters are bounded in
# engine.models with these band and class counts).
MAX_BANDS = 1024  # bands on either side: hyperspectral sensors have a few hundred
MAX_CLASSES = 1024  # class names (synthesis embeds one vector per class)
MAX_LEGEND = 256  # legend colours: a paletted map has at most 256; decoding costs pixels x colours
MAX_NAME = 256  # characters of a band, class or legend name
MAX_TITLE = 1000  # characters of the model's name
MAX_DESCRIPTION = 100_000  # characters of its description
MIN_TILE, MAX_TILE = 8, 4096  # px; the output tile (tile_size x scale) is at most MAX_TILE as well
MAX_SCALE = 16
MAX_VALUE = 1e12  # |low|, |high|: beyond uint32's 4.3e9, far inside float32's range
MIN_STEPS = 4  # |high - low| in float32 steps at their magnitude: the scaling (float32) tells them apart
MIN_ABS_SPAN = 1e-30  # and at least this: 2 / span stays far inside float32's range
MAX_CLIP = 1000.0  # model space is about [-1, 1]; the shipped models clip at 3
MAX_NESTING = 32  # levels of JSON objects and lists in the free-form training and metrics records
MAX_GUIDANCE, MAX_STEPS = 100.0, 10_000  # training.sampler of synthesis models


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
    resolution_m: float | None = None  # ground size of the training imagery's pixels (None: not known)
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
        except RecursionError:
            raise ModelFileError("the model card is not valid: its JSON is nested too deeply") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        """The card of a parsed JSON object; ModelFileError naming the field and its allowed
        values unless every field is within its bounds."""
        _expect(isinstance(data, dict), "the model card must be a JSON object")
        _expect(data.get("format") == FORMAT, f"the model card's 'format' must be {FORMAT!r}")
        version = data.get("format_version")
        _expect(_is_int(version) and version >= 1, "the model card has no integer 'format_version' (1 or more)")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"the model file has format version {version}, newer than this SatGen "
                f"understands ({FORMAT_VERSION}); update the SatGen plugin"
            )
        tile_size = _int_field(data, "tile_size", MIN_TILE, MAX_TILE, 256)
        scale = _int_field(data, "scale", 1, MAX_SCALE, 1)
        card = cls(
            task=_get(data, "task", str),
            architecture=_text(_get(data, "architecture", str), "architecture", MAX_NAME),
            params=_get(data, "params", dict),
            inputs=_bands(_get(data, "inputs", dict), "inputs"),
            outputs=_bands(_get(data, "outputs", dict), "outputs"),
            tile_size=tile_size,
            overlap=_int_field(data, "overlap", 0, tile_size // 2, 32),
            scale=scale,
            resolution_m=_resolution(data.get("resolution_m")),
            classes=_str_list(data.get("classes", []), "classes", MAX_CLASSES),
            legend=_legend(data.get("legend", {})),
            name=_text(_get(data, "name", str, ""), "name", MAX_TITLE),
            description=_text(_get(data, "description", str, ""), "description", MAX_DESCRIPTION),
            training=_record(_get(data, "training", dict, {}), "training"),
            metrics=_record(_get(data, "metrics", dict, {}), "metrics"),
        )
        _expect(card.task in TASKS, f"unknown task {card.task!r}; known tasks: {', '.join(TASKS)}")
        _expect(tile_size * scale <= MAX_TILE,
                f"tile_size x scale (the output tile) must be at most {MAX_TILE} px, got {tile_size} x {scale}")
        _expect(card.outputs.count >= 1, "outputs.names must name at least one band")
        _sampler(card.training)
        return card


def _resolution(value: Any) -> float | None:
    if value is None:
        return None
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 < value <= 1e6, "resolution_m must be a ground pixel size in metres (0 to 1e6) or null")
    return float(value)


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise ModelFileError(f"invalid model card: {message}")


def _is_int(value: Any) -> bool:
    # bool is an int in Python; a card saying "tile_size": true is still wrong
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _get(data: dict, key: str, kind: type, default: Any = ...):
    if key not in data:
        _expect(default is not ..., f"missing field {key!r}")
        return default
    value = data[key]
    _expect(isinstance(value, kind) and not (kind is int and isinstance(value, bool)),
            f"field {key!r} must be of type {kind.__name__}")
    return value


def _int_field(data: dict, key: str, low: int, high: int, default: int) -> int:
    value = data.get(key, default)
    _expect(_is_int(value) and low <= value <= high,
            f"field {key!r} must be an integer {low}..{high}, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(value: str, what: str, limit: int) -> str:
    _expect(len(value) <= limit, f"{what} must be at most {limit} characters long, not {len(value)}")
    return value


def _str_list(value: Any, what: str, limit: int) -> list[str]:
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value),
            f"{what} must be a list of strings")
    _expect(len(value) <= limit, f"{what} may hold at most {limit} names, not {len(value)}")
    long = [v for v in value if len(v) > MAX_NAME]
    _expect(not long, f"{what} may hold names of at most {MAX_NAME} characters ({_shown(long[0]) if long else ''})")
    return list(value)


def _numbers(value: Any, what: str, count: int) -> list[float]:
    _expect(isinstance(value, list) and len(value) == count and all(_is_number(v) for v in value),
            f"{what} must be a list of {count} finite numbers")
    _expect(all(abs(v) <= MAX_VALUE for v in value),
            f"{what} must lie between -{MAX_VALUE:g} and {MAX_VALUE:g}")
    return [float(v) for v in value]


def _legend(value: Any) -> dict[str, list[int]]:
    message = "legend must map class names to [r, g, b] colours 0..255"
    _expect(isinstance(value, dict), message)
    _expect(len(value) <= MAX_LEGEND, f"legend may hold at most {MAX_LEGEND} colours, not {len(value)}")
    _expect(all(isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)
                for c in value.values()), message)
    _str_list(list(value), "legend", MAX_LEGEND)
    return {k: list(c) for k, c in value.items()}


def _bands(data: dict, side: str) -> Bands:
    names = _str_list(data.get("names"), f"{side}.names", MAX_BANDS)
    dtype = data.get("dtype")
    _expect(dtype is None or dtype in DTYPES, f"{side}.dtype must be one of {', '.join(DTYPES)}")
    clip = data.get("clip")
    _expect(clip is None or (_is_number(clip) and 0 < clip <= MAX_CLIP),
            f"{side}.clip must be null or a number above 0 and at most {MAX_CLIP:g}, got {_shown(clip)}")
    low = _numbers(data.get("low"), f"{side}.low", len(names))
    high = _numbers(data.get("high"), f"{side}.high", len(names))
    for i, (lo, hi) in enumerate(zip(low, high, strict=True)):
        # the scaling runs in float32: the span must survive rounding there, and 2 / span must be finite
        span = abs(float(np.float32(hi) - np.float32(lo)))
        step = float(np.spacing(np.float32(max(abs(lo), abs(hi)))))
        _expect(span >= max(MIN_ABS_SPAN, MIN_STEPS * step),
                f"{side}.low and {side}.high must differ by at least {MIN_ABS_SPAN:g}, and by enough that float32 "
                f"(7 significant digits) tells them apart (band {i + 1}: low {lo:g}, high {hi:g})")
    return Bands(names=names, low=low, high=high, dtype=dtype, clip=None if clip is None else float(clip))


def _record(value: dict, what: str) -> dict:
    """A free-form record (training, metrics): any JSON, nested at most MAX_NESTING levels."""
    stack: list[tuple[dict | list, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        _expect(depth <= MAX_NESTING, f"{what} is nested more than {MAX_NESTING} levels deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return value


def _sampler(training: dict) -> None:
    """The parts of the training record the engine reads: config (the training configuration,
    an object) and, for synthesis models, sampler.guidance and sampler.steps."""
    _expect(isinstance(training.get("config", {}), dict), "training.config must be an object")
    sampler = training.get("sampler", {})
    _expect(isinstance(sampler, dict), "training.sampler must be an object")
    guidance, steps = sampler.get("guidance"), sampler.get("steps")
    _expect(guidance is None or (_is_number(guidance) and 0 <= guidance <= MAX_GUIDANCE),
            f"training.sampler.guidance must be null or a number 0..{MAX_GUIDANCE:g}, got {_shown(guidance)}")
    _expect(steps is None or (_is_int(steps) and 1 <= steps <= MAX_STEPS),
            f"training.sampler.steps must be null or an integer 1..{MAX_STEPS}, got {_shown(steps)}")
