"""Atomic file output: write beside the target, check, rename into place when complete.

A failed, cancelled or killed write never leaves a partial file under the
target's name, and an existing file there stays untouched until the new one
is complete and checked. A write that fails for want of space or permission
(disk full, quota, file-size limit, read-only folder) is an `OutputError`
that says so; `atomic_folder` does the same for a folder of files.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError, OutputError

_SIDECARS = ("", ".aux.xml", ".ovr", ".msk")  # files GDAL may add beside a raster


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# errors of the place written to, not of the data: reported as such
_NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file-size limit is reached",
            errno.EDQUOT: "the disk quota is used up", errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EIO: "an I/O error occurred"}


def write_failed(target: str | os.PathLike, reason: str) -> OutputError:
    """The error of an output that could not be written completely."""
    return OutputError(f"could not write {target}: {reason}; free space or choose another folder "
                       f"(nothing was written under that name)")


@contextlib.contextmanager
def _reported(target: Path) -> Iterator[None]:
    """Failures of writing `target` for want of room or permission as one OutputError naming it."""
    try:
        yield
    except OutputError as exc:
        if str(target) in str(exc):
            raise
        raise OutputError(f"{target}: {exc}") from None
    except OSError as exc:
        reason = _no_room(exc)
        if reason is None:
            raise
        raise write_failed(target, reason) from None


def _no_room(exc: BaseException) -> str | None:
    return _NO_ROOM.get(getattr(exc, "errno", None) or 0) if isinstance(exc, OSError) else None


# temporary names carry their writer, so a later run can tell the leftovers of a killed one
_OWNER = f"{socket.gethostname().replace('.', '_').replace('-', '_')}-{os.getpid()}"


def _remove_leftovers(target: Path, suffix: str) -> None:
    """Delete temporary files (or folders) for `target` that a killed run of this machine left:
    those whose writing process is gone. Others' (live, or of another machine) stay."""
    prefix = f".{target.stem}."
    host = _OWNER.rsplit("-", 1)[0]
    for path in target.parent.glob(glob.escape(prefix) + "*" + glob.escape(suffix)):
        owner = path.name[len(prefix):].split(".", 1)[0]
        name, _, pid = owner.rpartition("-")
        if name != host or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                for side in _SIDECARS:
                    if os.path.exists(str(path) + side):
                        os.remove(str(path) + side)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _temporary(target: Path, make: Callable[..., object], **kwargs) -> str:
    if not target.parent.is_dir():
        raise InputError(f"output folder {target.parent} does not exist; create it or choose another output")
    if target.is_dir() and not kwargs.get("folder"):
        raise InputError(f"the output {target} is a folder; give a file name")
    kwargs.pop("folder", None)
    _remove_leftovers(target, kwargs["suffix"])
    try:
        made = make(prefix=f".{target.stem}.{_OWNER}.", dir=target.parent, **kwargs)
    except OSError as exc:
        raise OutputError(f"cannot write into the folder {target.parent} ({exc.strerror or exc}); choose a folder "
                          f"you can write to") from None
    if isinstance(made, tuple):  # mkstemp: (fd, path)
        os.close(made[0])
        return made[1]
    return str(made)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, verify: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield a temporary path beside `target`; on success check it with `verify` (which raises
    if the file is incomplete) and rename it to `target`; delete it (and GDAL's side files) on any
    error, cancel or interrupt. Failures for want of space or permission become `OutputError`."""
    target = Path(target)
    tmp = _temporary(target, tempfile.mkstemp, suffix=".part" + target.suffix)
    try:
        with _reported(target):
            yield tmp
            if verify is not None:
                verify(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            os.replace(tmp, target)
    finally:
        for suffix in _SIDECARS:
            if os.path.exists(tmp + suffix):
                os.remove(tmp + suffix)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target` to fill; on success move its contents into
    `target` (the folder itself when `target` does not exist yet, else file by file, replacing
    files of the same name); on any error, cancel or interrupt delete it, so nothing appears."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise InputError(f"the output folder {target} is a file; give a folder")
    tmp = Path(_temporary(target, tempfile.mkdtemp, suffix=".part", folder=True))
    try:
        with _reported(target):
            yield tmp
            _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path) -> None:
    mode = 0o777 & ~_umask()
    for folder in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
        os.chmod(folder, mode)  # mkdtemp makes 0700; give the usual permissions
    if not target.exists():
        os.rename(tmp, target)
        return
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.parent == tmp)  # files at the top (e.g. a manifest) last
    for path in files:
        dest = target / path.relative_to(tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)


def check_not_same_file(inputs, outputs) -> None:
    """Refuse outputs that would overwrite any input (raster, mask, QA, reference, model) or each other."""
    outputs = [o for o in outputs if o is not None]
    for out in outputs:
        for inp in inputs:
            if inp is not None and os.path.exists(out) and os.path.exists(inp) and os.path.samefile(inp, out):
                raise InputError(f"the output {out} would overwrite the input {inp}; choose another output file")
    resolved = [os.path.abspath(o) for o in outputs]
    if len(set(resolved)) < len(resolved):
        raise InputError("two outputs name the same file; give each output its own file")


def check_output_folder(path: str | os.PathLike) -> None:
    """Fail now, before hours of work, if output file `path` cannot be created in its folder."""
    os.remove(_temporary(Path(path), tempfile.mkstemp, suffix=".part"))
