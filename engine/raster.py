"""Raster input and output through rasterio windows.

Reading: band selection, blocks padded by reflection past the raster's edges,
validity from nodata values, NaNs or GDAL masks. Writing: tiled, compressed
GeoTIFF, written in whole block rows and renamed into place only when
complete, so a failed or cancelled run never leaves a file under the target name.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import cast

import numpy as np
import rasterio
import rasterio.io
from rasterio.enums import ColorInterp, Interleaving, MaskFlags
from rasterio.transform import Affine
from rasterio.windows import Window

from .errors import InputError, OutputError
from .parallel import cpu_threads
from .windows import reflect_indices

BLOCK = 256
# GDAL's block cache defaults to 5 % of RAM, which would let memory grow with the
# raster; the pipeline itself holds what it needs, so a small cache suffices.
GDAL_ENV = {"GDAL_CACHEMAX": 32, "GDAL_NUM_THREADS": 1}


def is_georeferenced(src) -> bool:
    """Whether a raster has a CRS, a geotransform or GCPs (else GDAL reports an identity transform)."""
    return src.crs is not None or not src.transform.is_identity or bool(src.gcps[0])


def ground_resolution(crs, transform, height: int = 0) -> float | None:
    """Metres per pixel (the mean of both axes) of a grid, or None without a CRS or where it cannot be
    told; geographic grids at the latitude of their centre row."""
    if crs is None:
        return None
    try:
        dx, dy = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
        if crs.is_geographic:
            lat = (transform * (0, height / 2))[1]
            return float((dx * 111_320 * math.cos(math.radians(lat)) + dy * 110_574) / 2) or None
        factor = crs.linear_units_factor[1] if crs.is_projected else None
        return float((dx + dy) / 2 * factor) if factor else None
    except Exception:  # noqa: BLE001 - an odd CRS only loses the check this feeds
        return None


def open_raster(path: str | os.PathLike):
    """Open a GDAL-readable raster, or fail with a message naming the file."""
    path = str(path)
    if not os.path.exists(path) and "://" not in path and not path.startswith("/vsi"):
        raise InputError(f"input raster {path} does not exist; check the path")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read {path} as a raster ({exc}); give a GeoTIFF, JPEG2000, VRT or "
                         f"another GDAL-readable raster") from None


COLOUR_NAMES = ("red", "green", "blue")  # colour interpretations that name a band as well as a description does


def band_label(src, band: int) -> str | None:
    """What names a band: its description, else its colour interpretation (red, green, blue: JPEG and PNG
    bands have no description); None when neither does (its number is not a name: a model's B1 is not
    any raster's band 1)."""
    described = (src.descriptions[band - 1] or "").strip()
    if described:
        return described
    colour = src.colorinterp[band - 1].name
    return colour if colour in COLOUR_NAMES else None


def band_name(src, band: int) -> str:
    """`band_label`, else B<n>."""
    return band_label(src, band) or f"B{band}"


def select_bands(src, bands: list[int] | None, names: list[str]) -> list[int]:
    """1-based band indexes of `src` to feed a model that takes bands `names`.

    Explicit `bands` win; otherwise all bands when the count matches, otherwise
    bands whose labels (`band_label`: description or colour) equal the model's band names.
    """
    expected = len(names)
    if bands:
        bad = [b for b in bands if not 1 <= b <= src.count]
        if bad:
            raise InputError(f"band(s) {bad} do not exist: the raster has bands 1..{src.count}")
        if len(bands) != expected:
            raise InputError(f"the model takes {expected} band(s) ({', '.join(names)}) but {len(bands)} "
                             f"were selected; select exactly {expected}")
        return list(bands)
    if src.count == expected:
        return list(range(1, expected + 1))
    labelled: dict[str, int] = {}
    for i in range(src.count, 0, -1):  # the first band of a name wins
        label = band_label(src, i)
        if label:
            labelled[label.lower()] = i
    matched = [labelled.get(n.lower()) for n in names]
    if all(matched):
        return cast(list[int], matched)
    if src.count < expected:
        raise InputError(
            f"the model takes {expected} bands ({', '.join(names)}) but the raster has only {src.count}, so this "
            f"model cannot run on it; give a raster holding these bands (separate band files can be stacked into one "
            f"with GDAL's Build Virtual Raster, one band per file: gdalbuildvrt -separate), or use a model trained "
            f"on {src.count}-band imagery")
    raise InputError(
        f"the model takes {expected} band(s) ({', '.join(names)}) but the raster has {src.count}; choose which "
        f"{expected}, in the model's order, with BANDS / --bands, e.g. {','.join(str(i + 1) for i in range(expected))}"
    )


class BlockReader:
    """Reads (bands, rows, cols) blocks of selected bands, reflect-padded at the edges."""

    def __init__(self, src, bands: list[int]):
        self.src, self.bands = src, bands
        self.nodata = src.nodata
        self.is_float = np.dtype(src.dtypes[bands[0] - 1]).kind == "f"
        flags = [src.mask_flag_enums[b - 1] for b in bands]
        # nodata values are tested on the data itself; other masks (alpha, .msk) via GDAL
        self.gdal_mask = self.nodata is None and not all(MaskFlags.all_valid in f for f in flags)

    @property
    def has_invalid(self) -> bool:
        """Whether any pixel can be invalid (nodata, mask or NaN)."""
        return self.nodata is not None or self.gdal_mask or self.is_float

    def read(self, row0: int, row1: int, col0: int, col1: int):
        """Pixels [row0, row1) x [col0, col1), which may run past the edges.

        Returns (data in the raster's dtype, valid mask or None when all valid).
        """
        rows = reflect_indices(row0, row1, self.src.height)
        cols = reflect_indices(col0, col1, self.src.width)
        r0, c0 = int(rows.min()), int(cols.min())
        window = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
        data = self.src.read(self.bands, window=window)
        valid = self._validity(data, window)
        padded = rows[0] != r0 or rows.size != window.height or cols[0] != c0 or cols.size != window.width \
            or np.any(np.diff(rows) != 1) or np.any(np.diff(cols) != 1)
        if padded:
            ix = np.ix_(rows - r0, cols - c0)
            data = data[(slice(None),) + ix]
            valid = None if valid is None else valid[ix]
        return data, valid

    def _validity(self, data: np.ndarray, window: Window) -> np.ndarray | None:
        """(rows, cols) validity of `data`, read from `window`; None when all valid."""
        valid = None
        if self.nodata is not None:
            invalid = np.isnan(data) if np.isnan(self.nodata) else data == self.nodata
            valid = ~invalid.any(axis=0)
        elif self.gdal_mask:
            valid = (self.src.read_masks(self.bands, window=window) > 0).all(axis=0)
        if self.is_float:
            finite = np.isfinite(data).all(axis=0)
            valid = finite if valid is None else valid & finite
        return valid


SAMPLE_PIXELS = 200_000  # pixels behind a stretch fitted on a raster
RANGE_CHECK_PIXELS = 9 * 64 * 64  # pixels behind the check that a raster's values are a model's: 3 x 3 windows


def sample_pixels(src, bands: list[int], max_pixels: int | None = None, exclude=None, side: int = 64) -> np.ndarray:
    """(bands, n) float64 values of valid pixels spread over the whole raster: the whole raster
    when small, else `side`-pixel windows on a regular grid. Where the file's blocks are at least
    `side` high and wide, each window sits inside one block, the grid's at the centre of blocks
    spread evenly over the raster, so each costs one block's decoding. `max_pixels`: at most about
    this many (default SAMPLE_PIXELS). `exclude(row0, row1, col0, col1)` -> (rows, cols) bool: pixels
    to leave out (e.g. clouds)."""
    max_pixels = max_pixels or SAMPLE_PIXELS
    reader = BlockReader(src, bands)
    if src.width * src.height <= max_pixels:
        windows = [(0, src.height, 0, src.width)]
    else:
        per_axis = max(1, math.isqrt(max_pixels // (side * side)))
        block_rows, block_cols = src.block_shapes[bands[0] - 1]
        rows = _sample_starts(src.height, side, per_axis, block_rows)
        cols = _sample_starts(src.width, side, per_axis, block_cols)
        windows = [(r, min(src.height, r + side), c, min(src.width, c + side)) for r in rows for c in cols]
    samples = []
    for r0, r1, c0, c1 in windows:
        data, valid = reader.read(r0, r1, c0, c1)
        keep = np.ones(data.shape[1:], bool) if valid is None else valid
        if exclude is not None:
            keep = keep & ~np.asarray(exclude(r0, r1, c0, c1), bool)
        samples.append(data[:, keep].astype(np.float64))
    return np.concatenate(samples, axis=1)


def _sample_starts(size: int, side: int, count: int, block: int) -> list[int]:
    """Up to `count` window starts along an axis of `size` pixels, evenly spread: at the centre
    of evenly spread blocks when a window fits in a block (one block read per window, where
    windows that cross block edges would cost up to four), else on a regular grid."""
    if block < side or block >= size:
        return sorted({int(v) for v in np.linspace(0, max(0, size - side), count)})
    blocks = -(-size // block)
    starts = set()
    for b in np.linspace(0, blocks - 1, min(count, blocks)).astype(int):
        lo, hi = int(b) * block, min(size, (int(b) + 1) * block)
        # a last block shorter than a window: the window ends at the raster's edge instead
        starts.add(lo + (hi - lo - side) // 2 if hi - lo >= side else size - side)
    return sorted(starts)


def gdal_thread_settings() -> None:
    """GDAL_ENV for the rest of this thread's life (GDAL's settings are per thread): the initializer of the
    decoding and writing threads. Once per thread, since entering a rasterio.Env costs about 0.5 ms, which
    per block row was measured in the null model's time."""
    rasterio.Env(**GDAL_ENV).__enter__()


def decode_threads(src, bands: list[int]) -> int:
    """Threads worth decoding the block rows of `src` (RollingReader's handles): one per core
    (parallel.cpu_threads), but no more than the blocks across the raster."""
    block_cols = src.block_shapes[bands[0] - 1][1]
    blocks = -(-src.width // max(1, min(block_cols, src.width)))
    return max(1, min(cpu_threads(), blocks))


@contextlib.contextmanager
def rolling_reader(path: str | os.PathLike, src, bands: list[int], max_rows: int):
    """A RollingReader of `src` (opened from `path`) decoding on decode_threads() threads, each with a
    handle of its own; closed with its handles on exit."""
    with contextlib.ExitStack() as stack:
        twins = [stack.enter_context(open_raster(path)) for _ in range(decode_threads(src, bands) - 1)]
        reader = RollingReader(src, bands, max_rows=max_rows, twins=twins)
        stack.callback(reader.close)
        yield reader


class RollingReader(BlockReader):
    """A BlockReader for windows that move down the raster, as the tile pipeline's do.

    Keeps the rows the last window needed, the whole raster wide, and reads further down
    in whole block rows of the file: every block is read and decompressed once, however
    much tiles overlap and however many reads a row of tiles takes (a BlockReader reads
    each window's blocks anew). Memory: (max_rows + block height) rows, width wide; on
    rasters so wide that the block height would cost more than look_ahead_bytes, max_rows
    rows, read as needed.

    Returns exactly what BlockReader.read does, for windows in any order (one taller than
    max_rows is read as a BlockReader would); but the arrays may be read-only views of the
    buffer, valid until the next read.
    """

    min_split = 65536  # pixels: smaller reads are not worth a handoff to other threads
    look_ahead_bytes = 16 << 20  # at most this much memory for rows read ahead to finish a block row
    piece_cols = 2048  # columns per read: GDAL's temporary for a read grows with its width

    def __init__(self, src, bands: list[int], max_rows: int, twins=()):
        """`twins`: the same raster opened again (the caller closes them), one per extra thread
        that decodes block rows: each block row is cut into as many column ranges of whole blocks
        as there are handles, and each is decoded on its own thread (GDAL releases the GIL, and
        the tile pipeline reads between forward passes). decode_threads() says how many suit a
        raster. Call close() when done."""
        super().__init__(src, bands)
        block_rows, block_cols = src.block_shapes[bands[0] - 1]
        self._block_cols = max(1, min(block_cols, src.width))
        # where each handle's columns start and end: whole blocks, as even a share as they allow
        blocks = -(-src.width // self._block_cols)
        handles = [src, *twins][:blocks]
        edges = [min(src.width, i * blocks // len(handles) * self._block_cols) for i in range(len(handles) + 1)]
        self._parts = [(h, c0, c1) for h, c0, c1 in zip(handles, edges, edges[1:], strict=False) if c1 > c0]
        self._pool: ThreadPoolExecutor | None = None
        block = block_rows
        # whole block rows, unless blocks are much taller than a window (e.g. a single strip) or
        # the rows read ahead would take more than look_ahead_bytes: on wide rasters memory comes
        # first (GDAL's block cache may still spare the second decoding of a block row)
        ahead = (block - 1) * src.width * len(bands) * np.dtype(src.dtypes[bands[0] - 1]).itemsize
        self.block = block if 1 <= block <= max(256, max_rows) and ahead <= self.look_ahead_bytes else 1
        self.capacity = min(src.height, max(1, max_rows) + self.block - 1)
        width = src.width
        self._data = np.empty((len(bands), self.capacity, width), src.dtypes[bands[0] - 1])
        self._valid = np.ones((self.capacity, width), bool) if self.has_invalid else None
        self._row0 = self._row1 = 0  # raster rows [row0, row1) are in the buffer's first rows

    def read(self, row0: int, row1: int, col0: int, col1: int):
        rows = reflect_indices(row0, row1, self.src.height)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        if hi - lo > self.capacity:  # taller than the buffer: read it as a BlockReader would
            return super().read(row0, row1, col0, col1)
        cols = reflect_indices(col0, col1, self.src.width)
        self._hold(lo, hi)
        data, valid = self._data, self._valid
        for axis, idx, start in ((2, cols, 0), (1, rows, self._row0)):  # columns first: narrow before copying
            idx = idx - start
            # reflected indices step by +-1, so these are consecutive exactly when they span their count
            sel = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] == idx.size - 1 else idx
            data = data[(slice(None),) * axis + (sel,)]
            valid = None if valid is None else valid[(slice(None),) * (axis - 1) + (sel,)]
        data.flags.writeable = False
        if valid is not None:
            valid.flags.writeable = False
        return data, valid

    def _read(self, window: Window, out: np.ndarray) -> None:
        """Read `window` (whole raster width) into `out`: in pieces of whole blocks at most
        piece_cols wide, since GDAL reads pixel-interleaved files through a temporary as large
        as the request; each handle's columns on a thread of its own, the first on this one."""
        if len(self._parts) == 1 or window.height * self.src.width < self.min_split:
            self._read_columns(self.src, window, out, 0, self.src.width)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self._parts) - 1, thread_name_prefix="satgen-read",
                                            initializer=gdal_thread_settings)
        others = [self._pool.submit(self._read_columns, h, window, out, c0, c1) for h, c0, c1 in self._parts[1:]]
        try:
            h, c0, c1 = self._parts[0]
            self._read_columns(h, window, out, c0, c1)
        finally:
            wait(others)
        for other in others:
            other.result()

    def _read_columns(self, src, window: Window, out: np.ndarray, c0: int, c1: int) -> None:
        step = max(self._block_cols, self.piece_cols // self._block_cols * self._block_cols)
        for c in range(c0, c1, step):
            e = min(c1, c + step)
            src.read(self.bands, window=Window(c, window.row_off, e - c, window.height), out=out[:, :, c:e])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _hold(self, lo: int, hi: int) -> None:
        """Have raster rows [lo, hi) in the buffer."""
        if self._row0 <= lo and hi <= self._row1:
            return
        end = min(self.src.height, -(-hi // self.block) * self.block, lo + self.capacity)
        if self._row0 <= lo < self._row1:  # keep the rows still wanted, move them to the top
            keep = self._row1 - lo
            shift = lo - self._row0
            # up in pieces no taller than the shift: numpy would copy overlapping rows through
            # a temporary as large as the rows kept
            for k in range(0, keep, max(1, shift)) if shift else ():
                n = min(shift, keep - k)
                self._data[:, k:k + n] = self._data[:, shift + k:shift + k + n]
                if self._valid is not None:
                    self._valid[k:k + n] = self._valid[shift + k:shift + k + n]
            start = self._row1
        else:
            keep, start = 0, lo
        window = Window(0, start, self.src.width, end - start)
        out = self._data[:, keep:keep + end - start]
        self._read(window, out)
        if self._valid is not None:
            valid = self._validity(out, window)
            self._valid[keep:keep + end - start] = True if valid is None else valid
        self._row0, self._row1 = lo, end


def output_nodata(reader: BlockReader, dtype: str):
    """Nodata value for an output of `dtype`, or None when no input pixel can be
    invalid. The input's own nodata value is kept when `dtype` can hold it."""
    if not reader.has_invalid:
        return None
    dt = np.dtype(dtype)
    nd = reader.nodata
    if nd is not None:
        if dt.kind == "f":
            return nd
        if not np.isnan(nd) and nd == int(nd) and np.iinfo(dt).min <= nd <= np.iinfo(dt).max:
            return int(nd)
    return float("nan") if dt.kind == "f" else (0 if dt.kind == "u" else int(np.iinfo(dt).min))


@functools.cache
def _zstd() -> bool:
    """Whether this GDAL writes ZSTD-compressed GeoTIFFs (GDAL >= 2.3 built with libzstd)."""
    try:
        with warnings.catch_warnings(), rasterio.io.MemoryFile() as mem:
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with mem.open(driver="GTiff", width=8, height=8, count=1, dtype="uint8", compress="zstd") as dst:
                dst.write(np.zeros((1, 8, 8), np.uint8))
            with mem.open() as dst:
                return dst.compression is not None and dst.compression.name.lower() == "zstd"
    except Exception:  # noqa: BLE001 -- any failure means: not available
        return False


def output_compression() -> dict:
    """Creation options for outputs: ZSTD level 1, lossless and about four times faster
    than DEFLATE at a similar size (what the writer costs shows in the pipeline's time);
    DEFLATE where GDAL lacks ZSTD."""
    return dict(compress="zstd", zstd_level=1) if _zstd() else dict(compress="deflate", zlevel=1)


JOINS = ("geotiff", "vrt", "cog")  # one GeoTIFF; a VRT naming the parts, left as written; a cloud-optimized GeoTIFF
OVERVIEWS = ("auto", "yes", "no")  # "auto": for outputs longer than OVERVIEW_SIDE px on a side
OVERVIEW_SIDE = 4096
OVERVIEW_MIN = 256  # halved until the smallest overview fits in this many px (as gdaladdo does)


def overview_factors(width: int, height: int, overviews: str = "auto") -> list[int]:
    """Reduction factors (2, 4, 8, ...) of the overviews an output of this size gets; [] for none."""
    if overviews not in OVERVIEWS:
        raise InputError(f"overviews must be one of {', '.join(OVERVIEWS)}, got {overviews!r}")
    if overviews == "no" or (overviews == "auto" and max(width, height) <= OVERVIEW_SIDE):
        return []
    factors: list[int] = []
    while max(width, height) / (2 ** len(factors)) > OVERVIEW_MIN:
        factors.append(2 ** (len(factors) + 1))
    return factors


_WRITER: ThreadPoolExecutor | None = None
_WRITER_NAME = "satgen-write"
ASYNC_WRITES = True  # False: GeoTiffWriter writes on the caller's thread (for comparing in the bench)


def _writer_thread() -> ThreadPoolExecutor:
    """The one thread that writes outputs' block rows (GeoTiffWriter._flush), made on first use."""
    global _WRITER
    if _WRITER is None:
        _WRITER = ThreadPoolExecutor(1, thread_name_prefix=_WRITER_NAME, initializer=gdal_thread_settings)
    return _WRITER


def colour_bands(band_names: list[str]) -> list[str] | None:
    """The colour interpretation of an output's bands named red, green, blue (and alpha), else None."""
    names = [n.lower() for n in band_names]
    return names if names in (["red", "green", "blue"], ["red", "green", "blue", "alpha"]) else None


class GeoTiffWriter:
    """Writes rows top to bottom into an open GeoTIFF, in whole block rows; on close, builds
    internal overviews when asked (`overviews`, see overview_factors), by averaging or, for
    `categorical` outputs (classes, map colours, masks), by taking one pixel. `tags`: the
    dataset's metadata. `rows`: only rows [r0, r1) of the raster described, as a file of its
    own (its transform shifted down r0 rows, no overviews): a process's part of an output
    that several write."""

    def __init__(self, path: str, *, width: int, height: int, dtype: str, crs, transform,
                 nodata, band_names: list[str], overviews: str = "no", categorical: bool = False,
                 tags: dict[str, str] | None = None, rows: tuple[int, int] | None = None):
        self.factors = overview_factors(width, height, overviews)
        if rows is not None:
            height, self.factors = rows[1] - rows[0], []
            transform = None if transform is None else transform * Affine.translation(0, rows[0])
        self.categorical = categorical
        tiled = width >= BLOCK and height >= BLOCK
        kind = np.dtype(dtype).kind
        # no transform (an input without georeferencing): none written, not an identity that flips the image
        georef = dict(crs=crs, transform=transform) if transform is not None else {}
        profile = dict(driver="GTiff", width=width, height=height, count=len(band_names), dtype=dtype,
                       **georef, nodata=nodata, **output_compression(),
                       predictor=3 if kind == "f" else 2, BIGTIFF="IF_SAFER", tiled=tiled)
        if tiled:
            profile.update(blockxsize=BLOCK, blockysize=BLOCK)
        if cpu_threads() > 2:
            # GDAL compresses a block row's blocks on that many threads of its own. On two cores the
            # writer thread compressing alone already shares them with the forward pass (the null model
            # ran at 0.99 of gdal_translate), so only machines with cores to spare get them
            profile.update(num_threads=cpu_threads())
        self.block_rows = BLOCK if tiled else 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            self.dst = rasterio.open(path, "w", **profile)
        for i, name in enumerate(band_names, start=1):
            self.dst.set_band_description(i, name)
        colours = colour_bands(band_names)
        if colours:
            self.dst.colorinterp = [ColorInterp[c] for c in colours]
        if tags:
            self.dst.update_tags(**tags)
        # rows wait here until whole block rows can be written: one buffer, reused
        self._buffer = np.empty((len(band_names), 0, width), dtype)
        self._filled = 0  # rows of the buffer holding data not yet written
        self._next_row = 0  # raster row of the buffer's first row
        self._pending: Future | None = None  # the block rows being written (one at a time), see _flush

    def next_rows(self, n: int) -> np.ndarray:
        """A (bands, n, width) array for the next n rows, to be filled by the caller;
        it is written (in whole block rows) on a later call or on close()."""
        self._flush(whole_blocks=True)
        if self._filled + n > self._buffer.shape[1]:
            grown = np.empty((self._buffer.shape[0], self._filled + n, self._buffer.shape[2]), self._buffer.dtype)
            grown[:, :self._filled] = self._buffer[:, :self._filled]
            self._buffer = grown
        rows = self._buffer[:, self._filled:self._filled + n]
        self._filled += n
        return rows

    def write_rows(self, rows: np.ndarray) -> None:
        """Append (bands, n, width) rows below those already given."""
        self.next_rows(rows.shape[1])[:] = rows

    def _flush(self, whole_blocks: bool) -> None:
        count = self._filled - self._filled % self.block_rows if whole_blocks else self._filled
        if count == 0:
            return
        # written (and compressed, in GDAL, without the GIL) by a writer thread while the caller goes on:
        # one write in flight, so memory holds one more copy of a row of blocks at most
        block, window = self._buffer[:, :count].copy(), Window(0, self._next_row, self._buffer.shape[2], count)
        self._wait()
        if ASYNC_WRITES:
            self._pending = _writer_thread().submit(self._write, block, window)
        else:
            self._write(block, window)
        self._next_row += count
        rest = self._filled - count
        self._buffer[:, :rest] = self._buffer[:, count:self._filled]
        self._filled = rest

    def _write(self, block: np.ndarray, window: Window) -> None:
        try:
            # GDAL's settings are per thread; the writer thread holds GDAL_ENV already (gdal_thread_settings)
            with contextlib.nullcontext() if threading.current_thread().name.startswith(_WRITER_NAME) \
                    else rasterio.Env(**GDAL_ENV):
                self.dst.write(block, window=window)
        except rasterio.errors.RasterioIOError as exc:  # the input is not read here: a failed write
            raise OutputError(f"writing the GeoTIFF failed ({exc}); the disk may be full or a file-size limit "
                              f"reached") from None

    def _wait(self) -> None:
        """Wait for the write in flight; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        self._flush(whole_blocks=False)
        self._wait()
        if self._next_row != self.dst.height:
            raise RuntimeError(f"wrote {self._next_row} of {self.dst.height} rows")  # a pipeline bug, not user error
        self.dst.close()  # GDAL writes the last blocks and the directory here, and does not say if that fails
        verify_geotiff(self.dst.name)
        if self.factors:
            self._build_overviews()

    def _build_overviews(self) -> None:
        from rasterio.enums import Resampling

        resampling = Resampling.nearest if self.categorical else Resampling.average
        # GDAL reads the file back; on one thread (GDAL_ENV): GDAL 3.6's threaded decoding was seen to
        # deadlock while building overviews of an 8192 px output
        try:
            with rasterio.open(self.dst.name, "r+") as dst:
                dst.build_overviews(self.factors, resampling)
        except rasterio.errors.RasterioIOError as exc:
            raise OutputError(f"writing the overviews failed ({exc}); the disk may be full or a file-size limit "
                              f"reached") from None
        for level in range(len(self.factors)):
            verify_geotiff(self.dst.name, overview_level=level)

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the error being handled is the one that counts
            self._wait()
        self.dst.close()


def verify_geotiff(path: str, overview_level: int | None = None) -> None:
    """Raise OutputError unless the GeoTIFF at `path` is complete: it opens, and every block of
    every band is there and lies inside the file (a write cut short by a full disk or a file-size
    limit leaves blocks past the end, or none at all, while GDAL's close reports nothing). For the
    outputs written here, which are never sparse: a sparse file's empty blocks count as missing."""
    try:
        size = os.path.getsize(path)
        with warnings.catch_warnings():  # a patch or preview without georeferencing is fine here
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            src = rasterio.open(path, **({} if overview_level is None else {"overview_level": overview_level}))
        with src:
            bands = [1] if src.interleaving == Interleaving.pixel else list(src.indexes)
            block_h, block_w = src.block_shapes[0]
            for b in bands:
                for y in range(math.ceil(src.height / block_h)):
                    for x in range(math.ceil(src.width / block_w)):
                        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=b) or 0)
                        length = int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=b) or 0)
                        if offset <= 0 or length <= 0 or offset + length > size:
                            where = "" if overview_level is None else f" of overview {overview_level + 1}"
                            raise OutputError(f"the GeoTIFF was not written completely (block {x}, {y} of band "
                                              f"{b}{where} missing); the disk may be full or a file-size limit "
                                              f"reached")
    except rasterio.errors.RasterioIOError as exc:
        raise OutputError(f"the GeoTIFF written cannot be read back ({str(exc).replace(path, 'the file')}); "
                          f"the disk may be full or a file-size limit reached") from None
