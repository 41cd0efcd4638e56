"""Model files: weights and model card in one safetensors file.

Layout: a standard safetensors file (https://huggingface.co/docs/safetensors)
whose tensors are the model's state_dict and whose header metadata holds the
card as JSON under the key "satgen.card". safetensors stores raw tensor bytes
and a JSON header, nothing executable, so loading a stranger's file cannot run
code; pickled checkpoints (torch.save) are refused outright.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import RESOURCES, models
from .card import ModelCard
from .errors import ModelFileError, OutputError
from .fileio import atomic_path

CARD_KEY = "satgen.card"
# the default model of each task, shipped in resources/models
DEFAULT_MODELS = {"translate": "translate_s2_osm.satgen", "inpaint": "inpaint_s2.satgen",
                  "synthesize": "synthesize_eurosat.satgen"}
SUFFIX = ".satgen"
_MAX_HEADER = 16 * 1024 * 1024  # a card plus tensor index is a few kB; refuse absurd headers


@dataclass
class LoadedModel:
    module: nn.Module
    card: ModelCard
    path: Path


def default_model(task: str) -> Path:
    """The shipped default model file of a task ("translate", "inpaint", "synthesize")."""
    if task not in DEFAULT_MODELS:
        raise ModelFileError(f"there is no default model for {task!r}; give a model file")
    path = RESOURCES / "models" / DEFAULT_MODELS[task]
    if not path.is_file():
        raise ModelFileError(f"the default {task} model {path} is missing; reinstall the SatGen plugin or choose a "
                             f"model file (MODEL / --model; developers: `make models` rebuilds it)")
    return path


def save_model(path: str | os.PathLike, module: nn.Module, card: ModelCard, half: bool = False) -> Path:
    """Write `module`'s weights and `card` to `path` atomically.

    half=True stores floating-point weights as float16 (half the size; they are
    widened back to float32 on load), for default models under a size budget.
    """
    from safetensors.torch import save_file

    path = Path(path)
    # a card that cannot be loaded is never written: its fields within bounds, its model buildable
    ModelCard.from_json(card.to_json())
    models.build(card.architecture, card.params)
    tensors = {}
    for key, value in module.state_dict().items():
        value = value.detach().cpu().contiguous()
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value
    from safetensors import SafetensorError

    with atomic_path(path, verify=_verify_written) as tmp:
        try:
            save_file(tensors, tmp, metadata={CARD_KEY: card.to_json()})
        except SafetensorError as exc:
            raise OutputError(f"writing the model file failed ({exc}); the disk may be full or a file-size "
                              f"limit reached") from None
    return path


def _verify_written(path: str) -> None:
    """Raise OutputError unless the safetensors file at `path` holds its whole header and every tensor."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        complete = size == 8 + length + end
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        complete = False
    if not complete:
        raise OutputError("the model file was not written completely; the disk may be full or a file-size "
                          "limit reached")


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card of a model file, without building the model."""
    path = _check_file(Path(path))
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise ModelFileError(f"{path} is not a valid SatGen model file: {exc}") from None
    if CARD_KEY not in metadata:
        raise ModelFileError(
            f"{path} is a safetensors file without a SatGen model card; SatGen model "
            f"files are made by `python -m engine train ...` or the SatGen training algorithms"
        )
    return ModelCard.from_json(metadata[CARD_KEY])


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               tasks: tuple[str, ...] | None = None) -> LoadedModel:
    """Build the model a file describes, load its weights, put it in eval mode.

    `tasks`: the tasks the caller can run; a model of another task is refused.
    """
    from safetensors import safe_open

    path = Path(path)
    card = read_card(path)
    if tasks is not None and card.task not in tasks:
        raise ModelFileError(
            f"{path.name} is a {card.task!r} model, but this tool needs a model of task "
            f"{' or '.join(repr(t) for t in tasks)}; choose a matching model file"
        )
    models.check_fits(card)
    module = models.build(card.architecture, card.params)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = _read_weights(f, module, path.name)
    except ModelFileError:
        raise
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise ModelFileError(f"cannot read the weights in {path.name} ({exc}); the model file is damaged") from None
    try:
        module.load_state_dict(state, strict=True)  # copies (and widens float16) into float32 parameters
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the weights in {path.name} do not match its model card: {exc}") from None
    module.eval().to(device)
    return LoadedModel(module=module, card=card, path=path)


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_INT_DTYPES = ("I8", "I16", "I32", "I64", "U8", "U16", "U32")


def _read_weights(f, module: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The tensors of an open safetensors file that `module` expects, each checked for name, shape
    and kind before it is read (so memory never exceeds the model's own size) and for finite values."""
    expected = module.state_dict()
    keys = set(f.keys())
    missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"the weights in {name} do not match its model card: "
            + "; ".join(part for part in (f"missing {', '.join(missing[:5])}" if missing else "",
                                          f"unexpected {', '.join(unexpected[:5])}" if unexpected else "") if part)
            + (" (and more)" if len(missing) > 5 or len(unexpected) > 5 else ""))
    state = {}
    for key, want in expected.items():
        tensor_slice = f.get_slice(key)
        shape, dtype = tuple(tensor_slice.get_shape()), tensor_slice.get_dtype()
        kinds = _FLOAT_DTYPES if want.is_floating_point() else _INT_DTYPES
        if shape != tuple(want.shape) or dtype not in kinds:
            raise ModelFileError(
                f"the weights in {name} do not match its model card: {key} is {dtype} {list(shape)}, the model "
                f"needs {' or '.join(kinds) if dtype not in kinds else dtype} {list(want.shape)}")
        tensor = f.get_tensor(key)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"the weights in {name} hold NaN or infinite values ({key}); the model file "
                                 f"is damaged or its training diverged")
        state[key] = tensor
    return state


def _check_file(path: Path) -> Path:
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist; check the path")
    try:
        return _check_header(path)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path} ({exc.strerror or exc}); check the file and its "
                             f"permissions") from None


def _check_header(path: Path) -> Path:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        # safetensors: 8-byte little-endian header length, then the JSON header's "{"
        looks_safetensors = len(head) == 9 and head[8:9] == b"{"
        if not looks_safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):
            raise ModelFileError(
                f"{path.name} is a pickled PyTorch checkpoint (torch.save). SatGen does not "
                f"load pickles, because opening one can run any code it carries; use a "
                f"SatGen model file (safetensors with a model card), e.g. one made by `python -m engine train`"
            )
        header = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
        if not 2 <= header <= min(_MAX_HEADER, size - 8):
            raise ModelFileError(f"{path.name} is not a SatGen model file (not safetensors: bad header)")
        f.seek(8)
        try:
            json.loads(f.read(header))
        except ValueError:
            raise ModelFileError(f"{path.name} is not a SatGen model file (header is not JSON)") from None
        except RecursionError:
            raise ModelFileError(f"{path.name} is not a SatGen model file (header JSON nested too deeply)") from None
    return path
