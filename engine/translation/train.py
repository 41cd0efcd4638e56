"""Pix2Pix training for satellite -> map translation.

Configuration at the top; one `train_translation(config)` call does the
whole run: aligned pair, spatial block split, normalisation fitted on the
training blocks, U-Net generator + conditional PatchGAN, adversarial + lambda*L1
loss, validation on held-out blocks every epoch, a checkpoint every epoch
(re-running the same command resumes), and a report next to the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import metrics
from ..bands import display_bands
from ..card import Bands, ModelCard
from ..errors import InputError
from ..modelfile import save_model
from ..models.patchgan import PatchGAN
from ..models.unet import UNet
from ..progress import Feedback
from ..raster import ground_resolution
from ..splits import BlockSplit
from ..training.checkpoint import fingerprint_of, pix2pix_parts
from ..training.loop import RUN_FIELDS, Pix2PixSteps, Run, start, train
from ..training.objectives import colour_class_loss, gan_loss, legend_labels, masked_cross_entropy, masked_l1
from ..training.options import from_card
from ..training.report import plot_history, save_grid, to_display, write_metrics
from .config import MAX_PALETTE, TranslationConfig
from .data import PairPatches, PairSet, fit_input_scaling, fit_palette, load_pair, load_pairs, val_tiles

# settings that do not change what is learned: a run may resume with other values
_NOT_TRAINING = ("epochs", "device", "report_dir", "output_model", "val_tiles_per_epoch", "half_precision_file",
                 "name", "attribution", "licence", "data_description", "extra", "ground_resolution")


def _check(config: TranslationConfig) -> None:
    assert config.depth is not None  # nosec B101  # filled by TranslationConfig.__post_init__
    multiple = 2 ** config.depth
    for name in ("patch_size", "tile_size"):
        value = getattr(config, name)
        if value % multiple:
            raise InputError(f"{name} {value} must be a multiple of {multiple} for a U-Net of depth {config.depth}")
    if config.epochs < 1 or config.patches_per_epoch < 1 or config.batch_size < 1:
        raise InputError("epochs, patches per epoch and batch size must all be at least 1")
    if config.lambda_class is not None and config.lambda_class < 0:
        raise InputError(f"the weight of the class loss must be 0 or more, got {config.lambda_class}")
    if config.head == "classes" and not config.legend and not 2 <= config.palette_size <= MAX_PALETTE:
        raise InputError(f"the palette fitted to the maps needs 2 to {MAX_PALETTE} colours, got {config.palette_size}")
    if config.ground_resolution is not None and not 0 < config.ground_resolution <= 1e6:
        raise InputError(f"the ground resolution is the size of a pixel in metres (more than 0), got "
                         f"{config.ground_resolution}")


def _legend(path: str | None) -> dict[str, list[int]]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
        legend = {str(label): [int(v) for v in color] for label, color in data.items()}
        if not all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in legend.values()):
            raise ValueError("colours must be [r, g, b] in 0..255")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"cannot read the legend {path} ({exc}); give the JSON written by "
                         f"satgen:render_map_target's OUTPUT_LEGEND") from None
    return legend


def _predict_uint8(generator, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        y = generator(x).float().cpu().numpy()
    return np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)


def evaluate_generator(generator, tiles, device, legend: dict[str, list[int]], batch: int = 4) -> dict[str, float]:
    """Metrics of the generator (eval mode) on held-out tiles, as in `make evaluate`."""
    generator.eval()
    preds: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    valids: list[np.ndarray] = []
    for i in range(0, len(tiles), batch):
        chunk = tiles[i:i + batch]
        x = torch.from_numpy(np.stack([t["x"] for t in chunk])).to(device)
        preds.extend(_predict_uint8(generator, x))
        targets.extend(np.clip(np.rint((np.stack([t["y"] for t in chunk]) + 1) * 127.5), 0, 255).astype(np.uint8))
        valids.extend(t["valid"] for t in chunk)
    pred, target, valid = (np.concatenate(a, axis=-1) for a in (preds, targets, valids))
    out = {
        "val_l1": float(np.abs(pred.astype(np.float32) - target)[:, valid].mean() / 127.5),
        "val_acc_delta5": metrics.acc_delta(pred, target, 5, valid),
        "val_acc_delta10": metrics.acc_delta(pred, target, 10, valid),
        "val_psnr_db": metrics.psnr(pred, target, valid=valid),
    }
    if legend:
        out["val_miou"] = metrics.miou(pred, target, list(legend.values()), valid)[0]
    return out


def prepare_data(config: TranslationConfig) -> tuple[PairSet, dict[str, list[int]]]:
    """(pairs with their split, legend) for a configuration: training and evaluation both call
    this, so evaluation scores exactly the blocks or images training held out.

    One input raster with one target map is split into blocks; a folder, a glob pattern
    or side-by-side images give many pairs, split by whole images or folders."""
    # filled by TranslationConfig.__post_init__
    assert config.block_size is not None and config.min_valid is not None  # nosec B101  # type narrowing
    legend = _legend(config.legend)
    if config.unlabelled_background and "background" not in legend:
        raise InputError("unlabelled background needs the map's legend (LEGEND / --legend) to know its colour")
    if many_pairs(config):
        pairs = load_pairs(config.input, config.target, side_by_side=config.side_by_side, bands=config.bands,
                           val_fraction=config.val_fraction, seed=config.seed, holdout=config.holdout)
        for pair in pairs.pairs:
            _leave_out_background(pair, legend, config)
    else:
        if not config.target:
            raise InputError("give the target map (--target / TARGET) for the input raster")
        pair = load_pair(config.input, config.target, bands=config.bands, patch=config.patch_size)
        _leave_out_background(pair, legend, config)
        split = BlockSplit(pair.height, pair.width, config.block_size, config.val_fraction, config.seed,
                           valid=pair.valid, min_block_valid=min(0.25, config.min_valid / 2))
        pairs = PairSet.of_blocks(pair, split, Path(config.input).name)
    if config.head == "classes" and not legend:  # maps without a legend: their own flat colours, fitted
        legend = fit_palette(pairs, config.palette_size, seed=config.seed)
    return pairs, legend


def many_pairs(config: TranslationConfig) -> bool:
    """Whether the input names many pairs (a folder, a glob pattern, side-by-side images)."""
    return config.side_by_side or any(ch in config.input for ch in "*?[") or Path(config.input).is_dir()


def _leave_out_background(pair, legend: dict[str, list[int]], config: TranslationConfig) -> None:
    if config.unlabelled_background:
        pair.valid &= ~(pair.y == np.array(legend["background"], np.uint8)[:, None, None]).all(axis=0)


def config_from_card(card: ModelCard, **overrides) -> TranslationConfig:
    """The training configuration a translation model card records."""
    return from_card(TranslationConfig, card, **overrides)


def train_translation(config: TranslationConfig, feedback: Feedback | None = None) -> Path:
    """Train, checkpointing every epoch; returns the path of the model file."""
    feedback = feedback or Feedback()
    _check(config)
    report, ckpt_path, run = start(config, [config.input, config.target, config.legend])
    np.random.seed(config.seed)
    task = Pix2PixTask(config, run)
    return train(task, config, run, report, ckpt_path, _NOT_TRAINING, feedback)


class Pix2PixTask(Pix2PixSteps):
    """Pix2Pix on an aligned pair: U-Net generator, conditional PatchGAN, adversarial + lambda * L1."""

    generator: UNet

    def __init__(self, config: TranslationConfig, run: Run):
        # filled by TranslationConfig.__post_init__
        assert config.depth is not None and config.tile_size is not None  # nosec B101  # type narrowing
        assert config.min_valid is not None  # nosec B101  # type narrowing
        self.config, self.run = config, run
        self.pairs, self.legend = prepare_data(config)
        pair = self.pairs.pairs[0]  # every pair has the same bands
        scaling = fit_input_scaling(self.pairs)
        self.dataset = PairPatches(self.pairs, None, scaling, config.patch_size, config.patches_per_epoch,
                                   seed=config.seed, min_valid=config.min_valid)
        self.tiles = val_tiles(self.pairs, None, config.patch_size, scaling, min_valid=min(0.5, config.min_valid / 2))
        if not self.tiles:
            where = "block" if self.pairs.block_split is not None else "image"
            raise InputError(f"no held-out {where} is large enough for {config.patch_size} px patches; use a "
                             f"smaller patch size or a larger raster")
        in_ch = pair.x.shape[0]
        self.scored = config.head == "classes"
        # a generator of class scores draws every colour of the map, the background too unless it marks
        # unmapped land; the class loss on colours reads the named classes only
        classes = [colour for name, colour in self.legend.items()
                   if name != "background" or (self.scored and not config.unlabelled_background)]
        if (config.lambda_class or self.scored) and len(classes) < 2:
            what = "a generator of class scores (--head classes)" if self.scored else "the class loss"
            raise InputError(f"{what} needs the map's classes: give the legend of its colours (--legend, as "
                             f"satgen:render_map_target writes it), or a class raster with a colour table")
        self.colours = torch.tensor(classes, dtype=torch.float32).reshape(-1, 3) / 127.5 - 1
        g_params: dict[str, Any] = dict(in_channels=in_ch, out_channels=3, ngf=config.ngf, depth=config.depth,
                                        upsample=config.upsample)
        if self.scored:
            g_params["classes"] = len(classes)
        generator = UNet(**g_params)
        if self.scored:
            generator.palette.copy_(self.colours)
        self.colours = self.colours.to(run.device)
        self.generator = generator
        run.prepare(generator)
        self.discriminator = run.prepare(PatchGAN(in_ch + 3, ndf=config.ndf or config.ngf))
        self.g, self.d = run.wrap(self.generator), run.wrap(self.discriminator)
        self._parts = pix2pix_parts(self.generator, self.discriminator, config)
        self.card = ModelCard(
            task="translate", architecture="unet", params=g_params,
            inputs=Bands(names=pair.band_names, low=list(scaling.low), high=list(scaling.high),
                         dtype=pair.dtype, clip=3.0),
            outputs=Bands(names=["red", "green", "blue"], low=[0.0] * 3, high=[255.0] * 3, dtype="uint8"),
            tile_size=config.tile_size, overlap=config.overlap, scale=1,
            resolution_m=config.ground_resolution or ground_resolution(pair.crs, pair.transform, pair.height),
            classes=[k for k in self.legend if k != "background"], legend=self.legend, name=config.name,
            description=("Pix2Pix U-Net generator" if config.adversarial else "U-Net trained with L1 only")
            + f" (ngf {config.ngf}, depth {config.depth}) translating {len(pair.band_names)}-band imagery to an "
              f"RGB map" + ((f" in {len(classes)} flat colours fitted to its training maps" if not config.legend
                             else f" in the colours of its {len(classes)} classes") if self.scored else ""),
            training={"data": config.data_description or _data_description(config, self.pairs),
                      "split": self.pairs.split,
                      "attribution": config.attribution, "licence": config.licence,
                      "config": fingerprint_of(config, _NOT_TRAINING + RUN_FIELDS), **config.extra},
        )
        n = config.val_tiles_per_epoch
        self.epoch_tiles = self.tiles[::max(1, len(self.tiles) // n)][:n]
        self.vis_idx = list(range(0, len(self.epoch_tiles), max(1, len(self.epoch_tiles) // 4)))[:4]
        self.show = display_bands(pair.band_names)
        self.title = self.card.name
        self.steps = run.steps(config.patches_per_epoch, config.batch_size)

    def step(self, batch) -> tuple[dict[str, float], int]:
        config, run = self.config, self.run
        opt_g, opt_d = self._parts["opt_g"], self._parts["opt_d"]
        x, y, valid = run.to_device(batch["x"]), run.to_device(batch["y"]), batch["valid"].to(run.device)
        with run.precision.autocast():
            if self.scored:  # class scores, drawn as the palette weighted by their probabilities
                logits = self.g(x, logits=True)
                fake = self.generator.render(logits)
            else:
                fake = self.g(x)
        if config.adversarial:
            # discriminator: real pairs -> 1, generated pairs -> 0
            self.discriminator.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            # where the target is unlabelled the discriminator sees the real target in both
            # pairs, so it judges (and the generator learns from) labelled pixels only
            fake_d = torch.where(valid.unsqueeze(1), fake, y)
            with run.precision.autocast():
                loss_d = 0.5 * (gan_loss(self.d(x, fake_d.detach()), False, config.gan_mode)
                                + gan_loss(self.d(x, y), True, config.gan_mode))
            run.precision.backward_step(loss_d, opt_d)
            # the generator's step judges through the discriminator itself, which learns nothing from it
            self.discriminator.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        with run.precision.autocast():
            loss_l1 = masked_l1(fake.float(), y, valid)
            loss_g = config.lambda_l1 * loss_l1
            if config.lambda_class:
                if self.scored:
                    loss_class = masked_cross_entropy(logits.float(), legend_labels(y, self.colours), valid)
                else:
                    loss_class = colour_class_loss(fake.float(), y, self.colours, valid)
                loss_g = loss_g + config.lambda_class * loss_class
            if config.adversarial:
                loss_gan = gan_loss(self.discriminator(x, fake_d), True, config.gan_mode)
                loss_g = loss_g + loss_gan
        run.precision.backward_step(loss_g, opt_g)
        losses = {"loss_g_l1": loss_l1.item()}
        if config.lambda_class:
            losses["loss_g_class"] = loss_class.item()
        if config.adversarial:
            losses.update(loss_g_gan=loss_gan.item(), loss_d=loss_d.item())
        return losses, x.shape[0]

    def validate(self) -> dict[str, Any]:
        return dict(evaluate_generator(self.generator, self.epoch_tiles, self.run.device, self.legend))

    def report(self, folder: Path, history: list[dict]) -> None:
        _write_report(folder, history, self.generator, self.epoch_tiles, self.vis_idx, self.show, self.run.device,
                      self.title)

    def finish(self, history: list[dict]) -> Path:
        config = self.config
        card = self.card
        card.metrics = dict[str, Any](evaluate_generator(self.generator, self.tiles, self.run.device, self.legend))
        card.metrics["validation"] = f"{self.pairs.split} ({len(self.tiles)} tiles of {config.patch_size} px)"
        self.generator.eval()
        path = save_model(config.output_model, self.generator.cpu(), card, half=config.half_precision_file)
        write_metrics(Path(config.report_dir), {"final": card.metrics, "history": history}, card.name)
        return path


def _data_description(config: TranslationConfig, pairs: PairSet) -> str:
    if pairs.block_split is not None:
        return f"{Path(config.input).name} -> {Path(config.target).name}"
    pixels = sum(p.height * p.width for p in pairs.pairs)
    return (f"{len(pairs.pairs)} {'side-by-side images' if config.side_by_side else 'image/map pairs'} "
            f"({pixels / 1e6:.1f} Mpx) from {config.input}" + (f" -> {config.target}" if config.target else ""))


def _write_report(report: Path, history, generator, tiles, vis_idx, show, device, title) -> None:
    write_metrics(report, {"history": history}, title)
    plot_history(history, report / "loss_curves.png", title)
    generator.eval()
    rows = []
    for i in vis_idx:
        x = torch.from_numpy(tiles[i]["x"][None]).to(device)
        pred = _predict_uint8(generator, x)[0].transpose(1, 2, 0)
        rows.append([to_display(tiles[i]["x"][show]), pred, to_display(tiles[i]["y"])])
    save_grid(rows, report / "samples.png")
