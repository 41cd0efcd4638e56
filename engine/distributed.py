"""One job over several processes, as torchrun starts them.

`torchrun --nproc_per_node=N [--nnodes=M --rdzv-endpoint=HOST:PORT] -m engine CMD ...` starts N
processes per machine, each with RANK, LOCAL_RANK, WORLD_SIZE and the rendezvous address in its
environment. `init()` joins them into one process group (NCCL where each process has a GPU, else
gloo); without torchrun it does nothing and every helper here acts as for one process, so callers
never branch on how they were started.

A `Share` says which part of the work is this process's: training splits each batch, inference
splits the tile grid into bands of rows (`Share.part`).
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import InputError

TIMEOUT = datetime.timedelta(minutes=30)  # a rank waiting for others longer than this fails


@dataclass(frozen=True)
class Share:
    """This process's place in the job: rank `rank` of `world`, `local_rank` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes what the job writes once: checkpoints, reports, model files, joined outputs."""
        return self.rank == 0

    def part(self, n: int) -> range:
        """This rank's contiguous share of n items, the shares as even as they can be (earlier ranks
        take the remainder); empty when n < world for the last ranks."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))


def launched() -> bool:
    """Whether torchrun (or another launcher setting WORLD_SIZE > 1) started this process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init(device: str = "auto") -> Share:
    """Join the process group when started by torchrun (once; later calls return the share).
    The backend is NCCL when the job runs on CUDA GPUs (one per process, LOCAL_RANK), gloo on CPUs."""
    if not launched():
        return Share()
    if not dist.is_initialized():
        if not dist.is_available():
            raise InputError("this torch was built without torch.distributed; run without torchrun")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and (device or "auto").lower() not in ("cpu",)
        if cuda:
            if local >= torch.cuda.device_count():
                raise InputError(f"process {local} on this machine has no GPU of its own (torch sees "
                                 f"{torch.cuda.device_count()}); start at most that many processes per machine "
                                 f"(--nproc_per_node) or run on the CPU (--device cpu)")
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return current()


def current() -> Share:
    """The share of this process (rank 0 of 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return Share(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Share()


def finish() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        gloo = dist.get_backend() == "gloo"
        dist.destroy_process_group()
        if gloo:
            # gloo's threads let go of the last transfers' tensors a moment after they end, and need Python
            # for it: were Python shutting down by then, the process would abort ("terminate called without
            # an active exception", pytorch issue 190489); so a pause first
            time.sleep(0.2)


def barrier() -> None:
    if current().world > 1:
        dist.barrier()


def gather(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank; [value] for one process."""
    share = current()
    if share.world == 1:
        return [value]
    out: list[Any] = [None] * share.world
    dist.all_gather_object(out, value)
    return out


def all_ok(ok: bool) -> bool:
    """True when every rank says ok: called by all ranks at the same point, after work that may fail
    on some, so that none waits forever for a rank that gave up."""
    return all(gather(bool(ok)))
