"""The one training loop: every trainer (translation, inpainting, synthesis) supplies a `Task`
(its networks, one optimisation step, validation, report and model file) and `train` runs it:
epochs and steps, progress and cancel, images/s, mixed precision, checkpoints in one format with
resume after a kill, the report, and, under torchrun, DistributedDataParallel with each global
batch split over the ranks (rank 0 writes checkpoint, report and model file, as one process would).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from .. import distributed
from ..distributed import Share
from ..errors import InputError, TrainingError
from ..progress import Feedback, training_status
from .checkpoint import begin_run, checkpoint, fingerprint_of, resume
from .objectives import check_losses
from .options import PRECISIONS, RUN_FIELDS


class Precision:
    """Autocast and gradient scaling for one precision on one device."""

    def __init__(self, name: str, device: torch.device):
        if name not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
        cuda = device.type == "cuda"
        if name == "auto":
            name = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        if name == "fp16" and not cuda:
            raise InputError("fp16 training needs a CUDA GPU; on the CPU use bf16 or fp32")
        self.name, self.device_type = name, device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context for a step's forward passes and losses."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass of `loss` and a step of `optimizer` (gradients unscaled first under fp16)."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)

    def end_step(self) -> None:
        """After a training step's optimizers have all stepped: the fp16 scale adapts."""
        self.scaler.update()


@dataclasses.dataclass
class Run:
    """Where and how a task trains: device, precision, this process's share of the job."""

    device: torch.device
    precision: Precision
    share: Share
    channels_last: bool
    compile: bool
    workers: int

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` on the device, in the memory layout asked for (the module itself, changed in place)."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """What the training steps call for a trained network: under torchrun a DistributedDataParallel
        over it (gradients averaged over the ranks), compiled when asked; the module itself otherwise.
        Validation, reports and model files use the module itself."""
        wrapped: Any = module
        if self.share.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
        if self.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch tensor on the device (asynchronously from pinned memory), images channels-last when asked."""
        tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def steps(self, length: int, batch_size: int) -> int:
        """Batches in an epoch of `length` items (as `loader` makes them)."""
        return sum(1 for i in range(0, length, batch_size) if min(batch_size, length - i) >= self.share.world)

    def loader(self, dataset: torch.utils.data.Dataset, batch_size: int, length: int) -> torch.utils.data.DataLoader:
        """This rank's part of each batch of items 0..length-1 in order (datasets whose items depend only on
        the epoch and the index, so the split and the workers change nothing), `workers` processes reading.
        A last batch too small to give every rank an item is left out."""
        batches = [[range(i, min(i + batch_size, length))[j] for j in self.share.part(min(batch_size, length - i))]
                   for i in range(0, length, batch_size) if min(batch_size, length - i) >= self.share.world]
        return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=self.workers,
                                           pin_memory=self.device.type == "cuda",
                                           persistent_workers=False)


class Task(Protocol):
    """What a trainer supplies to `train`."""

    title: str  # the report's title
    steps: int  # optimisation steps per epoch

    def parts(self) -> dict[str, Any]:
        """Everything a checkpoint saves and restores, by name: networks, optimisers, schedulers, EMA."""

    def train_mode(self) -> None:
        """Put the trained networks into training mode (at the start of each epoch)."""

    def batches(self, epoch: int) -> Iterable[Any]:
        """This rank's part of each of the epoch's `steps` batches."""

    def step(self, batch: Any) -> tuple[dict[str, float], int]:
        """One optimisation step on a batch: (losses by name, images in this rank's part)."""

    def end_epoch(self, epoch: int, validate: bool) -> dict[str, Any]:
        """After an epoch's steps (every rank: schedulers step); with `validate` (rank 0) its validation scores."""

    def report(self, folder: Path, history: list[dict]) -> None:
        """Write the report's figures (rank 0, after each epoch)."""

    def finish(self, history: list[dict]) -> Path:
        """Final scores, the model file and the report's last state (rank 0); returns the model file's path."""


class Pix2PixSteps:
    """What the two Pix2Pix-style tasks (translation, inpainting) share: a generator and a discriminator
    with `checkpoint.pix2pix_parts`, a dataset of items by (epoch, index), schedulers stepping per epoch."""

    config: Any
    run: Run
    dataset: Any
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    _parts: dict[str, Any]

    def parts(self) -> dict[str, Any]:
        return dict(self._parts)

    def train_mode(self) -> None:
        self.generator.train()
        self.discriminator.train()

    def batches(self, epoch: int) -> Iterable[Any]:
        self.dataset.set_epoch(epoch)
        return self.run.loader(self.dataset, self.config.batch_size, self.config.patches_per_epoch)

    def end_epoch(self, epoch: int, validate: bool) -> dict[str, Any]:
        self._parts["sched_g"].step()
        self._parts["sched_d"].step()
        return self.validate() if validate else {}

    def validate(self) -> dict[str, Any]:
        """Scores on the held-out items of each epoch."""
        raise NotImplementedError


def start(config: Any, inputs: list) -> tuple[Path, Path, Run]:
    """What every trainer does first: checks and folders (`checkpoint.begin_run`), the process group when
    started by torchrun (each rank on its own GPU), precision, layout and loader workers; returns
    (report folder, checkpoint path, run)."""
    if config.workers is not None and config.workers < 0:
        raise InputError(f"workers must be 0 or more, got {config.workers}")
    share = distributed.init(config.device)
    report, ckpt, device = begin_run(config, inputs)
    if share.world > 1 and device.type == "cuda":
        device = torch.device("cuda", share.local_rank)
    cuda = device.type == "cuda"
    run = Run(device=device, precision=Precision(config.precision, device), share=share,
              channels_last=cuda if config.channels_last is None else bool(config.channels_last),
              compile=bool(config.compile), workers=(4 if cuda else 0) if config.workers is None else config.workers)
    if config.batch_size < share.world:
        raise InputError(f"the batch of {config.batch_size} cannot be split over {share.world} processes; give a "
                         f"batch size of at least {share.world}")
    return report, ckpt, run


def _defaults(config: Any) -> dict[str, Any]:
    """What a run of `config`'s fields at their defaults trains with, the values its configuration derives
    from them included (a default of None may stand for a value derived from other settings)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    try:
        return {**defaults, **fingerprint_of(dataclasses.replace(config, **defaults), ())}
    except (InputError, ValueError, TypeError):  # defaults that do not go with this run's required fields
        return defaults


def train(task: Task, config: Any, run: Run, report: Path, ckpt: Path, not_training: tuple[str, ...],
          feedback: Feedback) -> Path:
    """Run `task` for config.epochs epochs from its checkpoint (if any); returns the model file's path."""
    main = run.share.is_main
    fingerprint = fingerprint_of(config, not_training + RUN_FIELDS)
    parts = task.parts()
    if run.precision.scaler.is_enabled():
        parts["grad_scaler"] = run.precision.scaler
    defaults = _defaults(config)
    start_epoch, history = resume(ckpt, fingerprint, parts, feedback, defaults)
    feedback.info(f"training on {run.device} in {run.precision.name}"
                  + (f", {run.share.world} processes" if run.share.world > 1 else ""))
    for epoch in range(start_epoch, config.epochs):
        if run.share.world > 1:  # each rank its own noise (dropout, diffusion), the same after a resume
            torch.manual_seed(config.seed * 1_000_003 + epoch * 1009 + run.share.rank)
        task.train_mode()
        sums: dict[str, float] = {}
        started, images, steps = time.perf_counter(), 0, 0
        for step, batch in enumerate(task.batches(epoch)):
            feedback.check_cancelled()
            losses, n = task.step(batch)
            run.precision.end_step()
            images += n
            steps += 1
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            feedback.progress((epoch * task.steps + step + 1) / (config.epochs * task.steps))
            feedback.status(training_status(epoch, config.epochs, step, task.steps, history))
        seconds = time.perf_counter() - started  # the training steps alone
        # losses averaged over all ranks' steps, throughput of all ranks together: every rank computes the
        # same entry, so every rank stops alike when the losses diverge
        totals = distributed.gather((sums, images, steps, seconds))
        all_steps = max(1, sum(t[2] for t in totals))
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "images_per_s": sum(t[1] for t in totals) / max(max(t[3] for t in totals), 1e-9),
            **{key: sum(t[0].get(key, 0.0) for t in totals) / all_steps for key in sums},
        }
        entry.update(task.end_epoch(epoch, validate=main))
        entry["seconds"] = time.perf_counter() - started
        check_losses(entry, epoch + 1, epoch)
        history.append(entry)
        if main:
            feedback.info(" ".join(f"{k}={v:.4g}" for k, v in entry.items() if isinstance(v, (int, float))))
            checkpoint(ckpt, fingerprint, parts, epoch + 1, history)
            task.report(report, history)
    # rank 0 writes the model file; every rank returns once it exists (or fails when writing it failed)
    path, ok = Path(config.output_model), False
    try:
        if main:
            path = task.finish(history)
        ok = True
    finally:
        if not distributed.all_ok(ok) and ok:
            raise TrainingError("the first process failed while writing the model file (its message says why); "
                                "no model file was written")
    return path
