"""How the tile pipeline spreads its numpy and GDAL work over the cores.

numpy and GDAL release the GIL in their inner loops, so threads of one process share out
the work that sits between forward passes: decoding block rows, stretching, blending,
dividing, scaling, compressing. On two cores that is the main thread and one helper (the
forward pass has both cores the rest of the time); on a GPU machine's sixteen it is all
of them, since there the model waits for the CPU and not the other way round.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from .errors import InputError

THREADS_ENV = "SATGEN_THREADS"  # set to use fewer (or more) threads than the cores this process may run on
MAX_THREADS = 64
MIN_ROWS = 16  # rows per part at least: smaller handoffs cost more than they save

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_PREFIX = "satgen-helper"


def cpu_threads() -> int:
    """Threads for the pipeline's numpy and GDAL work: the cores this process may run on (its CPU
    affinity, as a container or `taskset` sets it), shared out among the processes torchrun started
    on this machine; or SATGEN_THREADS."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            count = int(value)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_THREADS:
            raise InputError(f"{THREADS_ENV}={value!r}: give a whole number of threads from 1 to {MAX_THREADS}, "
                             f"or unset it to use every core")
        return count
    cores = _cores()
    # processes that torchrun started side by side on this machine share its cores
    try:
        sharing = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:
        sharing = 1
    return max(1, min(cores // sharing, MAX_THREADS))


@functools.cache
def _cores() -> int:
    """The cores this process may run on, read once (in_parts asks per batch)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def helpers() -> ThreadPoolExecutor:
    """The pool of helper threads (MAX_THREADS - 1 at most; threads start only as work comes), made once
    and never replaced, so callers on several threads (two runs in one process) can share it."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_THREADS - 1, thread_name_prefix=_PREFIX)
        return _pool


def in_parts(work: Callable[[int, int], object], n: int, spare: int = 0) -> None:
    """work(lo, hi) over consecutive ranges covering [0, n), at once: the first here, the rest on
    helper threads, one range per thread (cpu_threads()), each at least MIN_ROWS long; returns
    when all are done, raising the calling thread's error, else the first helper's. For numpy work
    on disjoint rows: the result is the same however many parts there are. Called from a helper
    thread, it does all the work there (a pool waiting on itself could run out of threads). `spare`:
    threads left to other work running at the same time (e.g. the writer thread compressing)."""
    parts = min(cpu_threads() - spare, n // MIN_ROWS)
    if parts <= 1 or threading.current_thread().name.startswith(_PREFIX):
        work(0, n)
        return
    bounds = [i * n // parts for i in range(parts + 1)]
    pool = helpers()
    futures = [pool.submit(work, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        work(bounds[0], bounds[1])
    finally:
        wait(futures)
    for future in futures:
        future.result()
