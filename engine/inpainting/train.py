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

import time
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
from ..progress import Feedback, training_status
from ..training.checkpoint import begin_run, checkpoint, fingerprint_of, pix2pix_parts, resume
from ..training.objectives import check_losses, gan_loss, masked_l1
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
    # filled by InpaintingConfig.__post_init__
    assert config.depth is not None and config.tile_size is not None  # nosec B101  # type narrowing
    assert config.block_size is not None  # nosec B101  # type narrowing
    _check(config)
    report, ckpt_path, device = begin_run(config, [*config.inputs, *config.real_masks, *config.exclude_masks])

    scenes = load_clear(config.inputs, config.bands, config.block_size, config.val_fraction, config.seed,
                        config.patch_size, config.exclude_masks)
    scaling = fit_scaling(scenes, seed=config.seed)
    real = RealMasks(config.real_masks, config.patch_size) if config.real_masks else None
    coverage = (config.coverage_min, config.coverage_max)
    dataset = InpaintPatches(scenes, scaling, config.patch_size, config.patches_per_epoch, coverage, real,
                             config.real_share, seed=config.seed, jitter=config.jitter, clip=CLIP)
    items = validation_set(scenes, scaling, config.patch_size, coverage, real, clip=CLIP)
    if not items:
        raise InputError("no held-out block has enough valid pixels for validation; use a smaller block size")
    bands = scenes[0].band_names
    n = len(bands)
    g_params: dict[str, Any] = dict(in_channels=n + 1, out_channels=n, ngf=config.ngf, depth=config.depth,
                                    fill=config.fill)
    generator = InpaintUNet(**g_params).to(device)
    discriminator = PatchGAN(2 * n + 1, ndf=config.ndf).to(device)
    parts = pix2pix_parts(generator, discriminator, config)
    opt_g, opt_d, sched_g, sched_d = (parts[k] for k in ("opt_g", "opt_d", "sched_g", "sched_d"))
    fingerprint = fingerprint_of(config, _NOT_TRAINING)
    start_epoch, history = resume(ckpt_path, fingerprint, parts, feedback)

    card = ModelCard(
        task="inpaint", architecture="inpaint_unet", params=g_params,
        inputs=Bands(names=bands, low=list(scaling.low), high=list(scaling.high), dtype=scenes[0].dtype, clip=CLIP),
        outputs=Bands(names=bands, low=list(scaling.low), high=list(scaling.high), dtype=scenes[0].dtype),
        tile_size=config.tile_size, overlap=config.overlap, scale=1, name=config.name,
        description=(f"{config.fill.replace('_', '-')} fill + U-Net correction (ngf {config.ngf}, "
                     f"depth {config.depth}) for cloud-masked pixels of {n}-band {scenes[0].dtype} imagery; "
                     f"input: bands with cloudy pixels zeroed + the mask"
                     + (", trained with a conditional PatchGAN" if config.adversarial else ", L1 only")),
        training={"data": config.data_description or ", ".join(Path(p).name for p in config.inputs),
                  "attribution": config.attribution, "licence": config.licence,
                  "config": fingerprint, **config.extra},
    )

    steps = (config.patches_per_epoch + config.batch_size - 1) // config.batch_size
    total_steps = config.epochs * steps
    show = display_bands(bands)
    vis = list(range(0, len(items), max(1, len(items) // 4)))[:4]
    for epoch in range(start_epoch, config.epochs):
        generator.train()
        discriminator.train()
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=False)
        sums = {"loss_g_hole": 0.0, "loss_g_valid": 0.0, "loss_g_gan": 0.0, "loss_d": 0.0}
        started, images = time.perf_counter(), 0
        for step, batch in enumerate(loader):
            feedback.check_cancelled()
            x, cloud, valid = batch["x"].to(device), batch["cloud"].to(device), batch["valid"].to(device)
            images += x.shape[0]
            condition = model_input(x, cloud)
            fake = generator(condition)
            comp = composite(x, fake, cloud)
            if config.adversarial:
                discriminator.requires_grad_(True)
                opt_d.zero_grad(set_to_none=True)
                loss_d = 0.5 * (gan_loss(discriminator(condition, comp.detach()), False, config.gan_mode)
                                + gan_loss(discriminator(condition, x), True, config.gan_mode))
                loss_d.backward()
                opt_d.step()
                discriminator.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            loss_hole = masked_l1(fake, x, cloud & valid)
            loss_valid = masked_l1(fake, x, ~cloud & valid)
            loss_g = config.lambda_hole * loss_hole + config.lambda_valid * loss_valid
            if config.adversarial:
                loss_gan = gan_loss(discriminator(condition, comp), True, config.gan_mode)
                loss_g = loss_g + loss_gan
                sums["loss_g_gan"] += loss_gan.item()
                sums["loss_d"] += loss_d.item()
            loss_g.backward()
            opt_g.step()
            sums["loss_g_hole"] += loss_hole.item()
            sums["loss_g_valid"] += loss_valid.item()
            feedback.progress((epoch * steps + step + 1) / total_steps)
            feedback.status(training_status(epoch, config.epochs, step, steps, history))
        images_per_s = images / (time.perf_counter() - started)  # the training steps alone
        sched_g.step()
        sched_d.step()

        entry = {"epoch": epoch + 1, "images_per_s": images_per_s,
                 **{k: v / steps for k, v in sums.items()
                    if config.adversarial or k in ("loss_g_hole", "loss_g_valid")},
                 **evaluate_inpainter(generator, items, device), "seconds": time.perf_counter() - started}
        check_losses(entry, epoch + 1, epoch)
        history.append(entry)
        feedback.info(" ".join(f"{k}={v:.4g}" for k, v in entry.items()))
        checkpoint(ckpt_path, fingerprint, parts, epoch + 1, history)
        _write_report(report, history, generator, items, vis, show, device, card.name)

    metrics: dict[str, Any] = evaluate_inpainter(generator, items, device)
    card.metrics = metrics
    card.metrics["validation"] = (f"{len(items)} held-out patches of {config.patch_size} px, cloud cover "
                                  f"{config.coverage_min:.0%}-{config.coverage_max:.0%}; MAE/PSNR inside the mask "
                                  f"on the training 2-98 % range scaled to 0..1")
    generator.eval()
    path = save_model(config.output_model, generator.cpu(), card, half=config.half_precision_file)
    write_metrics(report, {"final": card.metrics, "history": history}, card.name)
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
