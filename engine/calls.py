"""Engine calls as data: what a front end asks the engine to run, in a form that crosses a pipe.

The QGIS plugin runs the engine either in QGIS's own Python or in a Python environment of
its own (engine/worker.py, started as a subprocess). Both go through this module, so an
algorithm builds the same `Call` whichever runs it, and gets the same plain result back:

- `Call(name, *args, **kwargs)`: `name` is one of ENTRY_POINTS (nothing else can be run);
  arguments are JSON values, paths, engine dataclasses (as instances, or as `Obj` for a
  dataclass whose module the caller need not import, e.g. one that imports torch), and
  FEEDBACK where the function takes the caller's feedback.
- `run(request, feedback)` decodes a request, runs it and returns the encoded result:
  dataclasses become dicts of their fields, paths strings, numpy scalars Python numbers.

This module imports only the standard library (and the engine's errors), so a QGIS without
torch, rasterio or even numpy can build calls.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from typing import Any

from .errors import InputError, SatGenError

# name -> "module:function", modules relative to the engine package
ENTRY_POINTS = {
    "apply_model": "pipeline:apply_model",
    "translate": "translation.apply:translate",
    "inpaint": "inpainting.apply:inpaint",
    "synthesize": "synthesis.synthesize:synthesize",
    "train_translation": "translation.train:train_translation",
    "train_inpainting": "inpainting.train:train_inpainting",
    "train_synthesis": "synthesis.training:train_synthesis",
    "evaluate_synthesis": "synthesis.evaluation:evaluate_synthesis",
    "update_report": "training.report:update_report",
    "map_target_grid": "translation.targets:grid_numbers",
    "write_rendered_map_target": "translation.targets:write_rendered_map_target",
    "environment": "environment:report",
}

_PACKAGE = __name__.rsplit(".", 1)[0]  # "engine", or "satgen_qgis.engine" inside the plugin zip


class _Feedback:
    def __repr__(self) -> str:
        return "FEEDBACK"


FEEDBACK = _Feedback()  # stands for the caller's feedback among a call's arguments


@dataclasses.dataclass
class Obj:
    """An engine dataclass named by "module:Class" (module relative to the engine package), built
    where the call runs: `Obj("pipeline:TileOptions", tile_size=256)`."""

    kind: str
    fields: dict[str, Any]

    def __init__(self, kind: str, **fields: Any):
        self.kind, self.fields = kind, fields


@dataclasses.dataclass
class Call:
    name: str
    args: tuple
    kwargs: dict[str, Any]

    def __init__(self, name: str, *args: Any, **kwargs: Any):
        if name not in ENTRY_POINTS:
            raise ValueError(f"no engine entry point {name!r}")
        self.name, self.args, self.kwargs = name, args, kwargs

    def request(self) -> dict:
        """The call as JSON-ready data (what `run` takes)."""
        return {"call": self.name, "args": [encode_argument(a) for a in self.args],
                "kwargs": {k: encode_argument(v) for k, v in self.kwargs.items()}}


def _kind_of(cls: type) -> str:
    module = cls.__module__
    if not (module == _PACKAGE or module.startswith(_PACKAGE + ".")):
        raise TypeError(f"{cls.__name__} is not an engine dataclass")
    return f"{module[len(_PACKAGE) + 1:]}:{cls.__qualname__}"


def encode_argument(value: Any) -> Any:
    """A call argument as JSON-ready data."""
    if value is FEEDBACK:
        return {"$feedback": True}
    if isinstance(value, Obj):
        return {"$obj": value.kind, "fields": {k: encode_argument(v) for k, v in value.fields.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode_argument(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {"$obj": _kind_of(type(value)), "fields": fields}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [encode_argument(v) for v in value]
    if isinstance(value, dict):
        if any(not isinstance(k, str) or k.startswith("$") for k in value):
            raise TypeError(f"cannot pass a dict with keys {list(value)} to the engine")
        return {k: encode_argument(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot pass a {type(value).__name__} to the engine")


def _dataclass(kind: str) -> type:
    module, _, name = kind.partition(":")
    if not module or not name or not all(part.isidentifier() for part in [*module.split("."), name]):
        raise InputError(f"malformed engine type {kind!r}")
    try:
        cls = getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == f"{_PACKAGE}.{module}"):
        raise InputError(f"{kind} is not an engine dataclass")
    return cls


def decode_argument(value: Any, feedback: Any) -> Any:
    """Data from `encode_argument` as the value the engine function takes."""
    if isinstance(value, list):
        return [decode_argument(v, feedback) for v in value]
    if isinstance(value, dict):
        if value.get("$feedback"):
            return feedback
        if "$obj" in value:
            cls = _dataclass(value["$obj"])
            return cls(**{k: decode_argument(v, feedback) for k, v in value.get("fields", {}).items()})
        return {k: decode_argument(v, feedback) for k, v in value.items()}
    return value


def encode_result(value: Any) -> Any:
    """An engine function's return value as JSON-ready data: dataclasses as dicts of their fields
    (less those with metadata {"local": True}: in-memory extras such as arrays of pixels), paths as
    strings, numpy scalars and arrays as numbers and lists, non-finite floats as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode_result(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("local")}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): encode_result(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [encode_result(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalar or array
        return encode_result(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def entry_point(name: str):
    if name not in ENTRY_POINTS:
        raise InputError(f"no engine entry point {name!r}; this plugin and its engine differ in version: "
                         f"reinstall the plugin")
    module, _, function = ENTRY_POINTS[name].partition(":")  # an import error here is a broken install: raised
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), function)


def run(request: dict, feedback: Any) -> Any:
    """Run a request made by `Call.request()`; the encoded result."""
    function = entry_point(request.get("call", ""))
    args = [decode_argument(a, feedback) for a in request.get("args", [])]
    kwargs = {k: decode_argument(v, feedback) for k, v in request.get("kwargs", {}).items()}
    return encode_result(function(*args, **kwargs))


def error_data(exc: BaseException) -> dict:
    """An engine error as data for the other side of a pipe (`raise_error` raises it again)."""
    if isinstance(exc, SatGenError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": "internal", "message": f"{type(exc).__name__}: {exc}"}


def raise_error(data: dict) -> None:
    """Raise the engine error `error_data` described: the same SatGenError class where it is one."""
    from . import errors

    cls = getattr(errors, str(data.get("type")), None)
    if isinstance(cls, type) and issubclass(cls, SatGenError):
        raise cls(data.get("message", ""))
    raise RuntimeError(data.get("message", "the engine failed"))
