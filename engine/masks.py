"""Cloud masks on the input raster's pixel grid, read window by window, for inpainting.

Every source answers `read(row0, row1, col0, col1)` with a boolean array,
True = cloud, on the INPUT raster's grid (its CRS, transform and size), for a
window inside the raster:

- `RasterMask`: a mask raster, non-zero = cloud, in any CRS, resolution or
  extent, warped onto the grid (nearest neighbour) through a GDAL WarpedVRT, so
  windowed reads stay small; outside its extent and at its nodata: clear.
- `VectorMask`: polygons from a GeoPackage or GeoJSON layer, any CRS, burnt
  into each window (pixel centres inside).
- `QAMask`: a bit test (`QAExpression`) on a QA band, of the input itself or
  of a separate raster warped like `RasterMask`; its nodata: clear.
- `DetectedMask`: the spectral cloud test below, on the input's own bands.
- `CombinedMask`: the OR of sources, dilated by a disk; it reads a halo
  around each window, so results never depend on where windows fall.
`open_mask` builds the combination from front-end parameters.

Cloud detection (`DetectedMask`)
--------------------------------
A per-pixel spectral test in the spirit of Fmask's potential-cloud tests
(Zhu & Woodcock 2012), on top-of-atmosphere or surface reflectance. Band
roles come from band descriptions (Sentinel-2 B02 B03 B04 B08 B11; Landsat-8/9
OLI B2..B6 in capitals; Landsat TM/ETM+ b1..b5 in lower case; or the names
blue, green, red, nir, swir1) or are given explicitly. Reflectance =
DN * scale + offset, the scale given or estimated: floats of at most ~5 are
reflectance, 8-bit data / 255, Sentinel-2 and TM/ETM+ integers / 10000,
other 16-bit data whose darkest pixels exceed 4500 are Landsat-8/9 Level-1
DN (x 2e-5 - 0.1), else / 10000. Haze is then removed from the visible
bands by dark-object subtraction (the 1st percentile of a sample of the
scene, capped at `HAZE_CAP`), so hazy winter scenes are not all "bright".
A pixel is cloud when all of the tests its bands allow hold (thresholds in
`DETECTOR`):

- bright: the darkest visible band (blue, green, red) > `bright`;
- white: (max - min) / mean of the visible bands < `white` (2+ visible bands);
- haze (HOT): blue - 0.5 red > `hot` (with blue);
- infrared: nir > `nir`, and NDVI (nir - red) / (nir + red) < `ndvi`;
- not snow: NDSI (green or red vs swir1) < `ndsi`, or swir1 > `swir1`
  (snow is dark in SWIR, clouds are not; with swir1 only).
Red and NIR are required, plus blue, green or swir1. Nodata pixels are clear.

The seven thresholds were fitted (`fit_detector`: coordinate search
maximising the mean cloud IoU of the two data sets) on half of the real
reference data from `make data`, and measured on the other, held-out half
(`detection_accuracy`, `make evaluate`):

- Landsat-8 OLI near Pensacola (B1-B7 L1 DN) against its BQA high-confidence
  cloud bits (14-15 == 3); fitted on a 128-px checkerboard's black squares,
  measured on its white ones (183,808 px, 6.3 % cloud; all-clear would score
  0.937): overall accuracy 0.965, precision 0.745, recall 0.675, cloud IoU
  0.548. The same without SWIR (blue, green, red, nir only: the band set of
  the 10-m Sentinel-2 samples) scores the same (no snow in the scene).
- Landsat-5/7 TM/ETM+ time series in Colorado (b3 b4 b5: red, nir, swir1
  surface reflectance) against Fmask (cloud = 4, fill excluded); fitted on
  the even of its 105 dates, measured on the 52 odd ones (170,727 px, 31 %
  cloud; all-clear would score 0.690): overall accuracy 0.907, precision
  0.880, recall 0.811, cloud IoU 0.730.
It misses thin cloud and cloud edges (the BQA's and Fmask's clouds include
a margin: dilate the mask a few pixels for inpainting), and without thermal
bands it takes some bright sand, surf and roofs for cloud: 0.2 % of the
cloud-free Sentinel-2 Virginia sample (beaches), 1.1 % of the Havel sample
(the thicker parts of its cloud streaks), by eye.
"""

from __future__ import annotations

import ast
import contextlib
import math
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from .errors import InputError
from .raster import BlockReader, open_raster
from .vector import is_vector_path, rasterize_features, read_features


# --- grid --------------------------------------------------------------------------------------------------------

NO_MASK = ("no cloud mask given: give a mask layer (raster or polygons), a QA band with an expression such as "
           "'bits(14, 15) == 3', or turn on detection")


@dataclass(frozen=True)
class Grid:
    """The input raster's pixel grid, on which every mask is delivered."""

    crs: object  # rasterio.crs.CRS
    transform: object  # affine.Affine
    width: int
    height: int

    @classmethod
    def of(cls, src) -> "Grid":
        """The grid of an open rasterio dataset."""
        return cls(src.crs, src.transform, src.width, src.height)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        return array_bounds(self.height, self.width, self.transform)[:4]

    def window_transform(self, row0: int, col0: int):
        """The affine transform of a window whose top-left pixel is (row0, col0)."""
        return self.transform * self.transform.translation(col0, row0)

    def same_as(self, src) -> bool:
        """Whether an open dataset lies exactly on this grid."""
        return (src.crs == self.crs and src.width == self.width and src.height == self.height
                and src.transform.almost_equals(self.transform))


def _fmt_bounds(bounds, crs) -> str:
    digits = 6 if crs is not None and crs.is_geographic else 1
    return "(" + ", ".join(f"{v:.{digits}f}" for v in bounds) + ")"


def _boxes_overlap(a, b) -> bool:
    return all(map(math.isfinite, (*a, *b))) and a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def _safe_transform_bounds(src_crs, dst_crs, bounds):
    try:
        return transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)
    except (CRSError, ValueError, RasterioError):
        return (math.nan,) * 4


def _check_overlap(crs, bounds, grid: Grid, what: str) -> None:
    """InputError when `bounds` (in `crs`) miss the grid's extent. Tested in `crs`, into which the
    (local) grid transforms well; a mask's own extent may not (a world mask has no UTM bounds)."""
    grid_there = _safe_transform_bounds(grid.crs, crs, grid.bounds)
    if all(map(math.isfinite, grid_there)):
        overlaps = _boxes_overlap(grid_there, bounds)
    else:
        overlaps = _boxes_overlap(_safe_transform_bounds(crs, grid.crs, bounds), grid.bounds)
    if not overlaps:
        here = _safe_transform_bounds(crs, grid.crs, bounds)
        raise InputError(f"the {what} does not overlap the input raster; check that it covers the same area "
                         f"(its bounds in the input's CRS {_fmt_bounds(here, grid.crs)}, input bounds "
                         f"{_fmt_bounds(grid.bounds, grid.crs)})")


# --- sources -----------------------------------------------------------------------------------------------------

class MaskSource:
    """A cloud mask on the input grid: `read` windows of it; `close` when done."""

    grid: Grid

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        """Boolean (row1 - row0, col1 - col0) array, True = cloud."""
        raise NotImplementedError

    def close(self) -> None:
        """Release open datasets (no-op by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_window(self, row0: int, row1: int, col0: int, col1: int) -> None:
        if not (0 <= row0 <= row1 <= self.grid.height and 0 <= col0 <= col1 <= self.grid.width):
            raise ValueError(f"window rows {row0}:{row1}, cols {col0}:{col1} is not inside the "
                             f"{self.grid.height} x {self.grid.width} raster; clip it first")


class GridBand:
    """One band of a raster, read on `grid`: directly when it lies on the grid, else through a
    WarpedVRT (nearest neighbour unless told; outside its extent and at its nodata: invalid)."""

    reader = None

    def __init__(self, path, band: int | None, grid: Grid, what: str, src=None,
                 resampling: Resampling = Resampling.nearest):
        self.owned = src is None
        if src is None and not os.path.exists(path) and "://" not in str(path) and not str(path).startswith("/vsi"):
            raise InputError(f"{what} {path} does not exist; check the path")
        self.src = open_raster(path) if src is None else src
        try:
            if band is None:
                if self.src.count != 1:
                    raise InputError(f"{what} {path} has {self.src.count} bands; choose which band to use")
                band = 1
            if not 1 <= band <= self.src.count:
                raise InputError(f"band {band} of {what} {path} does not exist: it has bands 1..{self.src.count}")
            self.band, self.dtype = band, np.dtype(self.src.dtypes[band - 1])
            if grid.same_as(self.src):
                self.reader = self.src
                return
            if self.src.crs is None:
                raise InputError(f"{what} {path} has no coordinate reference system, so it cannot be placed on the "
                                 f"input raster; assign its CRS (in QGIS: Raster > Projections > Assign Projection)")
            _check_overlap(self.src.crs, self.src.bounds, grid, f"{what} {path}")
            self.reader = WarpedVRT(self.src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                    height=grid.height, resampling=resampling,
                                    add_alpha=self.src.nodata is None)
        except BaseException:
            self.close()
            raise

    def read(self, row0: int, row1: int, col0: int, col1: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, valid) of the window."""
        window = Window(col0, row0, col1 - col0, row1 - row0)
        data = self.reader.read(self.band, window=window)
        valid = self.reader.read_masks(self.band, window=window) > 0
        if self.dtype.kind == "f":
            valid &= np.isfinite(data)
        return data, valid

    def close(self) -> None:
        if self.reader is not None and self.reader is not self.src:
            self.reader.close()
        if self.owned:
            self.src.close()
        self.reader = None


class RasterMask(MaskSource):
    """A mask raster, non-zero = cloud; any CRS, resolution and extent (nearest neighbour)."""

    def __init__(self, path: str | os.PathLike, grid: Grid, band: int = 1):
        self.grid = grid
        self.band = GridBand(path, band, grid, "mask raster")

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        self._check_window(row0, row1, col0, col1)
        data, valid = self.band.read(row0, row1, col0, col1)
        return valid & (data != 0)

    def close(self) -> None:
        self.band.close()


class VectorMask(MaskSource):
    """Polygons of a GeoPackage / GeoJSON layer (any CRS), cloud where a pixel's centre is inside."""

    def __init__(self, path: str | os.PathLike, grid: Grid, layer: str | None = None, all_touched: bool = False):
        self.grid, self.all_touched = grid, all_touched
        features = read_features(path, layer)
        self.geoms = features.reprojected(grid.crs)
        self.boxes = np.array([g.bounds for g in self.geoms], dtype=float).reshape(-1, 4)
        _check_overlap(features.crs, features.bounds(), grid, f"mask layer {features.layer} of {path}")

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        self._check_window(row0, row1, col0, col1)
        transform = self.grid.window_transform(row0, col0)
        left, bottom, right, top = array_bounds(row1 - row0, col1 - col0, transform)
        b = self.boxes
        hits = np.flatnonzero((b[:, 0] <= right) & (b[:, 2] >= left) & (b[:, 1] <= top) & (b[:, 3] >= bottom))
        return rasterize_features([self.geoms[i] for i in hits], transform, (row1 - row0, col1 - col0),
                                  self.all_touched)


class QAMask(MaskSource):
    """Cloud where `expression` holds on a QA band (of the input or of a separate raster); nodata = clear."""

    def __init__(self, path: str | os.PathLike, band: int | None, expression: "str | QAExpression", grid: Grid):
        self.grid = grid
        self.expression = expression if isinstance(expression, QAExpression) else QAExpression(expression)
        self.band = GridBand(path, band, grid, "QA raster")
        if self.band.dtype.kind not in "iu":
            name = self.band.dtype.name
            self.band.close()
            raise InputError(f"band {self.band.band} of {path} holds {name} values, not integers; a QA band "
                             f"holds integer bit flags or classes: choose the QA band")

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        self._check_window(row0, row1, col0, col1)
        data, valid = self.band.read(row0, row1, col0, col1)
        return valid & self.expression.evaluate(data)

    def close(self) -> None:
        self.band.close()


class CombinedMask(MaskSource):
    """Cloud where any source says so, then dilated by a disk of `dilate` px.

    Each window is read with a halo of `dilate` px (clipped to the raster), so
    a mask read in windows equals the mask read whole.
    """

    def __init__(self, sources: Sequence[MaskSource], grid: Grid, dilate: int = 0):
        if not sources:
            raise InputError(NO_MASK)
        if dilate < 0 or int(dilate) != dilate:
            raise InputError(f"mask dilation must be a whole number of pixels, 0 or more; got {dilate}")
        self.sources, self.grid, self.dilate = list(sources), grid, int(dilate)

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        self._check_window(row0, row1, col0, col1)
        p = self.dilate
        r0, r1 = max(0, row0 - p), min(self.grid.height, row1 + p)
        c0, c1 = max(0, col0 - p), min(self.grid.width, col1 + p)
        mask = np.zeros((r1 - r0, c1 - c0), bool)
        for source in self.sources:
            mask |= source.read(r0, r1, c0, c1)
        if p:
            mask = dilate(mask, p)
        return mask[row0 - r0:row1 - r0, col0 - c0:col1 - c0]

    def close(self) -> None:
        for source in self.sources:
            source.close()


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation of a 2-D mask by a disk of radius `pixels` (offsets with dy^2 + dx^2 <= r^2).

    The disk is a stack of horizontal runs: for each row offset, a running-sum
    dilation along rows, shifted vertically; O(pixels x size) time.
    """
    mask = np.asarray(mask, bool)
    r = int(pixels)
    if r <= 0 or not mask.any():
        return mask.copy()
    rows, cols = mask.shape
    runs: dict[int, np.ndarray] = {}
    out = np.zeros_like(mask)
    for dy in range(-r, r + 1):
        if abs(dy) >= rows:
            continue
        half = math.isqrt(r * r - dy * dy)
        if half not in runs:
            padded = np.zeros((rows, cols + 2 * half + 1), np.int32)
            np.cumsum(mask, axis=1, out=padded[:, half + 1:cols + half + 1])
            padded[:, cols + half + 1:] = padded[:, cols + half:cols + half + 1]
            runs[half] = (padded[:, 2 * half + 1:] - padded[:, :cols]) > 0
        run = runs[half]
        if dy >= 0:
            out[dy:] |= run[:rows - dy]
        else:
            out[:dy] |= run[-dy:]
    return out


# --- QA expressions ----------------------------------------------------------------------------------------------

_QA_EXAMPLES = ("e.g. 'bits(14, 15) == 3' (Landsat-8 Collection-1 BQA high-confidence cloud) or "
                "'qa in (8, 9, 10)' (Sentinel-2 SCL cloud classes)")
_BINOPS = {ast.BitAnd: np.bitwise_and, ast.BitOr: np.bitwise_or, ast.BitXor: np.bitwise_xor,
           ast.LShift: np.left_shift, ast.RShift: np.right_shift}
_CMPOPS = {ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
           ast.Gt: np.greater, ast.GtE: np.greater_equal}
_FUNCS = {"bits": 2, "bit": 1}
_MAX_LEN = 1000


class QAExpression:
    """A bit test on a QA band's integer values, parsed safely (Python's `ast`, a whitelist, never eval).

    The QA value is `qa`; `bit(n)` is its bit n (0 or 1), `bits(lo, hi)` the
    value of bits lo..hi inclusive (bits(14, 15) is 0..3). Allowed: integer
    literals (12, 0x0C, 0b1100), & | ^ ~ >> <<, comparisons == != < <= > >=
    (chained: 1 <= bits(5, 6) < 3), `in (a, b, ...)` / `not in (...)`,
    and / or / not, parentheses. An integer result means "non-zero".

    Precedence is Python's, not C's: shifts, then &, then ^, then |, then
    comparisons, then not, and, or. So "(qa >> 3) & 1 == 1" and "qa & 8 == 8"
    test bit 3 as meant, and "bit(4) or bits(14, 15) >= 2" needs no brackets.
    `~` is bitwise (on integers); negate a test with `not`.
    """

    def __init__(self, text: str):
        self.text = text if isinstance(text, str) else str(text)
        stripped = self.text.strip()
        if not stripped:
            self._fail("it is empty; write a test on the QA band value qa")
        if len(stripped) > _MAX_LEN:
            self._fail(f"it is longer than {_MAX_LEN} characters")
        try:
            tree = ast.parse(stripped, mode="eval")
        except SyntaxError as exc:
            col = exc.offset or 0
            hint = "; compare with ==, not =" if re.search(r"(?<![=!<>])=(?!=)", stripped) else ""
            self._fail(f"syntax error ({exc.msg}) at column {col}: {stripped[max(col - 1, 0):][:20]!r}{hint}")
        except (RecursionError, MemoryError, ValueError):
            self._fail("it is nested too deeply")
        self._source = stripped
        self._uses_qa = False
        try:
            self._check(tree.body)
        except RecursionError:
            self._fail("it is nested too deeply")
        if not self._uses_qa:
            self._fail("it never reads the QA value (use qa, bit(n) or bits(lo, hi))")
        self.tree = tree.body

    def __repr__(self) -> str:
        return f"QAExpression({self.text!r})"

    def _fail(self, problem: str, node: ast.AST | None = None):
        where = ""
        if node is not None:
            segment = ast.get_source_segment(self._source, node) or ""
            where = f" at column {node.col_offset + 1} ({segment[:40]!r})"
        raise InputError(f"QA expression {self.text!r} cannot be used: {problem}{where}; write a test on the "
                         f"QA value qa with bit(n), bits(lo, hi), integers, & | ^ ~ >> <<, comparisons, in, "
                         f"and/or/not, {_QA_EXAMPLES}")

    def _check(self, node: ast.AST) -> None:
        """Raise InputError unless every node is on the whitelist."""
        if isinstance(node, ast.Constant):
            self._literal(node)
        elif isinstance(node, ast.Name):
            if node.id != "qa":
                self._fail(f"unknown name {node.id!r} (the QA value is qa)", node)
            self._uses_qa = True
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                self._fail("only the bit operators & | ^ ~ >> << are allowed, not arithmetic", node)
            if isinstance(node.op, (ast.LShift, ast.RShift)) and isinstance(node.right, ast.Constant) \
                    and isinstance(node.right.value, int) and not 0 <= node.right.value < 63:
                self._fail("shifts must be by 0 to 62 bits", node)
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Invert, ast.Not)):
                self._fail("negative numbers and unary + / - are not allowed", node)
            if isinstance(node.op, ast.Invert) and isinstance(node.operand, (ast.Compare, ast.BoolOp, ast.UnaryOp)) \
                    and not (isinstance(node.operand, ast.UnaryOp) and isinstance(node.operand.op, ast.Invert)):
                self._fail("~ flips the bits of an integer; negate a test with not", node)
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.Compare):
            self._check(node.left)
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not isinstance(right, (ast.Tuple, ast.List, ast.Set)) or not right.elts:
                        self._fail("'in' needs a bracketed list of integers, e.g. qa in (8, 9, 10)", right)
                    for element in right.elts:
                        if not isinstance(element, ast.Constant):
                            self._fail("the list after 'in' may hold only integer literals", element)
                        self._literal(element)
                elif type(op) in _CMPOPS:
                    self._check(right)
                else:
                    self._fail("only == != < <= > >= and in / not in compare values ('is' is not allowed)", node)
        elif isinstance(node, ast.Call):
            self._check_call(node)
        elif isinstance(node, ast.Attribute):
            self._fail("attribute access is not allowed", node)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            self._fail("a list is only allowed after 'in'", node)
        elif isinstance(node, ast.Lambda):
            self._fail("lambdas are not allowed", node)
        else:
            self._fail(f"{type(node).__name__.lower()} expressions are not allowed", node)

    def _literal(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            kind = {bool: "booleans", float: "decimal numbers", str: "strings"}.get(type(value), "this literal")
            self._fail(f"{kind} are not allowed, only integers (QA values are integer flags)", node)
        if not 0 <= value < 2 ** 63:
            self._fail("integers must be between 0 and 2**63 - 1", node)

    def _check_call(self, node: ast.Call) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCS:
            self._fail("the only functions are bit(n) and bits(lo, hi)", node)
        if node.keywords or len(node.args) != _FUNCS[name]:
            self._fail(f"{name} takes {_FUNCS[name]} integer argument(s): "
                       f"{'bit(n)' if name == 'bit' else 'bits(lo, hi)'}", node)
        for arg in node.args:
            if not isinstance(arg, ast.Constant):
                self._fail(f"the arguments of {name} must be integer literals", arg)
            self._literal(arg)
            if arg.value > 62:
                self._fail("bit numbers go from 0 to 62", arg)
        if name == "bits" and node.args[0].value > node.args[1].value:
            self._fail("bits(lo, hi) takes the lowest bit first, e.g. bits(14, 15)", node)
        self._uses_qa = True

    def evaluate(self, qa: np.ndarray) -> np.ndarray:
        """Boolean array of `qa`'s shape: where the expression holds."""
        qa = np.asarray(qa)
        result = self._eval(self.tree, qa.astype(np.int64, copy=False))
        return np.broadcast_to(_truth(result), qa.shape).copy()

    def _eval(self, node: ast.AST, qa: np.ndarray):
        if isinstance(node, ast.Constant):
            return np.int64(node.value)
        if isinstance(node, ast.Name):
            return qa
        if isinstance(node, ast.Call):
            lo = node.args[0].value
            hi = node.args[-1].value
            return (qa >> lo) & ((1 << (hi - lo + 1)) - 1)
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, qa), self._eval(node.right, qa)
            if _is_bool(left) and _is_bool(right) and type(node.op) in (ast.BitAnd, ast.BitOr, ast.BitXor):
                return _BINOPS[type(node.op)](left, right)
            return _BINOPS[type(node.op)](_as_int(left), _as_int(right))
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, qa)
            if isinstance(node.op, ast.Not):
                return ~_truth(operand)
            if _is_bool(operand):
                self._fail("~ flips the bits of an integer; negate a test with not", node)
            return ~operand
        if isinstance(node, ast.BoolOp):
            values = [_truth(self._eval(v, qa)) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = values[0]
            for v in values[1:]:
                out = combine(out, v)
            return out
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, qa)
            out = None
            for op, right_node in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    members = np.array([e.value for e in right_node.elts], np.int64)
                    test = np.isin(_as_int(left), members, invert=isinstance(op, ast.NotIn))
                    right = None
                else:
                    right = self._eval(right_node, qa)
                    test = _CMPOPS[type(op)](_as_int(left), _as_int(right))
                out = test if out is None else out & test
                left = right
            return out
        raise AssertionError(f"unchecked node {node!r}")  # _check admits nothing else


def _is_bool(x) -> bool:
    return np.asarray(x).dtype == bool


def _as_int(x):
    return np.asarray(x).astype(np.int64) if _is_bool(x) else x


def _truth(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype == bool else x != 0


# --- cloud detection ---------------------------------------------------------------------------------------------

ROLES = ("blue", "green", "red", "nir", "swir1")
_SCHEMES = {
    "sentinel-2": {"B02": "blue", "B2": "blue", "B03": "green", "B3": "green", "B04": "red", "B4": "red",
                   "B08": "nir", "B8": "nir", "B8A": "nir", "B11": "swir1"},
    "oli": {"B2": "blue", "B3": "green", "B4": "red", "B5": "nir", "B6": "swir1"},
    "tm": {"B1": "blue", "B2": "green", "B3": "red", "B4": "nir", "B5": "swir1"},
}
_GENERIC = {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "near infrared": "nir",
            "nir08": "nir", "swir1": "swir1", "swir": "swir1", "swir16": "swir1", "swir 1": "swir1"}


@dataclass(frozen=True)
class DetectorThresholds:
    """Thresholds of the spectral cloud test, on reflectance (0..1)."""

    bright: float  # darkest visible band above
    white: float  # spread of the visible bands over their mean below
    hot: float  # blue - 0.5 red above
    nir: float  # nir above
    ndvi: float  # (nir - red) / (nir + red) below
    ndsi: float  # (green or red - swir1) / (... + swir1) below, or
    swir1: float  # swir1 above


# fit_detector() on the fitting halves (module docstring), after haze removal
DETECTOR = DetectorThresholds(bright=0.07, white=1.1, hot=0.03, nir=0.24, ndvi=0.8, ndsi=0.15, swir1=0.18)


def band_roles(descriptions: Sequence[str | None]) -> tuple[dict[str, int], str]:
    """({role: 1-based band}, naming scheme) read from band descriptions; roles not found are left out.

    Sentinel-2 (B02.., B8A, B11, or B12 present), Landsat-8/9 OLI (B1..B7 in
    capitals), Landsat TM/ETM+ (b1..b7 in lower case), or generic role names.
    """
    names = [(d or "").strip() for d in descriptions]
    upper = [n.upper() for n in names]
    roles: dict[str, int] = {}
    for i, n in enumerate(names):
        role = _GENERIC.get(n.lower())
        if role and role not in roles:
            roles[role] = i + 1
    if roles:
        return roles, "generic"
    numbered = [re.fullmatch(r"(?:SR_)?B(\d+A?)", u) for u in upper]
    if not any(numbered):
        return {}, "unknown"
    if any(re.fullmatch(r"B0\d|B8A|B12", u) for u in upper):
        scheme = "sentinel-2"
    elif any(n.startswith("b") for n, m in zip(names, numbered) if m):
        scheme = "tm"
    else:
        scheme = "oli"
    table = _SCHEMES[scheme]
    for i, u in enumerate(upper):
        key = u[3:] if u.startswith("SR_") else u
        role = table.get(key)
        if role and role not in roles:
            roles[role] = i + 1
    return roles, scheme


def parse_band_roles(text: str | Mapping[str, int]) -> dict[str, int]:
    """{role: band} from "red=3,nir=4,swir1=5" (or a mapping), checked."""
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        items = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            role, _, band = part.partition("=")
            if not band.strip().isdigit():
                raise InputError(f"cannot read detection bands {text!r}: write role=band pairs, "
                                 f"e.g. blue=2,green=3,red=4,nir=5,swir1=6")
            items.append((role, int(band)))
    roles = {}
    for role, band in items:
        role = str(role).strip().lower()
        if role not in ROLES:
            raise InputError(f"unknown band role {role!r} in detection bands; the roles are {', '.join(ROLES)}")
        roles[role] = int(band)
    return roles


def estimate_scale(sample: np.ndarray, dtype, scheme: str) -> tuple[float, float]:
    """(scale, offset) turning values into reflectance, guessed from a sample of valid values."""
    dtype = np.dtype(dtype)
    sample = sample[np.isfinite(sample)] if dtype.kind == "f" else sample
    if sample.size == 0:
        return 1e-4, 0.0
    if dtype.kind == "f":
        return (1.0, 0.0) if np.percentile(sample, 99) <= 5 else (1e-4, 0.0)
    if dtype.itemsize == 1:
        return 1 / 255, 0.0
    if scheme in ("sentinel-2", "tm"):
        return 1e-4, 0.0
    return (2e-5, -0.1) if np.percentile(sample, 1) >= 4500 else (1e-4, 0.0)


# most haze (path reflectance) a band may lose in dark-object subtraction, so that a scene of clouds keeps its
# clouds; none in NIR and SWIR, where haze is weak and land is never dark (only water is)
HAZE_CAP = {"blue": 0.12, "green": 0.09, "red": 0.06, "nir": 0.0, "swir1": 0.0}


def haze_offsets(sample: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Dark-object haze per band (Chavez 1988): the 1st percentile of a reflectance sample of the
    scene, at least 0 and at most `HAZE_CAP`; subtracted before the cloud test."""
    out = {}
    for role, values in sample.items():
        values = values[np.isfinite(values)]
        dark = float(np.percentile(values, 1)) if values.size else 0.0
        out[role] = min(max(dark, 0.0), HAZE_CAP[role])
    return out


def cloud_features(refl: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The quantities the cloud test thresholds, from reflectance by role."""
    eps = 1e-6
    visible = np.stack([refl[k] for k in ("blue", "green", "red") if k in refl])
    red, nir = refl["red"], refl["nir"]
    f = {"bright": visible.min(axis=0), "nir": nir, "ndvi": (nir - red) / np.maximum(nir + red, eps)}
    if len(visible) > 1:
        f["white"] = (visible.max(axis=0) - visible.min(axis=0)) / np.maximum(visible.mean(axis=0), eps)
    if "blue" in refl:
        f["hot"] = refl["blue"] - 0.5 * red
    if "swir1" in refl:
        vis = refl.get("green", red)
        f["ndsi"] = (vis - refl["swir1"]) / np.maximum(vis + refl["swir1"], eps)
        f["swir1"] = refl["swir1"]
    return f


def cloud_test(f: Mapping[str, np.ndarray], t: DetectorThresholds = DETECTOR) -> np.ndarray:
    """Boolean cloud test on `cloud_features` output."""
    cloud = (f["bright"] > t.bright) & (f["nir"] > t.nir) & (f["ndvi"] < t.ndvi)
    if "white" in f:
        cloud &= f["white"] < t.white
    if "hot" in f:
        cloud &= f["hot"] > t.hot
    if "ndsi" in f:
        cloud &= (f["ndsi"] < t.ndsi) | (f["swir1"] > t.swir1)
    return cloud


class DetectedMask(MaskSource):
    """Clouds found by the spectral test (module docstring) in the input raster's own bands.

    `roles` maps blue/green/red/nir/swir1 to 1-based bands ("red=3,nir=4" works
    too); by default they come from band descriptions. `scale`/`offset` turn
    values into reflectance; by default they are estimated.
    """

    def __init__(self, src, roles: Mapping[str, int] | str | None = None, *, scale: float | None = None,
                 offset: float = 0.0, grid: Grid | None = None, thresholds: DetectorThresholds = DETECTOR):
        self.owned = isinstance(src, (str, os.PathLike))
        self.src = open_raster(src) if self.owned else src
        try:
            self.grid = Grid.of(self.src)
            if grid is not None and not grid.same_as(self.src):
                raise InputError(f"cloud detection runs on the input raster itself, but {self.src.name} is not on "
                                 f"the input's grid; detect on the input raster")
            descriptions = ", ".join(d or "?" for d in self.src.descriptions)
            if roles:
                self.roles, scheme = parse_band_roles(roles), "given"
            else:
                self.roles, scheme = band_roles(self.src.descriptions)
            bad = {r: b for r, b in self.roles.items() if not 1 <= b <= self.src.count}
            if bad:
                raise InputError(f"detection band(s) {bad} do not exist: the raster has bands 1..{self.src.count}")
            if not {"red", "nir"} <= self.roles.keys() or len(self.roles.keys() & {"blue", "green", "swir1"}) == 0:
                raise InputError(
                    f"cloud detection needs the red and near-infrared bands plus blue, green or SWIR-1, but found "
                    f"{', '.join(f'{r}={b}' for r, b in self.roles.items()) or 'none'} in the band names "
                    f"({descriptions}); give the bands, e.g. blue=2,green=3,red=4,nir=5,swir1=6")
            self.order = [r for r in ROLES if r in self.roles]
            self.reader = BlockReader(self.src, [self.roles[r] for r in self.order])
            self.thresholds = thresholds
            sample = self._sample()
            if scale is None:
                dtype = self.src.dtypes[self.roles["red"] - 1]
                scale, offset = estimate_scale(sample.ravel(), dtype, scheme)
            self.scale, self.offset = float(scale), float(offset)
            self.haze = haze_offsets(dict(zip(self.order, sample * self.scale + self.offset)))
        except BaseException:
            self.close()
            raise

    def _sample(self, n: int = 5, size: int = 32) -> np.ndarray:
        """Valid values from an n x n spread of small windows (bounded reads on any raster size)."""
        h, w = self.src.height, self.src.width
        if h * w <= (n * size) ** 2:  # small: all of it
            data, valid = self.reader.read(0, h, 0, w)
            return (data[:, valid] if valid is not None else data.reshape(len(data), -1)).astype(np.float64)
        values = []
        for r in sorted(set(np.linspace(0, max(h - size, 0), n).astype(int))):
            for c in sorted(set(np.linspace(0, max(w - size, 0), n).astype(int))):
                data, valid = self.reader.read(r, min(r + size, h), c, min(c + size, w))
                values.append(data[:, valid] if valid is not None else data.reshape(len(data), -1))
        return np.concatenate(values, axis=1).astype(np.float64)

    def reflectance(self, row0: int, row1: int, col0: int, col1: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """({role: reflectance}, valid) of a window."""
        data, valid = self.reader.read(row0, row1, col0, col1)
        refl = data.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        valid = np.ones(data.shape[1:], bool) if valid is None else valid
        return {role: band - np.float32(self.haze[role]) for role, band in zip(self.order, refl)}, valid

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        self._check_window(row0, row1, col0, col1)
        refl, valid = self.reflectance(row0, row1, col0, col1)
        return valid & cloud_test(cloud_features(refl), self.thresholds)

    def close(self) -> None:
        if self.owned and getattr(self, "src", None) is not None:
            self.src.close()


# --- factory -----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def open_mask(grid: Grid, *, mask_path: str | os.PathLike | None = None, mask_layer: str | None = None,
              qa_path: str | os.PathLike | None = None, qa_band: int | None = None,
              qa_expression: str | None = None, detect: bool = False,
              input_path: str | os.PathLike | None = None, detect_bands: Mapping[str, int] | str | None = None,
              dilate: int = 0) -> Iterator[CombinedMask]:
    """The OR of the mask sources given, dilated by `dilate` px, on `grid`; closes them on exit.

    `mask_path`: a raster (non-zero = cloud) or a GeoPackage / GeoJSON polygon
    layer (`mask_layer` names it). `qa_expression` on band `qa_band` of
    `qa_path`, or of the input raster when no QA file is given. `detect`: the
    spectral test on `input_path`, bands from `detect_bands` or band names.
    """
    sources: list[MaskSource] = []
    try:
        if mask_path:
            if is_vector_path(mask_path):
                sources.append(VectorMask(mask_path, grid, mask_layer))
            else:
                sources.append(RasterMask(mask_path, grid))
        if qa_expression or qa_band or qa_path:
            if not qa_expression:
                raise InputError(f"a QA band was given without an expression to test it; {_QA_EXAMPLES}")
            path = qa_path or input_path
            if not path:
                raise InputError("a QA expression was given without a QA raster; give the QA raster or the input")
            if qa_band is None and not qa_path:
                raise InputError("a QA expression was given but no QA band; choose which band of the input is QA")
            sources.append(QAMask(path, qa_band, qa_expression, grid))
        if detect:
            if not input_path:
                raise InputError("cloud detection needs the input raster")
            sources.append(DetectedMask(input_path, detect_bands or None, grid=grid))
        combined = CombinedMask(sources, grid, dilate)
        yield combined
    finally:
        for source in sources:
            source.close()


# --- fitting and measuring the detector on real reference masks --------------------------------------------------

_EVAL_BLOCK = 128  # Landsat-8 scene: checkerboard squares, black to fit, white to measure


def _reference(samples: Path, part: int, no_swir: bool = False) -> list[tuple[str, dict, np.ndarray]]:
    """[(name, features, truth)] of the fitting (part 0) or held-out (part 1) reference pixels; with
    `no_swir` also the Landsat-8 pixels without their SWIR band."""
    l8 = samples / "l8_pensacola_cloudy.tif"
    truth_path = samples / "l8_pensacola_cloudmask.tif"
    lsts = sorted(p for p in (samples / "lsts").glob("*.tif") if not p.name.endswith("_fmask.tif"))
    missing = [p for p in (l8, truth_path) if not p.exists()] + ([] if lsts else [samples / "lsts"])
    if missing:
        raise InputError(f"reference data {', '.join(map(str, missing))} missing; fetch it with `make data`")
    out = []
    with DetectedMask(l8) as det, rasterio.open(truth_path) as ref:
        refl, valid = det.reflectance(0, det.grid.height, 0, det.grid.width)
        r, c = np.mgrid[0:det.grid.height, 0:det.grid.width]
        keep = valid & ((r // _EVAL_BLOCK + c // _EVAL_BLOCK) % 2 == part)
        truth = ref.read(1)[keep] == 1
        out.append(("l8_pensacola", {k: v[keep] for k, v in cloud_features(refl).items()}, truth))
        if no_swir:
            refl.pop("swir1")
            out.append(("l8_pensacola_no_swir", {k: v[keep] for k, v in cloud_features(refl).items()}, truth))
    feats, truth = [], []
    for path in lsts[part::2]:
        with DetectedMask(path) as det, rasterio.open(str(path)[:-4] + "_fmask.tif") as ref:
            refl, valid = det.reflectance(0, det.grid.height, 0, det.grid.width)
            fmask = ref.read(1)
            keep = valid & (fmask != 255)
            feats.append({k: v[keep] for k, v in cloud_features(refl).items()})
            truth.append(fmask[keep] == 4)
    out.append(("lsts", {k: np.concatenate([f[k] for f in feats]) for k in feats[0]}, np.concatenate(truth)))
    return out


def _scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    n = int(truth.size)
    return {"overall_accuracy": round((n - fp - fn) / max(n, 1), 4), "precision": round(tp / max(tp + fp, 1), 4),
            "recall": round(tp / max(tp + fn, 1), 4), "iou": round(tp / max(tp + fp + fn, 1), 4),
            "pixels": n, "cloud_fraction": round(float(truth.mean()) if n else 0.0, 4)}


def fit_detector(samples: str | os.PathLike = "data/samples", rounds: int = 3) -> DetectorThresholds:
    """Thresholds maximising the mean cloud IoU on the fitting halves (how `DETECTOR` was made).

    Coordinate search from Fmask-like values; where a range of values ties for
    best, the current one stays, else the middle of the tied range is taken.
    """
    sets = _reference(Path(samples), part=0)
    grids = {"bright": np.arange(0.04, 0.4, 0.01), "white": np.arange(0.1, 1.5, 0.05),
             "hot": np.arange(-0.1, 0.2, 0.005), "nir": np.arange(0.0, 0.4, 0.02),
             "ndvi": np.arange(0.1, 0.9, 0.05), "ndsi": np.arange(-0.4, 0.9, 0.05),
             "swir1": np.arange(0.05, 0.5, 0.01)}
    t = DetectorThresholds(bright=0.1, white=0.7, hot=-0.1, nir=0.1, ndvi=0.8, ndsi=0.8, swir1=0.2)

    def objective(th):
        return np.mean([_scores(cloud_test(f, th), y)["iou"] for _, f, y in sets])

    for _ in range(rounds):
        for name, values in grids.items():
            scores = np.array([objective(replace(t, **{name: float(v)})) for v in values])
            if objective(t) < scores.max() - 1e-4:  # else keep the current value: it is tied for best
                tied = values[scores >= scores.max() - 1e-4]
                t = replace(t, **{name: round(float(tied[len(tied) // 2]), 3)})
    return t


def detection_accuracy(samples: str | os.PathLike = "data/samples",
                       thresholds: DetectorThresholds = DETECTOR) -> dict:
    """Accuracy of `DetectedMask` on the held-out halves of the real reference masks (see module docstring)."""
    samples = Path(samples)
    sets = _reference(samples, part=1, no_swir=True)
    splits = {"l8_pensacola": f"BQA bits 14-15 == 3; white squares of a {_EVAL_BLOCK}-px checkerboard",
              "l8_pensacola_no_swir": "as l8_pensacola, bands blue, green, red, nir only",
              "lsts": "Fmask == 4 (fill excluded); odd-numbered of the 105 dates"}
    return {"method": "spectral test (engine.masks module docstring), thresholds fitted on the other half",
            "thresholds": asdict(thresholds),
            "datasets": {name: {**_scores(cloud_test(f, thresholds), y), "held_out": splits[name]}
                         for name, f, y in sets}}
