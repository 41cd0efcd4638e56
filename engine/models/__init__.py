"""Architectures a model file may name, and building one from its card.

A card names an architecture and its keyword parameters as JSON numbers,
strings or booleans; nothing else is accepted, so a model file can only ever
choose among the classes listed here. Every parameter is checked against the
bounds in `PARAMETERS` and the model is sized on PyTorch's meta device (no
memory) before it is built, so no card can make SatGen allocate without limit.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..card import MAX_BANDS, MAX_CLASSES, ModelCard
from ..errors import ModelFileError
from ..inpainting.config import FILLS
from .cdcgan import CDCGANGenerator
from .class_unet import ClassUNet
from .inpaint_unet import InpaintUNet
from .patchgan import PatchGAN
from .unet import UPSAMPLES, UNet

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "patchgan": PatchGAN,
    "inpaint_unet": InpaintUNet,
    "cdcgan": CDCGANGenerator,  # synthesize: conditional DCGAN generator (baseline)
    "class_unet": ClassUNet,  # synthesize: class-conditional EDM denoiser
}
# the architectures each task runs (patchgan is a training-time critic only)
TASK_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "image-to-image": ("unet",), "translate": ("unet",), "inpaint": ("inpaint_unet", "unet"),
    "synthesize": ("class_unet", "cdcgan"),
}
# weights and buffers of one model: pix2pix's unet_256 has 54 M, the shipped models 0.5 to 3 M;
# 2**28 is 1 GiB of float32
MAX_PARAMETERS = 2 ** 28
# values one tile of the card's tile size makes on its way through the model, all layers' outputs
# summed (a batch-1 forward pass on the meta device): 2**31 is 8 GiB of float32, against 0.05 GiB
# for pix2pix's unet_256 on its 256 px tiles and 0.8 GiB on 1024 px tiles
MAX_ACTIVATIONS = 2 ** 31
MAX_WIDTH = 1024  # base width of a network (ngf, ndf, base): the papers use 32 to 128
_BUILD_ERRORS = (TypeError, ValueError, RuntimeError, IndexError, OverflowError, RecursionError, MemoryError,
                 ZeroDivisionError, AssertionError)


@dataclass(frozen=True)
class Bound:
    """The values one architecture parameter may take."""

    kind: type  # int, float, bool or str
    low: float = 0
    high: float = 0
    choices: tuple = ()
    multiple: int = 1

    def admits(self, value: Any) -> bool:
        if self.kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool) or value is None:
            return False
        if self.choices:
            return type(value) is self.kind and value in self.choices
        if self.kind is int:
            return isinstance(value, int) and self.low <= value <= self.high and value % self.multiple == 0
        if self.kind is float:
            return isinstance(value, (int, float)) and math.isfinite(value) and self.low <= value <= self.high
        return False

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(repr(c) if isinstance(c, str) else str(c) for c in self.choices)
        if self.kind is int:
            step = f", a multiple of {self.multiple}" if self.multiple > 1 else ""
            return f"an integer {self.low}..{self.high}{step}"
        return f"a number {self.low:g}..{self.high:g}"


def _int(low: int, high: int, multiple: int = 1) -> Bound:
    return Bound(int, low, high, multiple=multiple)


def _float(low: float, high: float) -> Bound:
    return Bound(float, low, high)


_CHANNELS = _int(1, MAX_BANDS)
_WIDTH = _int(1, MAX_WIDTH)
_UNET_DEPTH = _int(2, 12)  # 2**depth divides the tile (at most 4096 px)
_MAX_MULT = _int(1, 64)  # widest layer = width x max_mult
_DROPOUT = _float(0.0, 1.0)

# every parameter of every architecture, with the values a card may give it
PARAMETERS: dict[str, dict[str, Bound]] = {
    "unet": {"in_channels": _CHANNELS, "out_channels": _CHANNELS, "ngf": _WIDTH, "depth": _UNET_DEPTH,
             "max_mult": _MAX_MULT, "dropout": _DROPOUT, "upsample": Bound(str, choices=UPSAMPLES),
             "classes": _int(0, MAX_CLASSES)},
    "patchgan": {"in_channels": _int(1, 2 * MAX_BANDS + 1), "ndf": _WIDTH, "n_layers": _int(1, 8)},
    "inpaint_unet": {"in_channels": _int(2, MAX_BANDS + 1), "out_channels": _CHANNELS, "ngf": _WIDTH,
                     "depth": _UNET_DEPTH, "max_mult": _MAX_MULT, "dropout": _DROPOUT,
                     "fill": Bound(str, choices=tuple(FILLS))},
    "cdcgan": {"out_channels": _CHANNELS, "num_classes": _int(1, MAX_CLASSES), "patch_size": Bound(int, choices=(
        16, 32, 64, 128)), "nz": _int(1, 4096), "ngf": _WIDTH},
    # GroupNorm takes groups of 8 channels: widths (and their sums at the skips) must be multiples of 8;
    # the noise embedding is cosines and sines of emb / 2 frequencies: emb is even
    "class_unet": {"in_channels": _CHANNELS, "num_classes": _int(1, MAX_CLASSES), "base": _int(8, MAX_WIDTH, 8),
                   "depth": _int(1, 8), "max_mult": _MAX_MULT, "blocks": _int(1, 16), "emb": _int(2, 4096, 2),
                   "attention": Bound(bool), "dropout": _DROPOUT, "sigma_data": _float(1e-3, 1e3),
                   "patchify": _int(1, 8)},
}


def _architecture(name: str) -> type[nn.Module]:
    cls = ARCHITECTURES.get(name)
    if cls is None:
        raise ModelFileError(
            f"unknown architecture {name!r} in the model card; this SatGen knows "
            f"{', '.join(sorted(ARCHITECTURES))} (a newer plugin may know more)"
        )
    return cls


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_params(name: str, params: dict[str, Any]) -> None:
    """ModelFileError naming the parameter and its allowed values unless every parameter of
    architecture `name` is known, present when required, and within its bounds."""
    cls = _architecture(name)
    bounds = PARAMETERS[name]
    if not isinstance(params, dict):
        raise ModelFileError(f"the parameters of architecture {name!r} must be a JSON object")
    for key, value in params.items():
        if key not in bounds:
            raise ModelFileError(f"architecture {name!r} takes no parameter {_shown(key)}; it takes "
                                 f"{', '.join(bounds)}")
        if not isinstance(value, (int, float, str, bool)):
            raise ModelFileError(f"parameter {key!r} of {name!r} must be a number, string or boolean "
                                 f"({bounds[key].describe()}), got {_shown(value)}")
        if not bounds[key].admits(value):
            raise ModelFileError(f"parameter {key!r} of architecture {name!r} must be {bounds[key].describe()}, "
                                 f"got {_shown(value)}; the model file is damaged or not made by SatGen")
    required = [k for k, p in inspect.signature(cls).parameters.items() if p.default is inspect.Parameter.empty]
    missing = [k for k in required if k not in params]
    if missing:
        raise ModelFileError(f"architecture {name!r} needs parameter(s) {', '.join(missing)} in the model card")


def param(name: str, params: dict[str, Any], key: str) -> Any:
    """A parameter of architecture `name`: the card's value or the architecture's default."""
    if key in params:
        return params[key]
    return inspect.signature(_architecture(name)).parameters[key].default


def count_parameters(name: str, params: dict[str, Any]) -> int:
    """Weights and buffers of the model a card describes, counted on the meta device
    (nothing allocated); `params` must have passed `check_params`."""
    try:
        with torch.device("meta"):
            probe = _architecture(name)(**params)
    except _BUILD_ERRORS as exc:
        raise ModelFileError(f"cannot build architecture {name!r} from the model card: {exc}") from None
    return sum(t.numel() for t in probe.parameters()) + sum(t.numel() for t in probe.buffers())


def check_size(name: str, params: dict[str, Any]) -> None:
    """ModelFileError unless the parameters are within bounds and the model has at most MAX_PARAMETERS."""
    check_params(name, params)
    size = count_parameters(name, params)
    if size > MAX_PARAMETERS:
        raise ModelFileError(
            f"architecture {name!r} with the card's parameters would have {size:,} weights, more than the "
            f"{MAX_PARAMETERS:,} SatGen loads (1 GiB); the model file is damaged or its model too large")


def build(name: str, params: dict[str, Any]) -> nn.Module:
    """Instantiate architecture `name` with keyword `params` from a model card, on the CPU."""
    check_size(name, params)
    try:
        with torch.device("cpu"):
            return _architecture(name)(**params)
    except _BUILD_ERRORS as exc:
        raise ModelFileError(f"cannot build architecture {name!r} from the model card: {exc}") from None


def _fits(ok: bool, card: ModelCard, problem: str) -> None:
    if not ok:
        raise ModelFileError(f"the model card does not fit its architecture {card.architecture!r}: {problem}; "
                             f"the model file is damaged or inconsistent")


def check_fits(card: ModelCard) -> None:
    """ModelFileError unless the card's architecture runs its task and its parameters agree with
    the card's bands, classes and tile size (what the tools feed the model and expect back), and one
    tile of the card's size passes through the model within MAX_ACTIVATIONS."""
    name, params = card.architecture, card.params
    _architecture(name)
    known = TASK_ARCHITECTURES[card.task]
    if name not in known:
        raise ModelFileError(f"a model of task {card.task!r} must have architecture {' or '.join(known)}, not "
                             f"{name!r}; the model file is damaged or inconsistent")
    check_params(name, params)

    def get(key: str) -> Any:
        return param(name, params, key)

    n_in, n_out, tile = card.inputs.count, card.outputs.count, card.tile_size
    if card.task == "synthesize":
        channels = get("out_channels") if name == "cdcgan" else get("in_channels")
        _fits(channels == n_out, card, f"it makes {channels} band(s), the card's outputs.names has {n_out}")
        _fits(get("num_classes") == len(card.classes), card,
              f"num_classes is {get('num_classes')}, the card's classes list {len(card.classes)}")
        # cdcgan makes patches of its own size
        multiple = get("patch_size") if name == "cdcgan" else get("patchify") * 2 ** (get("depth") - 1)
        _fits(name != "cdcgan" or tile == multiple, card, f"it makes {multiple} px patches, the card's tile_size "
                                                          f"is {tile}")
    else:
        extra = 1 if card.task == "inpaint" else 0  # inpainting: the bands plus the mask
        _fits(get("in_channels") == n_in + extra, card,
              f"in_channels is {get('in_channels')}, the card's inputs.names has {n_in} band(s)"
              + (" (plus one mask channel)" if extra else ""))
        _fits(get("out_channels") == n_out, card,
              f"out_channels is {get('out_channels')}, the card's outputs.names has {n_out} band(s)")
        classes = get("classes") if name == "unet" else 0
        drawn = {len(card.classes), len(card.classes) + ("background" in card.legend)}  # the background drawn too
        _fits(not classes or (card.task == "translate" and classes in drawn), card,
              f"a U-Net of {classes} class scores draws a translate model's classes, but the card's task is "
              f"{card.task!r} with {len(card.classes)} classes")
        if card.task == "inpaint":
            _fits(n_in == n_out, card, f"inpainting returns the bands it takes, but the card has {n_in} input "
                                       f"and {n_out} output band(s)")
        multiple = 2 ** get("depth")
    _fits(tile % multiple == 0, card, f"tile_size {tile} is not a multiple of {multiple}")
    check_size(name, params)
    _check_activations(card)


def activations(card: ModelCard) -> int:
    """Values one tile of the card's tile size makes in a forward pass (batch 1): the outputs of
    every layer, summed, counted on the meta device (nothing allocated, nothing computed)."""
    total = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    tile, n = card.tile_size, card.outputs.count
    try:
        with torch.device("meta"), torch.no_grad():
            net = _architecture(card.architecture)(**card.params).eval()
            for m in net.modules():
                if not any(True for _ in m.children()):
                    m.register_forward_hook(count)
            labels = torch.zeros(1, dtype=torch.long)
            if card.architecture == "cdcgan":
                net(torch.zeros(1, param("cdcgan", card.params, "nz")), labels)
            elif card.architecture == "class_unet":
                net(torch.zeros(1, n, tile, tile), torch.ones(1), labels)
            else:
                net(torch.zeros(1, param(card.architecture, card.params, "in_channels"), tile, tile))
    except _BUILD_ERRORS as exc:
        raise ModelFileError(f"the model card does not fit its architecture {card.architecture!r}: a "
                             f"{tile} px tile cannot pass through it ({exc}); the model file is damaged or "
                             f"inconsistent") from None
    return total


def _check_activations(card: ModelCard) -> None:
    values = activations(card)
    if values > MAX_ACTIVATIONS:
        raise ModelFileError(
            f"one {card.tile_size} px tile of this {card.architecture!r} model would make {values:,} values "
            f"({values * 4 / 2 ** 30:.0f} GiB), more than the {MAX_ACTIVATIONS:,} SatGen allows; the model card's "
            f"tile_size or parameters are damaged or far too large")
