"""Training of class-conditional synthesis models: `cdcgan` (the baseline) and
`diffusion` (class-conditional EDM U-Net with label dropout for guidance).

One `train_synthesis(config)` call: labelled patches (class folders, or raster +
class raster / polygons with a block split), per-band stretch fitted on the
training patches, class-balanced batches with the 8 flips/quarter turns, a
checkpoint every epoch (the same command resumes), a report next to the
checkpoint (loss_curves.png, samples.png with a row per class, metrics.json)
and the model file (task "synthesize").
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..card import Bands, ModelCard
from ..errors import InputError
from ..modelfile import LoadedModel, save_model
from ..models.cdcgan import CDCGANDiscriminator, CDCGANGenerator
from ..models.class_unet import ClassUNet
from ..progress import Feedback, training_status
from ..training.checkpoint import begin_run, load_checkpoint, save_checkpoint
from ..training.objectives import check_losses
from ..training.options import from_card
from ..training.report import plot_history, save_grid, write_metrics
from .config import ARCHS, SynthesisConfig
from .datasets import (
    PatchSet,
    augment,
    balanced_indices,
    describe,
    load_class_folders,
    load_raster_patches,
    patches_to_model,
)
from .diffusion import edm_loss
from .synthesize import generate, to_rgb8

_NOT_TRAINING = ("epochs", "device", "report_dir", "output_model", "half_precision_file", "name", "attribution",
                 "licence", "data_description", "extra", "guidance", "guidance_samples", "steps")


def prepare_patches(config: SynthesisConfig, warn=print) -> PatchSet:
    """The labelled patches a configuration names (training and evaluation both call this)."""
    if config.dataset and (config.input or config.labels):
        raise InputError("give either a class-folder data set or a raster with labels, not both")
    if config.dataset:
        return load_class_folders(config.dataset, config.patch_size, config.val_fraction, config.seed,
                                  config.max_per_class, warn=warn)
    if not (config.input and config.labels):
        raise InputError("no training data: give a class-folder data set (DATASET / --dataset), or a raster "
                         "(INPUT / --input) with a class raster or polygon layer (LABELS / --labels)")
    return load_raster_patches(config.input, config.labels, config.field, config.patch_size, config.threshold,
                               config.block_size, config.val_fraction, config.seed, config.bands,
                               config.class_names, stride=config.stride, min_patches=config.min_patches, warn=warn)


def config_from_card(card: ModelCard, **overrides) -> SynthesisConfig:
    return from_card(SynthesisConfig, card, **overrides)


def _check(config: SynthesisConfig) -> None:
    if config.arch not in ARCHS:
        raise InputError(f"unknown architecture {config.arch!r}; use {' or '.join(ARCHS)}")
    if config.epochs < 1 or config.batch_size < 1:
        raise InputError("epochs and batch size must be at least 1")
    if config.guidance is not None and not (math.isfinite(config.guidance) and config.guidance >= 0):
        raise InputError(f"guidance must be a finite number of 0 or more (1: plain conditional sampling; none: "
                         f"chosen after training), got {config.guidance}")
    if config.guidance_samples < 2:
        raise InputError(f"guidance_samples must be at least 2, got {config.guidance_samples}")
    p = config.patch_size
    if config.arch == "cdcgan" and (p & (p - 1) or not 16 <= p <= 128):
        raise InputError(f"cdcgan needs a power-of-two patch size from 16 to 128, got {p}")
    multiple = config.patchify * 2 ** (config.depth - 1)
    if config.arch == "diffusion" and (p % multiple or not 16 <= p <= 256):
        raise InputError(f"diffusion patch size must be 16-256 and a multiple of {multiple}, got {p}")


def _card(config, patches, scaling, architecture, params, fingerprint) -> ModelCard:
    train, val = patches.counts("train"), patches.counts("val")
    is_gan = config.arch == "cdcgan"
    return ModelCard(
        task="synthesize", architecture=architecture, params=params,
        inputs=Bands(names=[], low=[], high=[]),
        outputs=Bands(names=patches.band_names, low=list(scaling.low), high=list(scaling.high),
                      dtype=patches.dtype),
        tile_size=config.patch_size, overlap=0, classes=list(patches.classes),
        name=config.name or f"class-conditional {config.arch} ({len(patches.classes)} classes)",
        description=("Conditional DCGAN generator (baseline recipe)" if is_gan else
                     "Class-conditional diffusion U-Net (EDM, classifier-free guidance, Heun sampler)")
        + f" for {config.patch_size} px patches of {len(patches.band_names)} band(s)",
        training={"data": config.data_description or describe(patches), "attribution": config.attribution,
                  "licence": config.licence, "config": fingerprint,
                  "class_counts": {"train": train, "held_out": val},
                  "sampler": {} if is_gan else {"name": "edm-heun", "guidance": config.guidance,
                                                "steps": config.steps},
                  **config.extra},
    )


def train_synthesis(config: SynthesisConfig, feedback: Feedback | None = None) -> Path:
    """Train, checkpointing every epoch; returns the path of the model file."""
    feedback = feedback or Feedback()
    _check(config)
    report, ckpt_path, device = begin_run(config, [config.dataset, config.input, config.labels])

    patches = prepare_patches(config, warn=feedback.info)
    feedback.info(describe(patches))
    scaling = patches.fit_scaling()
    to_model = lambda x: patches_to_model(scaling, x)  # noqa: E731
    x_train, y_train = patches.part("train")
    x_val, y_val = patches.part("val")
    data = torch.from_numpy(to_model(x_train)).float()
    labels = torch.from_numpy(y_train)
    k, ch = len(patches.classes), len(patches.band_names)
    is_gan = config.arch == "cdcgan"
    lr = config.lr or (2e-4 if is_gan else 5e-4)
    beta1 = config.beta1 if config.beta1 is not None else (0.5 if is_gan else 0.9)
    params: dict[str, Any]
    net: CDCGANGenerator | ClassUNet
    if is_gan:
        params = dict(out_channels=ch, num_classes=k, patch_size=config.patch_size, nz=config.nz, ngf=config.ngf)
        net = CDCGANGenerator(**params).to(device)
        disc = CDCGANDiscriminator(ch, k, config.patch_size, config.ndf).to(device)
        opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(beta1, 0.999))
        architecture = "cdcgan"
    else:
        params = dict(in_channels=ch, num_classes=k, base=config.base, depth=config.depth, max_mult=config.max_mult,
                      blocks=config.blocks, dropout=config.dropout, patchify=config.patchify)
        net = ClassUNet(**params).to(device)
        ema = ClassUNet(**params).to(device)
        ema.load_state_dict(net.state_dict())
        ema.requires_grad_(False)
        architecture = "class_unet"
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(beta1, 0.999))

    fingerprint = json.loads(json.dumps({k_: v for k_, v in asdict(config).items() if k_ not in _NOT_TRAINING}))
    card = _card(config, patches, scaling, architecture, params, fingerprint)
    history: list[dict[str, float]] = []
    start_epoch = 0
    state = load_checkpoint(ckpt_path)
    if state is not None:
        if state["config"] != fingerprint:
            raise InputError(f"{ckpt_path} belongs to a run with other settings; delete it to start afresh "
                             f"or use another report folder")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        if is_gan:
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
        else:
            ema.load_state_dict(state["ema"])
        history = json.loads(state["history"])
        start_epoch = int(state["epoch"])
        if "rng" in state:  # the noise of the diffusion loss continues where it stopped
            torch.set_rng_state(state["rng"])
        feedback.info(f"resuming from {ckpt_path} after epoch {start_epoch}")

    per_epoch = config.patches_per_epoch or len(labels)
    steps = max(1, per_epoch // config.batch_size)
    val_data = torch.from_numpy(to_model(x_val)).float() if len(y_val) else None
    started = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        g = torch.Generator().manual_seed(config.seed * 100003 + epoch)  # resumable: depends on the epoch only
        idx = balanced_indices(y_train, steps * config.batch_size, g)
        net.train()
        sums: dict[str, float] = {}
        epoch_started = time.monotonic()
        for step in range(steps):
            feedback.check_cancelled()
            b = idx[step * config.batch_size:(step + 1) * config.batch_size]
            x = augment(data[b], g).to(device)
            y = labels[b].to(device)
            if is_gan:
                losses = _gan_step(net, disc, opt, opt_d, x, y, config.nz, g, device)
            else:
                loss = edm_loss(net, x, y, config.label_dropout, generator=None, wide_noise=config.wide_noise)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for pe, pn in zip(ema.parameters(), net.parameters(), strict=True):
                        pe.lerp_(pn, 1 - config.ema)
                losses = {"loss_denoise": loss.item()}
            for key, v in losses.items():
                sums[key] = sums.get(key, 0.0) + v
            feedback.progress(((epoch - start_epoch) * steps + step + 1) / ((config.epochs - start_epoch) * steps))
            feedback.status(training_status(epoch, config.epochs, step, steps, history))
        row = {"epoch": epoch + 1, **{key: v / steps for key, v in sums.items()},
               "images_per_s": steps * config.batch_size / (time.monotonic() - epoch_started),
               "seconds": time.monotonic() - started}
        if not is_gan and val_data is not None:
            row["val_denoise"] = _val_denoise(ema, val_data, torch.from_numpy(y_val), device)
        check_losses(row, epoch + 1, epoch)
        history.append(row)
        state = {"config": fingerprint, "net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                 "history": json.dumps(history), "rng": torch.get_rng_state()}
        if is_gan:
            state.update(disc=disc.state_dict(), opt_d=opt_d.state_dict())
        else:
            state["ema"] = ema.state_dict()
        save_checkpoint(ckpt_path, state)
        feedback.info(f"epoch {epoch + 1}/{config.epochs}: " + ", ".join(
            f"{key} {v:.4f}" for key, v in row.items() if key.startswith(("loss_", "val_"))))
        write_metrics(report, {"history": history}, card.name)
        plot_history(history, report / "loss_curves.png", card.name)

    final = net if is_gan else ema
    final.eval()
    loaded = LoadedModel(module=final, card=card, path=Path(config.output_model))
    if not is_gan and config.guidance is None:
        from .guidance import choose_guidance

        feedback.info("choosing the default guidance on the training patches")
        choice = choose_guidance(loaded, data.numpy(), y_train, n=config.guidance_samples, feedback=feedback)
        card.training["sampler"].update(guidance=choice["guidance"], guidance_selection=choice)
        feedback.info(f"default guidance {choice['guidance']:g}")
    _sample_grid(loaded, patches, to_model, report / "samples.png", device)
    path = save_model(config.output_model, final, card, half=config.half_precision_file)
    write_metrics(report, {"history": history, "classes": patches.classes,
                           "class_counts": card.training["class_counts"], "sampler": card.training["sampler"]},
                  card.name)
    return path


def _gan_step(gen, disc, opt_g, opt_d, real, labels, nz, g, device) -> dict[str, float]:
    """One step of the DCGAN recipe: D on real and fake (BCE), then G (non-saturating BCE)."""
    n = real.shape[0]
    z = torch.randn((n, nz), generator=g).to(device)
    fake = gen(z, labels)
    ones, zeros = torch.ones(n, device=device), torch.zeros(n, device=device)
    d_loss = F.binary_cross_entropy_with_logits(disc(real, labels), ones) + \
        F.binary_cross_entropy_with_logits(disc(fake.detach(), labels), zeros)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    g_loss = F.binary_cross_entropy_with_logits(disc(fake, labels), ones)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return {"loss_d": d_loss.item(), "loss_g": g_loss.item()}


@torch.no_grad()
def _val_denoise(net, x: torch.Tensor, y: torch.Tensor, device, levels=(0.05, 0.2, 0.5, 1.0, 2.0)) -> float:
    """EDM-weighted denoising error on held-out patches at fixed noise levels and noise (comparable across epochs)."""
    net.eval()
    g = torch.Generator().manual_seed(1234)
    total = 0.0
    x = x[:256]
    y = y[:256]
    for s in levels:
        noise = torch.randn(x.shape, generator=g)
        sigma = torch.full((x.shape[0],), s)
        d = net((x + s * noise).to(device), sigma.to(device), y.to(device)).cpu()
        weight = (s ** 2 + net.sigma_data ** 2) / (s * net.sigma_data) ** 2
        total += float(weight * ((d - x) ** 2).mean())
    return total / len(levels)


def _sample_grid(loaded: LoadedModel, patches: PatchSet, to_model, path: Path, device, per_class: int = 8) -> None:
    """samples.png: a row per class, a real training patch then `per_class` samples (seed 0)."""
    x_train, y_train = patches.part("train")
    rows = []
    for ci in range(len(patches.classes)):
        real = to_model(x_train[y_train == ci][:1])
        fake = generate(loaded, ci, per_class, seed=0)
        imgs = to_rgb8(loaded.card, np.concatenate([real, fake]))
        rows.append([im.transpose(1, 2, 0) for im in imgs])
    scale = max(1, 64 // patches.patch_size)
    rows = [[im.repeat(scale, 0).repeat(scale, 1) for im in row] for row in rows]
    save_grid(rows, path)
