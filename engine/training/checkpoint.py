"""Checkpoints for resuming training after a kill.

A checkpoint is our own file, written by this trainer next to its report; it
is read back with torch.load(weights_only=True), which accepts tensors and
plain containers only, never arbitrary objects. Written atomically, so a kill
during saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..device import resolve_device
from ..errors import InputError
from ..fileio import atomic_path, check_not_same_file, check_output_folder


def begin_run(config: Any, inputs: list) -> tuple[Path, Path, torch.device]:
    """What every trainer does first: refuse a model file over one of its `inputs`, make the report
    folder, check the model file's folder now (not after the last epoch), resolve the device, seed
    torch; returns (report folder, checkpoint path, device)."""
    check_not_same_file(inputs, [config.output_model])
    report = Path(config.report_dir)
    report.mkdir(parents=True, exist_ok=True)
    check_output_folder(config.output_model)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    return report, report / "checkpoint.pt", device


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none; a damaged one is an InputError that says
    how to go on (it is never executed: tensors and plain values only)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "epoch" not in state or "config" not in state:
            raise ValueError("not a SatGen training checkpoint")
    except Exception as exc:  # noqa: BLE001 -- whatever torch says of a damaged file, the fix is the same
        raise InputError(f"the checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); it may "
                         f"be damaged: delete it to train from the start, or choose another report folder") from None
    return state


def linear_decay(total_epochs: int, decay_epochs: int):
    """pix2pix schedule: constant learning rate, then linear decay to zero over
    the last `decay_epochs` epochs (a LambdaLR factor)."""
    constant = max(0, total_epochs - decay_epochs)

    def factor(epoch: int) -> float:
        if epoch < constant or decay_epochs <= 0:
            return 1.0
        return max(0.0, 1.0 - (epoch - constant + 1) / (decay_epochs + 1))

    return factor


def fingerprint_of(config, not_training: tuple[str, ...]) -> dict[str, Any]:
    """The settings that change what is learned, as plain JSON values: a run resumes
    only from a checkpoint with the same fingerprint."""
    from dataclasses import asdict

    return json.loads(json.dumps({k: v for k, v in asdict(config).items() if k not in not_training}))


def same_settings(stored: dict[str, Any], fingerprint: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """Whether a checkpoint's settings are this run's: equal, but for settings added to SatGen since the
    checkpoint was written, which must hold their `defaults` (what the older run did without them)."""
    added = fingerprint.keys() - stored.keys()
    missing = object()
    return (stored == {k: v for k, v in fingerprint.items() if k not in added}
            and all(fingerprint[k] == defaults.get(k, missing) for k in added))


def resume(path: Path, fingerprint: dict[str, Any], parts: dict[str, Any], feedback,
           defaults: dict[str, Any] | None = None) -> tuple[int, list]:
    """Load `parts` (name -> module, optimiser or scheduler) from the checkpoint at
    `path` when there is one; returns (epochs done, history). `defaults`: see same_settings."""
    state = load_checkpoint(path)
    if state is None:
        return 0, []
    if not same_settings(state["config"], fingerprint, defaults or {}):
        raise InputError(f"{path} belongs to a run with other settings; delete it to start afresh "
                         f"or use another report folder")
    try:
        for name, part in parts.items():
            part.load_state_dict(state[name])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InputError(f"the checkpoint {path} does not fit this run ({type(exc).__name__}: {str(exc)[:200]}); "
                         f"delete it to train from the start, or choose another report folder") from None
    torch.set_rng_state(state["rng"])
    epoch = int(state["epoch"])
    feedback.info(f"resuming from {path} after epoch {epoch}")
    return epoch, json.loads(state["history"])


def checkpoint(path: Path, fingerprint: dict[str, Any], parts: dict[str, Any], epoch: int, history: list) -> None:
    """Save `parts` with the epoch count, history, RNG state and fingerprint."""
    save_checkpoint(path, {**{name: part.state_dict() for name, part in parts.items()}, "epoch": epoch,
                           "history": json.dumps(history), "rng": torch.get_rng_state(), "config": fingerprint})


def pix2pix_parts(generator, discriminator, config) -> dict[str, Any]:
    """Adam optimisers (config.lr, betas (config.beta1, 0.999)) and the pix2pix schedule
    (constant, then linear decay over config.decay_epochs, default half the epochs) for a
    generator and its discriminator: everything a checkpoint must restore."""
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    decay = config.decay_epochs if config.decay_epochs is not None else config.epochs // 2
    return {"generator": generator, "discriminator": discriminator, "opt_g": opt_g, "opt_d": opt_d,
            "sched_g": torch.optim.lr_scheduler.LambdaLR(opt_g, linear_decay(config.epochs, decay)),
            "sched_d": torch.optim.lr_scheduler.LambdaLR(opt_d, linear_decay(config.epochs, decay))}
