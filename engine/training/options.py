"""Training configurations as the one source of their options.

Each trainer's configuration is a dataclass whose fields carry their help text
(`option(...)`). The command line builds its flags from those fields
(`add_arguments`, `from_arguments`), the QGIS algorithms take their parameter
defaults from them (`default_of`), and values a configuration derives from
others (a U-Net depth from the patch size, say) are filled in by the
configuration itself, so every front end trains the same model from the same
inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..bands import parse_bands
from ..errors import InputError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None, action: str | None = None,
           parse: Callable[[str], Any] | None = None, choices: tuple | None = None,
           factory: Callable[[], Any] | None = None) -> Any:
    """A configuration field with its command-line help.

    `flag` renames the command-line flag (e.g. "--l1-only"); `action` is argparse's
    ("store_false" for such a flag); `parse` turns the typed text into the value.
    A field without help is not on the command line."""
    metadata = {"help": help, "flag": flag, "action": action, "parse": parse, "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def unet_depth(patch_size: int) -> int:
    """The U-Net depth that takes a power-of-two patch down to 1 px (32 px: 5 ... 512 px: 9)."""
    depth = patch_size.bit_length() - 1
    if patch_size < 1 or patch_size != 1 << depth or not 5 <= depth <= 9:
        raise InputError(f"the patch size must be a power of two from 32 to 512 (or give the U-Net depth), "
                         f"got {patch_size}")
    return depth


def default_of(config_class: type[DataclassInstance], name: str) -> Any:
    """The default value of a configuration field (for a front end's own parameter default)."""
    field = config_class.__dataclass_fields__[name]
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    raise KeyError(f"{config_class.__name__}.{name} has no default")


def cli_bands(text: str) -> list[int] | None:
    """`parse_bands` for argparse."""
    try:
        return parse_bands(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(type without None, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(typing.get_args(hint))
    return hint, False


def add_arguments(parser: argparse.ArgumentParser, config_class: type[DataclassInstance]) -> None:
    """One flag per documented field of `config_class`; fields without a default are required.

    Every flag defaults to None, so `from_arguments` keeps the configuration's own
    default for flags not given (and its derived values stay derived)."""
    hints = typing.get_type_hints(config_class)
    # how a run is carried out (RunOptions) after what it learns
    for field in sorted(dataclasses.fields(config_class), key=lambda f: f.name in RUN_FIELDS):
        meta = field.metadata
        if not meta.get("help"):
            continue
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        required = field.default is MISSING and field.default_factory is MISSING
        default = None if required else default_of(config_class, field.name)
        flag_only = meta.get("action") or isinstance(default, bool)
        shown = "" if required or flag_only or default in (None, "", [], {}) else f" (default: {default})"
        kwargs: dict[str, Any] = dict(dest=field.name, default=None, help=meta["help"] + shown)
        kind, _ = _base_type(hints[field.name])
        if meta.get("action"):
            kwargs["action"] = meta["action"]
        elif kind is bool:
            kwargs["action"] = "store_false" if default else "store_true"
        elif meta.get("parse"):
            kwargs["type"] = meta["parse"]
        elif typing.get_origin(kind) is list and typing.get_args(kind) == (int,):
            kwargs["type"] = cli_bands
        elif typing.get_origin(kind) is list:
            kwargs["nargs"] = "+"
        elif kind in (int, float, str):
            kwargs["type"] = kind
        else:
            raise TypeError(f"{config_class.__name__}.{field.name}: no command-line form for {kind}; give parse=")
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if required:
            kwargs["required"] = True
        parser.add_argument(flag, **kwargs)


def from_arguments(config_class: type, args: argparse.Namespace):
    """The configuration of the flags given; the others keep their defaults."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def derive_from_patch(config: Any, max_depth: int) -> None:
    """Fill a U-Net trainer's values left None from its patch size: the depth (log2 of the patch,
    at most `max_depth`), the tile size stored for applying (the patch, at least 256 px) and the
    side of the split's blocks (two patches)."""
    if config.depth is None:
        config.depth = min(unet_depth(config.patch_size), max_depth)
    if config.tile_size is None:
        config.tile_size = max(config.patch_size, 256)
    if config.block_size is None:
        config.block_size = 2 * config.patch_size


def from_card(config_class: Any, card: Any, **overrides: Any) -> Any:
    """The training configuration a model card records (`card.training["config"]`), with overrides;
    fields the card lacks keep their defaults, fields the configuration no longer has are dropped."""
    fields = dict(card.training.get("config", {}))
    fields.setdefault("output_model", "")
    fields.setdefault("report_dir", "")
    fields.update(overrides)
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in fields.items() if k in names})


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# how a run is carried out, not what it learns: a run may resume with other values
RUN_FIELDS = ("precision", "workers", "channels_last", "compile")


@dataclasses.dataclass(kw_only=True)
class RunOptions:
    """The options every trainer's configuration shares for how training runs (not what it learns)."""

    precision: str = option("auto", "arithmetic of the training steps: fp32, bf16 or fp16 (autocast; fp16 with a "
                                    "gradient scaler); auto: bf16 on a CUDA GPU that has it, else fp32",
                            choices=PRECISIONS)
    workers: int | None = option(None, "processes preparing training patches beside the training (default: 0 on "
                                       "the CPU, 4 on a GPU)")
    channels_last: bool | None = option(None, "channels-last memory layout (default: on a CUDA GPU)")
    compile: bool = option(False, "compile the networks with torch.compile (slower start, faster steps)")
