"""The configuration of a synthesis training run: one field per option, with its help and
default. Imports no torch (see translation.config)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any

from ..training.options import RunOptions, option

ARCHS = ("diffusion", "cdcgan")
STRETCHES = ("percentile", "minmax")


def _guidance(text: str) -> float | None:
    """A guidance weight typed on the command line, or 'auto' (None: chosen after training)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"guidance must be a number (1: plain conditional) or 'auto'; got {text!r}") from None


def _class_names(text: str) -> dict[str, str]:
    try:
        return dict(part.split("=", 1) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"class names must be code=name pairs separated by commas, e.g. "
                                         f"1=developed,5=forest; got {text!r}") from None


@dataclass
class SynthesisConfig(RunOptions):
    output_model: str = option(help="model file to write (.satgen)")
    report_dir: str = option(help="folder for checkpoint, loss curves, samples, metrics")
    arch: str = option("diffusion", "class-conditional diffusion, or the cDCGAN baseline", choices=ARCHS)
    dataset: str | None = option(None, "class folders: DATASET/<class>/<images>")
    input: str | None = option(None, "or: a raster ...")
    labels: str | None = option(None, "... with a class raster or a polygon layer (GeoPackage, GeoJSON)")
    field: str | None = option(None, "class attribute of the polygon layer")
    class_names: dict[str, str] | None = option(None, "class raster codes to names, e.g. 1=developed,5=forest",
                                                parse=_class_names)
    bands: list[int] | None = option(None, "1-based raster bands (default: all)")
    patch_size: int = option(32, "patch size in px")
    threshold: float = option(0.6, "share of a window its dominant class must cover")
    stride: int | None = option(None, "window step in px (default: half a patch)")
    block_size: int | None = option(None, "side of the split's square blocks in px (default: 4 patches)")
    val_fraction: float = option(0.25, "share held out for validation")
    stretch: str = option("percentile", "values mapped to [-1, 1]: percentile (0.5-99.5 %% of the training patches, "
                                        "per band) or minmax (their minimum and maximum: 8-bit photos)",
                          choices=STRETCHES)
    min_patches: int = option(1, "classes with fewer training patches are left out")
    max_per_class: int | None = option(None, "class folders: at most this many images per class")
    unlabelled: str | None = option(None, "diffusion: a folder of images without class labels (any layout); they "
                                          "teach the unconditional model, the classes are learnt from the labelled "
                                          "data only")
    unlabelled_share: float = option(0.5, "diffusion: share of each batch drawn from the unlabelled images")
    epochs: int = option(20, "epochs")
    patches_per_epoch: int | None = option(None, "training patches per epoch (default: the training set's size)")
    batch_size: int = option(32, "batch size")
    lr: float | None = option(None, "Adam learning rate (default: 2e-4 for cdcgan, the recipe; 5e-4 for diffusion)")
    beta1: float | None = None  # None: 0.5 (cdcgan), 0.9 (diffusion)
    nz: int = option(100, "cdcgan: noise size")
    ngf: int = option(64, "cdcgan: generator width")
    ndf: int = option(64, "cdcgan: discriminator width")
    base: int = option(32, "diffusion: U-Net width")
    depth: int = option(3, "diffusion: U-Net levels")
    max_mult: int = 2
    blocks: int = option(1, "diffusion: residual blocks per level")
    patchify: int = option(2, "diffusion: the U-Net runs on patchify x patchify pixel blocks (2: 4x cheaper)")
    dropout: float = 0.1
    label_dropout: float = option(0.15, "diffusion: share of unconditional training steps (for guidance)")
    wide_noise: float = option(0.2, "diffusion: share of noise levels drawn over the sampler's whole range")
    ema: float = option(0.999, "decay of the weights' moving average")
    guidance: float | None = option(None, "default guidance stored in the model (diffusion); 'auto' (default): the "
                                          "weight whose patches come closest to the training patches, chosen after "
                                          "training", parse=_guidance)
    guidance_samples: int = option(100, "patches per class and weight when choosing the guidance")
    steps: int = option(18, "default sampler steps stored in the model (diffusion)")
    seed: int = option(0, "random seed")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda, cuda:N")
    half_precision_file: bool = True
    name: str = option("", "model card: name")
    attribution: str = option("", "model card: attribution")
    licence: str = option("", "model card: licence")
    data_description: str = option("", "model card: data description")
    extra: dict[str, Any] = _field(default_factory=dict)
