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

import math
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
from ..progress import Feedback
from ..training.checkpoint import fingerprint_of
from ..training.loop import RUN_FIELDS, Run, start, train
from ..training.options import from_card
from ..training.report import plot_history, save_grid, write_metrics
from .config import ARCHS, STRETCHES, SynthesisConfig
from .datasets import (
    PatchSet,
    augment,
    balanced_indices,
    describe,
    load_class_folders,
    load_raster_patches,
    load_unlabelled,
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
    if config.unlabelled and config.arch != "diffusion":
        raise InputError("unlabelled images train only the diffusion model (its unconditional branch); the cdcgan "
                         "baseline learns from labelled patches alone")
    if not 0 < config.unlabelled_share < 1:
        raise InputError(f"the share of unlabelled images in a batch must be between 0 and 1, got "
                         f"{config.unlabelled_share}")
    if config.stretch not in STRETCHES:
        raise InputError(f"unknown stretch {config.stretch!r}; use {' or '.join(STRETCHES)}")
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
    report, ckpt_path, run = start(config, [config.dataset, config.input, config.labels, config.unlabelled])
    task = SynthesisTask(config, run, feedback)
    return train(task, config, run, report, ckpt_path, _NOT_TRAINING, feedback)


def ema_decay(target: float, updates: int) -> float:
    """The decay of the weights' moving average after `updates` optimizer steps: `target`, but at most
    (1 + updates) / (10 + updates), so that the average of a short run is not mostly the random weights
    it started from (at 0.999 alone, 2,000 steps still leave 13 % of them in it, and its patches are noise)."""
    return min(target, (1 + updates) / (10 + updates))


class SynthesisTask:
    """Class-balanced batches of labelled patches, augmented by the 8 flips/quarter turns, for the
    cDCGAN baseline (generator + discriminator) or the diffusion U-Net (EDM loss, weights' moving average)."""

    def __init__(self, config: SynthesisConfig, run: Run, feedback: Feedback):
        self.config, self.run, self.feedback = config, run, feedback
        self.patches = patches = prepare_patches(config, warn=feedback.info)
        feedback.info(describe(patches))
        self.scaling = patches.fit_scaling(stretch=config.stretch)
        x_train, self.y_train = patches.part("train")
        x_val, self.y_val = patches.part("val")
        self.data = torch.from_numpy(self.to_model(x_train)).float()
        self.labels = torch.from_numpy(self.y_train)
        self.val_data = torch.from_numpy(self.to_model(x_val)).float() if len(self.y_val) else None
        self.unlabelled = None
        if config.unlabelled:
            x_u = load_unlabelled(config.unlabelled, config.patch_size, len(patches.band_names), warn=feedback.info)
            feedback.info(f"{len(x_u)} unlabelled images for the unconditional model")
            self.unlabelled = torch.from_numpy(self.to_model(x_u)).float()
        k, ch = len(patches.classes), len(patches.band_names)
        self.is_gan = is_gan = config.arch == "cdcgan"
        lr = config.lr or (2e-4 if is_gan else 5e-4)
        beta1 = config.beta1 if config.beta1 is not None else (0.5 if is_gan else 0.9)
        self.params: dict[str, Any]
        if is_gan:
            self.params = dict(out_channels=ch, num_classes=k, patch_size=config.patch_size, nz=config.nz,
                               ngf=config.ngf)
            self.net: torch.nn.Module = run.prepare(CDCGANGenerator(**self.params))
            self.disc = run.prepare(CDCGANDiscriminator(ch, k, config.patch_size, config.ndf))
            self.d = run.wrap(self.disc)
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(beta1, 0.999))
            architecture = "cdcgan"
        else:
            self.params = dict(in_channels=ch, num_classes=k, base=config.base, depth=config.depth,
                               max_mult=config.max_mult, blocks=config.blocks, dropout=config.dropout,
                               patchify=config.patchify)
            self.net = run.prepare(ClassUNet(**self.params))
            self.ema = run.prepare(ClassUNet(**self.params))
            self.ema.load_state_dict(self.net.state_dict())
            self.ema.requires_grad_(False)
            architecture = "class_unet"
        self.g = run.wrap(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, betas=(beta1, 0.999))
        self.card = _card(config, patches, self.scaling, architecture, self.params,
                          fingerprint_of(config, _NOT_TRAINING + RUN_FIELDS))
        self.title = self.card.name
        seen = len(self.labels) + (0 if self.unlabelled is None else len(self.unlabelled))
        self.steps = max(1, (config.patches_per_epoch or seen) // config.batch_size)
        if self.unlabelled is not None:
            self.card.training["unlabelled"] = {"images": len(self.unlabelled), "share": config.unlabelled_share}

    def to_model(self, x: np.ndarray) -> np.ndarray:
        return patches_to_model(self.scaling, x)

    def parts(self) -> dict[str, Any]:
        if self.is_gan:
            return {"net": self.net, "opt": self.opt, "disc": self.disc, "opt_d": self.opt_d}
        return {"net": self.net, "opt": self.opt, "ema": self.ema}

    def train_mode(self) -> None:
        self.net.train()
        if self.is_gan:
            self.disc.train()

    def batches(self, epoch: int):
        """Each global batch drawn and augmented alike on every rank (a generator seeded by the epoch, so a
        resumed run draws the same), then this rank's part of it."""
        config, share = self.config, self.run.share
        g = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        n_free = 0 if self.unlabelled is None else round(config.unlabelled_share * config.batch_size)
        n_free = min(max(n_free, 1 if self.unlabelled is not None else 0), config.batch_size - 1)
        n_labelled = config.batch_size - n_free
        idx = balanced_indices(self.y_train, self.steps * n_labelled, g)
        null = len(self.patches.classes)  # the unconditional token of the diffusion U-Net
        for step in range(self.steps):
            b = idx[step * n_labelled:(step + 1) * n_labelled]
            x, y = self.data[b], self.labels[b]
            if self.unlabelled is not None:  # the rest of the batch: unlabelled images, as "no class"
                u = torch.randint(0, len(self.unlabelled), (n_free,), generator=g)
                x, y = torch.cat([x, self.unlabelled[u]]), torch.cat([y, torch.full((n_free,), null)])
            x = augment(x, g)
            z = torch.randn((len(y), config.nz), generator=g) if self.is_gan else None
            mine = share.part(len(y))
            yield x[mine.start:mine.stop], y[mine.start:mine.stop], None if z is None else z[mine.start:mine.stop]

    def step(self, batch) -> tuple[dict[str, float], int]:
        x, y, z = batch
        run = self.run
        x, y = run.to_device(x), y.to(run.device)
        if self.is_gan:
            assert z is not None  # nosec B101  # type narrowing
            return _gan_step(self, x, y, z.to(run.device)), x.shape[0]
        with run.precision.autocast():
            loss = edm_loss(self.net, x, y, self.config.label_dropout, generator=None,
                            wide_noise=self.config.wide_noise, forward=self.g)
        self.opt.zero_grad(set_to_none=True)
        run.precision.backward_step(loss, self.opt)
        # the optimizer's own count (it resumes with it; fp16's scaler may have skipped steps: then none yet)
        state = self.opt.state.get(self.opt.param_groups[0]["params"][0], {})
        decay = ema_decay(self.config.ema, int(state.get("step", 0)))
        with torch.no_grad():
            for pe, pn in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                pe.lerp_(pn, 1 - decay)
        return {"loss_denoise": loss.item()}, x.shape[0]

    def end_epoch(self, epoch: int, validate: bool) -> dict[str, Any]:
        if self.is_gan or self.val_data is None or not validate:
            return {}
        return {"val_denoise": _val_denoise(self.ema, self.val_data, torch.from_numpy(self.y_val), self.run.device)}

    def report(self, folder: Path, history: list[dict]) -> None:
        write_metrics(folder, {"history": history}, self.title)
        plot_history(history, folder / "loss_curves.png", self.title)

    def finish(self, history: list[dict]) -> Path:
        config, card, feedback = self.config, self.card, self.feedback
        final = self.net if self.is_gan else self.ema
        final.eval()
        loaded = LoadedModel(module=final, card=card, path=Path(config.output_model))
        if not self.is_gan and config.guidance is None:
            from .guidance import choose_guidance

            feedback.info("choosing the default guidance on the training patches")
            choice = choose_guidance(loaded, self.data.numpy(), self.y_train, n=config.guidance_samples,
                                     feedback=feedback)
            card.training["sampler"].update(guidance=choice["guidance"], guidance_selection=choice)
            feedback.info(f"default guidance {choice['guidance']:g}")
        report = Path(config.report_dir)
        _sample_grid(loaded, self.patches, self.to_model, report / "samples.png", self.run.device)
        path = save_model(config.output_model, final, card, half=config.half_precision_file)
        write_metrics(report, {"history": history, "classes": self.patches.classes,
                               "class_counts": card.training["class_counts"], "sampler": card.training["sampler"]},
                      card.name)
        return path


def _gan_step(task: SynthesisTask, real: torch.Tensor, labels: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
    """One step of the DCGAN recipe: D on real and fake (BCE), then G (non-saturating BCE) judged through
    the discriminator itself, which learns nothing from it."""
    precision = task.run.precision
    n = real.shape[0]
    ones, zeros = torch.ones(n, device=real.device), torch.zeros(n, device=real.device)
    task.disc.requires_grad_(True)
    with precision.autocast():
        fake = task.g(z, labels)
        d_loss = F.binary_cross_entropy_with_logits(task.d(real, labels).float(), ones) + \
            F.binary_cross_entropy_with_logits(task.d(fake.detach(), labels).float(), zeros)
    task.opt_d.zero_grad(set_to_none=True)
    precision.backward_step(d_loss, task.opt_d)
    task.disc.requires_grad_(False)
    with precision.autocast():
        g_loss = F.binary_cross_entropy_with_logits(task.disc(fake, labels).float(), ones)
    task.opt.zero_grad(set_to_none=True)
    precision.backward_step(g_loss, task.opt)
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
