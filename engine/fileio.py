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
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError, OutputError

_SIDECARS = ("", ".aux.xml", ".ovr", ".msk")  # files GDAL may add beside a raster


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# errors of the place written to, not of the data: (reason, what to do)
_FREE = "free space or choose another folder"
_OTHER = "choose a folder you can write to, or close the file where another program holds it open"
_NO_ROOM = {errno.ENOSPC: ("the disk is full", _FREE), errno.EFBIG: ("the file-size limit is reached", _FREE),
            errno.EDQUOT: ("the disk quota is used up", _FREE),
            errno.EROFS: ("the file system is read-only", _OTHER), errno.EACCES: ("permission denied", _OTHER),
            errno.EPERM: ("permission denied", _OTHER), errno.EIO: ("an I/O error occurred", "check the disk"),
            errno.EXDEV: ("the output lies on another file system than its temporary copy", _OTHER)}


def write_failed(target: str | os.PathLike, reason: str, fix: str = _FREE) -> OutputError:
    """The error of an output that could not be written completely."""
    return OutputError(f"could not write {target}: {reason}; {fix} (nothing was written under that name)")


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
        known = _no_room(exc)
        if known is None:
            raise
        raise write_failed(target, *known) from None


def _no_room(exc: BaseException) -> tuple[str, str] | None:
    return _NO_ROOM.get(getattr(exc, "errno", None) or 0) if isinstance(exc, OSError) else None


# Temporary names carry their writer (host and process id), so a later run can tell the
# leftovers of a killed one. A leftover is removed only when its writer is gone from this host
# AND it has not changed for an hour: a process in another PID namespace, or on another machine
# of the same name sharing the folder, may look gone while it still writes.
_OWNER = f"{socket.gethostname().replace('.', '_').replace('-', '_')[:32]}-{os.getpid()}"
STALE_SECONDS = 3600
_STEM = 64  # characters of the target's name kept in temporary names (file names have limits)


def _remove_leftovers(target: Path, suffix: str, where: Path) -> None:
    if where.name.endswith(".part"):
        return  # inside a temporary folder of atomic_folder: nothing can be left over there
    prefix = f".{target.stem[:_STEM]}."
    host = _OWNER.rsplit("-", 1)[0]
    now = time.time()
    for path in where.glob(glob.escape(prefix) + "*" + glob.escape(suffix)):
        owner = path.name[len(prefix):].split(".", 1)[0]
        name, _, pid = owner.rpartition("-")
        with contextlib.suppress(OSError):
            if name != host or not pid.isdigit() or now - path.stat().st_mtime < STALE_SECONDS or _alive(int(pid)):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                for side in _SIDECARS:
                    if os.path.exists(str(path) + side):
                        os.remove(str(path) + side)


def _alive(pid: int) -> bool:
    """Whether process `pid` may still run here (when unsure: yes)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) is not a probe on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _temporary(target: Path, make: Callable[..., object], *, suffix: str, folder: bool = False,
               inside: Path | None = None) -> str:
    """A new temporary file (or folder) for `target`, beside it, or in `inside`."""
    where = inside or target.parent
    if not where.is_dir():
        raise InputError(f"output folder {where} does not exist; create it or choose another output")
    too_long = InputError(f"the output name {target.name[:40]}... is too long for this file system; choose a "
                          f"shorter name")
    try:
        is_dir = target.is_dir()
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise too_long from None
        raise
    if is_dir and not folder:
        raise InputError(f"the output {target} is a folder; give a file name")
    _remove_leftovers(target, suffix, where)
    try:
        made = make(prefix=f".{target.stem[:_STEM]}.{_OWNER}.", suffix=suffix, dir=where)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise too_long from None
        raise OutputError(f"cannot write into the folder {where} ({exc.strerror or exc}); choose a folder "
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
        _remove_file(tmp)


@contextlib.contextmanager
def temporary_path(target: str | os.PathLike) -> Iterator[str]:
    """Yield a new temporary path beside `target`, named as atomic_path's (so a killed run's are
    cleaned up by later runs); delete it and GDAL's side files on exit, whatever happens."""
    target = Path(target)
    tmp = _temporary(target, tempfile.mkstemp, suffix=".part" + target.suffix)
    try:
        with _reported(target):
            yield tmp
    finally:
        _remove_file(tmp)


def _remove_file(path: str) -> None:
    """Delete file `path` and the side files GDAL may have added beside it."""
    for suffix in _SIDECARS:
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success move its contents into `target` (the folder
    itself when `target` does not exist yet, else file by file, replacing files of the same name,
    from a temporary folder inside `target`, so on its file system); on any error, cancel or
    interrupt delete it, so nothing appears."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise InputError(f"the output folder {target} is a file; give a folder")
    inside = target if target.is_dir() else None
    tmp = Path(_temporary(target, tempfile.mkdtemp, suffix=".part", folder=True, inside=inside))
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
        try:
            os.rename(tmp, target)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # another run made the folder meanwhile: merge into it, file by file, as below
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.parent == tmp)  # files at the top (e.g. a manifest) last
    moves = [(path, target / path.relative_to(tmp)) for path in files]
    for _, dest in moves:  # everything checked before anything moves
        if dest.is_dir():
            raise InputError(f"{dest} is a folder, where the data set has a file; choose another output folder")
        parent = next(p for p in [dest.parent, *dest.parents] if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write into {parent}; choose an output folder you can write to")
    done: list[Path] = []
    try:
        for path, dest in moves:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            done.append(dest)
    except OSError as exc:
        known = _no_room(exc)
        raise OutputError(f"moving the new files into {target} failed after {len(done)} of {len(moves)} "
                          f"({known[0] if known else exc}); the folder holds a mix of old and new files "
                          f"(see its manifest.csv): run again into an empty folder") from None


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


def check_geotiff_name(path: str | os.PathLike | None) -> None:
    """Raster outputs are GeoTIFF: refuse a name that promises another format (a .png holding a GeoTIFF)."""
    if path is not None and Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{Path(path).name}: SatGen writes GeoTIFF rasters; name the output .tif (for a picture, "
                         f"`python -m engine preview` makes a PNG of it)")


def check_output_folder(path: str | os.PathLike) -> None:
    """Fail now, before hours of work, if output file `path` cannot be created in its folder."""
    os.remove(_temporary(Path(path), tempfile.mkstemp, suffix=".part"))
