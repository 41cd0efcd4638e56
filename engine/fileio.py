"""Atomic file output: write beside the target, rename into place when complete.

A failed, cancelled or killed write never leaves a partial file under the
target's name, and an existing file there stays untouched until the new one
is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import InputError

_SIDECARS = ("", ".aux.xml", ".ovr", ".msk")  # files GDAL may add beside a raster


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path beside `target`; rename it to `target` on success,
    delete it (and GDAL's side files) on any error, cancel or interrupt."""
    target = Path(target)
    if not target.parent.is_dir():
        raise InputError(f"output folder {target.parent} does not exist; create it or choose another output")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".part" + target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    finally:
        for suffix in _SIDECARS:
            if os.path.exists(tmp + suffix):
                os.remove(tmp + suffix)
