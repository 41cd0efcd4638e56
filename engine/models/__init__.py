"""Architectures a model file may name, and building one from its card.

A card names an architecture and its keyword parameters as JSON numbers,
strings or booleans; nothing else is accepted, so a model file can only ever
choose among the classes listed here.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import ModelFileError
from .cdcgan import CDCGANGenerator
from .class_unet import ClassUNet
from .inpaint_unet import InpaintUNet
from .patchgan import PatchGAN
from .unet import UNet

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "patchgan": PatchGAN,
    "inpaint_unet": InpaintUNet,
    "cdcgan": CDCGANGenerator,  # synthesize: conditional DCGAN generator (baseline)
    "class_unet": ClassUNet,  # synthesize: class-conditional EDM denoiser
}


def build(name: str, params: dict[str, Any]) -> nn.Module:
    """Instantiate architecture `name` with keyword `params` from a model card."""
    cls = ARCHITECTURES.get(name)
    if cls is None:
        raise ModelFileError(
            f"unknown architecture {name!r} in the model card; this SatGen knows "
            f"{', '.join(sorted(ARCHITECTURES))} (a newer plugin may know more)"
        )
    accepted = set(inspect.signature(cls).parameters)
    for key, value in params.items():
        if key not in accepted:
            raise ModelFileError(f"architecture {name!r} takes no parameter {key!r}")
        if not isinstance(value, (int, float, str, bool)) and value is not None:
            raise ModelFileError(f"parameter {key!r} of {name!r} must be a number, string or boolean")
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"cannot build architecture {name!r} from the model card: {exc}") from None
