"""The configuration of an inpainting training run: one field per option, with its help and
default, and the values derived from the patch size. Imports no torch (see translation.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..training.options import RunOptions, derive_from_patch, option

FILLS = ("harmonic", "push_pull")  # the interpolations the U-Net may correct (engine.inpainting.fills)


MAX_DEPTH = 7  # the inpainter needs context, not a 1 px bottleneck


@dataclass
class InpaintingConfig(RunOptions):
    inputs: list[str] = option(help="clear raster(s), all with the same bands and dtype")
    output_model: str = option(help="model file to write (.satgen)")
    report_dir: str = option(help="folder for checkpoint, loss curves, samples, metrics")
    bands: list[int] | None = option(None, "1-based bands, e.g. 1,2,3,4 (default: all)")
    real_masks: list[str] = option(help="cloud masks (non-zero = cloud) lending real shapes", factory=list)
    exclude_masks: list[str] = option(help="per input: a mask of pixels that are not clear after all (non-zero)",
                                      factory=list)
    coverage_min: float = option(0.05, "least cloud cover of a training mask")
    coverage_max: float = option(0.6, "most cloud cover of a training mask")
    real_share: float = option(0.5, "share of training masks cut from the real masks, when given")
    epochs: int = option(20, "epochs")
    patches_per_epoch: int = option(800, "training patches per epoch")
    batch_size: int = option(8, "batch size")
    patch_size: int = option(128, "training patch in px; a power of two from 32 to 512 unless --depth is given")
    tile_size: int | None = option(None, "tile size stored for applying the model (default: the patch, at least 256)")
    overlap: int = option(32, "tile overlap stored for applying the model")
    ngf: int = option(16, "generator width")
    depth: int | None = option(None, "U-Net depth (default: log2 of the patch size, at most 7)")
    ndf: int = option(32, "discriminator width")
    lambda_hole: float = option(100.0, "weight of the L1 loss inside the clouds")
    lambda_valid: float = option(10.0, "weight of the L1 loss outside the clouds")
    adversarial: bool = option(True, "no discriminator (L1 losses only)", flag="--l1-only", action="store_false")
    fill: str = option("harmonic", "the interpolation the U-Net corrects", choices=FILLS)
    gan_mode: str = "vanilla"
    jitter: float = option(0.15, "random per-band gain and offset of training patches (model units)")
    lr: float = option(2e-4, "Adam learning rate")
    beta1: float = 0.5
    decay_epochs: int | None = None
    block_size: int | None = option(None, "side of the split's square blocks in px (default: twice the patch)")
    val_fraction: float = option(0.25, "share of the blocks held out for validation")
    seed: int = option(0, "random seed (split, masks, patches, initial weights)")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda, cuda:N")
    half_precision_file: bool = True
    attribution: str = option("", "model card: attribution")
    licence: str = option("", "model card: licence")
    data_description: str = option("", "model card: data description")
    name: str = option("cloud inpainting", "model card: name")
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Values derived from the patch size, the same whichever front end built the configuration."""
        derive_from_patch(self, MAX_DEPTH)
