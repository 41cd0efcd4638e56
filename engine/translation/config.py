"""The configuration of a translation (Pix2Pix) training run: one field per option, with its
help and default, and the values derived from the patch size. Imports no torch, so the QGIS
algorithms can read their defaults from it before the engine's dependencies are checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..training.options import RunOptions, derive_from_patch, option

MAX_DEPTH = 8  # 256 px at the bottleneck's 1 px: deeper U-Nets only add parameters
HOLDOUTS = ("image", "folder")  # what a training set of many pairs holds out whole for validation
UPSAMPLES = ("resize", "transpose")  # models.unet.UPSAMPLES, the default first (this module imports no torch)
HEADS = ("colours", "classes")  # what the generator's last layer makes
MAX_PALETTE = 64  # flat colours fitted to maps that come without a legend (--head classes)
# the class loss's weight for a generator of class scores, chosen on validation images (docs/protocol-dubai-
# translation.md, amendment 3)
CLASS_SCORES_WEIGHT = 100.0


@dataclass
class TranslationConfig(RunOptions):
    input: str = option(help="satellite raster; or a folder of images, or a glob pattern naming several "
                             "(e.g. 'city/*/images'), paired by name with the maps in --target")
    output_model: str = option(help="model file to write (.satgen)")
    report_dir: str = option(help="folder for checkpoint, loss curves, samples, metrics")
    target: str = option("", "map raster (RGB, or one band with a colour table), any CRS and resolution: warped "
                             "onto the input's grid; or the folder(s) of maps with the input images' names")
    side_by_side: bool = option(False, "the input images hold their map in their right half (pix2pix data "
                                       "sets); give no --target")
    holdout: str = option("image", "with many pairs: hold out whole images, or whole folders (each folder or "
                                   "file the input names, e.g. one city tile)", choices=HOLDOUTS)
    bands: list[int] | None = option(None, "1-based input bands, e.g. 3,2,1 (default: all)")
    legend: str | None = option(None, "legend JSON of the map (from satgen:render_map_target): per-class scores")
    epochs: int = option(20, "epochs")
    patches_per_epoch: int = option(400, "training patches per epoch")
    batch_size: int = option(4, "batch size")
    patch_size: int = option(256, "training patch in px; a power of two from 32 to 512 unless --depth is given")
    tile_size: int | None = option(None, "tile size stored for applying the model (default: the patch, at least 256)")
    overlap: int = option(32, "tile overlap stored for applying the model")
    ngf: int = option(32, "generator width (64 with depth 8 = the paper's unet_256)")
    depth: int | None = option(None, "U-Net depth (default: log2 of the patch size, at most 8)")
    ndf: int | None = option(None, "discriminator width (default: ngf, as the paper pairs 64 with 64)")
    upsample: str = option("resize", "generator's upsampling: resize (bilinear, then a 3x3 convolution; no "
                                     "checkerboard) or transpose (the paper's transposed convolutions)",
                           choices=UPSAMPLES)
    head: str = option("colours", "what the generator makes: colours (Pix2Pix), or scores of the legend's classes "
                                  "drawn in their colours (the map is always in the legend's colours, and "
                                  "--lambda-class weighs the scores' cross-entropy); without --legend, of "
                                  "--palette-size flat colours fitted to the training maps", choices=HEADS)
    palette_size: int = option(8, "with --head classes and no --legend: how many flat colours to fit to the "
                                  "training maps (k-means) for the generator to draw")
    lambda_l1: float = option(100.0, "weight of the L1 loss")
    lambda_class: float | None = option(
        None, f"with --legend: weight of the class loss, the cross-entropy of the legend classes read from the "
              f"output's colours, or with --head classes of the class scores (0: none; default: 0, with --head "
              f"classes {CLASS_SCORES_WEIGHT:g})")
    adversarial: bool = option(True, "train the L1-only baseline (no discriminator)", flag="--l1-only",
                               action="store_false")
    gan_mode: str = "vanilla"
    lr: float = option(2e-4, "Adam learning rate")
    beta1: float = 0.5
    decay_epochs: int | None = None  # None: the second half of the epochs
    block_size: int | None = option(None, "side of the split's square blocks in px (default: twice the patch)")
    # the legend's background colour means "not mapped here", not a class: such pixels
    # are left out of the loss and of validation (for partial maps such as OSM extracts)
    unlabelled_background: bool = option(
        False, "the legend's background colour marks unmapped land: leave it out of loss and scores")
    min_valid: float | None = option(None, "share of labelled pixels a training patch needs (default: 0.3 with "
                                           "--unlabelled-background, else 0.9)")
    val_fraction: float = option(0.25, "share of the blocks (or images, or folders) held out for validation")
    val_tiles_per_epoch: int = 32  # evenly spread subset for the per-epoch curve; the final metrics use all
    seed: int = option(0, "random seed (split, patches, initial weights)")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda, cuda:N")
    half_precision_file: bool = True  # store weights as float16 (half the file size)
    ground_resolution: float | None = option(
        None, "ground size of the imagery's pixels in metres, for the model card when the input has no "
              "georeferencing (translate warns on imagery far from it; default: read from the input)")
    attribution: str = option("", "model card: attribution")
    licence: str = option("", "model card: licence")
    data_description: str = option("", "model card: data description")
    name: str = option("satellite -> map translation", "model card: name")
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Values derived from the patch size, the same whichever front end built the configuration."""
        derive_from_patch(self, MAX_DEPTH)
        if self.min_valid is None:
            self.min_valid = 0.3 if self.unlabelled_background else 0.9
        if self.lambda_class is None:
            self.lambda_class = CLASS_SCORES_WEIGHT if self.head == "classes" else 0.0
