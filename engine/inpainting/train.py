"""Cloud-inpainting training on clear imagery.

One `train_inpainting(config)` call does the whole run: clear rasters (any
band count and dtype) split into spatial blocks, a percentile stretch fitted
on the training blocks, cloud masks laid over random patches (fractal shapes
plus windows of real masks when given), a U-Net that takes the masked image
plus the mask as one more channel, and a conditional PatchGAN that judges the
composite (clear pixels kept, cloudy pixels generated). Losses: L1 inside the
mask, L1 outside it (lighter: those pixels are replaced by the input anyway)
and the adversarial loss. Validation on fixed held-out samples every epoch,
a checkpoint every epoch (re-running the same command resumes) and a report
(loss curves, cloudy | filled | truth grid, metrics JSON) next to the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bands import display_bands
from ..card import Bands, ModelCard
from ..errors import InputError
from ..modelfile import save_model
from ..models.inpaint_unet import InpaintUNet, model_input
from ..models.patchgan import PatchGAN
from ..progress import Feedback
from ..training.checkpoint import fingerprint_of, pix2pix_parts
from ..training.loop import RUN_FIELDS, Pix2PixSteps, Run, start, train
from ..training.objectives import gan_loss, masked_l1
from ..training.report import plot_history, save_grid, to_display, write_metrics
from .config import FILLS, InpaintingConfig
from .data import InpaintPatches, RealMasks, fit_scaling, load_clear, validation_set

_NOT_TRAINING = ("epochs", "device", "report_dir", "output_model", "half_precision_file", "name",
                 "attribution", "licence", "data_description", "extra")
CLIP = 3.0


def _check(config: InpaintingConfig) -> None:
    assert config.depth is not None  # nosec B101  # filled by InpaintingConfig.__post_init__
    multiple = 2 ** config.depth
    for name in ("patch_size", "tile_size"):
        value = getattr(config, name)
        if value % multiple:
            raise InputError(f"{name} {value} must be a multiple of {multiple} for a U-Net of depth {config.depth}")
    if config.epochs < 1 or config.patches_per_epoch < 1 or config.batch_size < 1:
        raise InputError("epochs, patches per epoch and batch size must all be at least 1")
    if config.fill not in FILLS:
        raise InputError(f"fill {config.fill!r} is not one of {', '.join(FILLS)}")
    if not 0 <= config.coverage_min < config.coverage_max <= 1:
        raise InputError(f"cloud coverage range {config.coverage_min}..{config.coverage_max} must lie in 0..1 "
                         f"with min < max")


def composite(x: torch.Tensor, fake: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    """Input outside the mask, generated inside it."""
    return torch.where(cloud.unsqueeze(1), fake, x)


def hole_scores(pred: np.ndarray, truth: np.ndarray, cloud: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """MAE and PSNR inside the mask, in model units mapped to [0, 1] (the training 2-98 % range)."""
    inside = cloud & valid
    if not inside.any():
        return {}
    diff = (pred - truth)[:, inside] / 2.0
    mse = float(np.mean(diff ** 2))
    return {"val_mae_mask": float(np.abs(diff).mean()), "val_psnr_mask_db": 10 * np.log10(1.0 / max(mse, 1e-12))}


def evaluate_inpainter(generator, items, device, batch: int = 8) -> dict[str, float]:
    generator.eval()
    preds: list[np.ndarray] = []
    with torch.inference_mode():
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            x = torch.from_numpy(np.stack([it["x"] for it in chunk])).to(device)
            cloud = torch.from_numpy(np.stack([it["cloud"] for it in chunk])).to(device)
            preds.extend(composite(x, generator(model_input(x, cloud)), cloud).float().cpu().numpy())
    pred = np.concatenate(preds, axis=-1)
    truth = np.concatenate([it["x"] for it in items], axis=-1)
    cloud = np.concatenate([it["cloud"] for it in items], axis=-1)
    valid = np.concatenate([it["valid"] for it in items], axis=-1)
    return hole_scores(pred, truth, cloud, valid)


def train_inpainting(config: InpaintingConfig, feedback: Feedback | None = None) -> Path:
    """Train, checkpointing every epoch; returns the path of the model file."""
    feedback = feedback or Feedback()
    _check(config)
    report, ckpt_path, run = start(config, [*config.inputs, *config.real_masks, *config.exclude_masks])
    return train(InpaintTask(config, run), config, run, report, ckpt_path, _NOT_TRAINING, feedback)


class InpaintTask(Pix2PixSteps):
    """A U-Net filling masked pixels of clear patches, judged by a conditional PatchGAN on the composite."""

    def __init__(self, config: InpaintingConfig, run: Run):
        # filled by InpaintingConfig.__post_init__
        assert config.depth is not None and config.tile_size is not None  # nosec B101  # type narrowing
        assert config.block_size is not None  # nosec B101  # type narrowing
        self.config, self.run = config, run
        scenes = load_clear(config.inputs, config.bands, config.block_size, config.val_fraction, config.seed,
                            config.patch_size, config.exclude_masks)
        scaling = fit_scaling(scenes, seed=config.seed)
        real = RealMasks(config.real_masks, config.patch_size) if config.real_masks else None
        coverage = (config.coverage_min, config.coverage_max)
        self.dataset = InpaintPatches(scenes, scaling, config.patch_size, config.patches_per_epoch, coverage, real,
                                      config.real_share, seed=config.seed, jitter=config.jitter, clip=CLIP)
        self.items = validation_set(scenes, scaling, config.patch_size, coverage, real, clip=CLIP)
        if not self.items:
            raise InputError("no held-out block has enough valid pixels for validation; use a smaller block size")
        bands = scenes[0].band_names
        n = len(bands)
        g_params: dict[str, Any] = dict(in_channels=n + 1, out_channels=n, ngf=config.ngf, depth=config.depth,
                                        fill=config.fill)
        self.generator = run.prepare(InpaintUNet(**g_params))
        self.discriminator = run.prepare(PatchGAN(2 * n + 1, ndf=config.ndf))
        self.g, self.d = run.wrap(self.generator), run.wrap(self.discriminator)
        self._parts = pix2pix_parts(self.generator, self.discriminator, config)
        self.card = ModelCard(
            task="inpaint", architecture="inpaint_unet", params=g_params,
            inputs=Bands(names=bands, low=list(scaling.low), high=list(scaling.high), dtype=scenes[0].dtype,
                         clip=CLIP),
            outputs=Bands(names=bands, low=list(scaling.low), high=list(scaling.high), dtype=scenes[0].dtype),
            tile_size=config.tile_size, overlap=config.overlap, scale=1, name=config.name,
            description=(f"{config.fill.replace('_', '-')} fill + U-Net correction (ngf {config.ngf}, "
                         f"depth {config.depth}) for cloud-masked pixels of {n}-band {scenes[0].dtype} imagery; "
                         f"input: bands with cloudy pixels zeroed + the mask"
                         + (", trained with a conditional PatchGAN" if config.adversarial else ", L1 only")),
            training={"data": config.data_description or ", ".join(Path(p).name for p in config.inputs),
                      "attribution": config.attribution, "licence": config.licence,
                      "config": fingerprint_of(config, _NOT_TRAINING + RUN_FIELDS), **config.extra},
        )
        self.title = self.card.name
        self.steps = run.steps(config.patches_per_epoch, config.batch_size)
        self.show = display_bands(bands)
        self.vis = list(range(0, len(self.items), max(1, len(self.items) // 4)))[:4]

    def step(self, batch) -> tuple[dict[str, float], int]:
        config, run = self.config, self.run
        opt_g, opt_d = self._parts["opt_g"], self._parts["opt_d"]
        x, cloud, valid = run.to_device(batch["x"]), batch["cloud"].to(run.device), batch["valid"].to(run.device)
        condition = run.to_device(model_input(x, cloud))
        with run.precision.autocast():
            fake = self.g(condition)
        comp = composite(x, fake.float(), cloud)
        if config.adversarial:
            self.discriminator.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            with run.precision.autocast():
                loss_d = 0.5 * (gan_loss(self.d(condition, comp.detach()), False, config.gan_mode)
                                + gan_loss(self.d(condition, x), True, config.gan_mode))
            run.precision.backward_step(loss_d, opt_d)
            self.discriminator.requires_grad_(False)  # the generator's step learns through it, it learns nothing
        opt_g.zero_grad(set_to_none=True)
        with run.precision.autocast():
            loss_hole = masked_l1(fake.float(), x, cloud & valid)
            loss_valid = masked_l1(fake.float(), x, ~cloud & valid)
            loss_g = config.lambda_hole * loss_hole + config.lambda_valid * loss_valid
            if config.adversarial:
                loss_gan = gan_loss(self.discriminator(condition, comp), True, config.gan_mode)
                loss_g = loss_g + loss_gan
        run.precision.backward_step(loss_g, opt_g)
        losses = {"loss_g_hole": loss_hole.item(), "loss_g_valid": loss_valid.item()}
        if config.adversarial:
            losses.update(loss_g_gan=loss_gan.item(), loss_d=loss_d.item())
        return losses, x.shape[0]

    def validate(self) -> dict[str, Any]:
        return dict(evaluate_inpainter(self.generator, self.items, self.run.device))

    def report(self, folder: Path, history: list[dict]) -> None:
        _write_report(folder, history, self.generator, self.items, self.vis, self.show, self.run.device, self.title)

    def finish(self, history: list[dict]) -> Path:
        config, card = self.config, self.card
        card.metrics = dict[str, Any](evaluate_inpainter(self.generator, self.items, self.run.device))
        card.metrics["validation"] = (f"{len(self.items)} held-out patches of {config.patch_size} px, cloud cover "
                                      f"{config.coverage_min:.0%}-{config.coverage_max:.0%}; MAE/PSNR inside the "
                                      f"mask on the training 2-98 % range scaled to 0..1")
        self.generator.eval()
        path = save_model(config.output_model, self.generator.cpu(), card, half=config.half_precision_file)
        write_metrics(Path(config.report_dir), {"final": card.metrics, "history": history}, card.name)
        return path


def _write_report(report: Path, history, generator, items, vis, show, device, title) -> None:
    """metrics.json, loss curves and a cloudy | mask | filled | truth grid."""
    write_metrics(report, {"history": history}, title)
    plot_history(history, report / "loss_curves.png", title)
    generator.eval()
    rows = []
    with torch.inference_mode():
        for i in vis:
            x = torch.from_numpy(items[i]["x"][None]).to(device)
            cloud = torch.from_numpy(items[i]["cloud"][None]).to(device)
            filled = composite(x, generator(model_input(x, cloud)), cloud)[0].cpu().numpy()
            cloudy = items[i]["x"].copy()
            cloudy[:, items[i]["cloud"]] = 1.0  # white, as clouds look
            mask = np.repeat(items[i]["cloud"][None].astype(np.float32) * 2 - 1, 3, axis=0)
            rows.append([to_display(cloudy[show]), to_display(mask), to_display(filled[show]),
                         to_display(items[i]["x"][show])])
    save_grid(rows, report / "samples.png")
