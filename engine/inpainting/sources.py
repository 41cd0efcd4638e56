"""Cloud masks on the input raster's pixel grid, read window by window, for inpainting.

Every source answers `read(row0, row1, col0, col1)` with a boolean array,
True = cloud, on the INPUT raster's grid (its CRS, transform and size), for a
window inside the raster:

- `RasterMask`: a mask raster, non-zero = cloud, in any CRS, resolution or
  extent, warped onto the grid (nearest neighbour) through a GDAL WarpedVRT, so
  windowed reads stay small; outside its extent and at its nodata: clear.
- `VectorMask`: polygons from a GeoPackage or GeoJSON layer, any CRS, burnt
  into each window (pixel centres inside).
- `QAMask`: a bit test (`qa.QAExpression`) on a QA band, of the input itself or
  of a separate raster warped like `RasterMask`; its nodata: clear.
- `detect.DetectedMask`: the spectral cloud test on the input's own bands.
- `CombinedMask`: the OR of sources, dilated by a disk; it reads a halo
  around each window, so results never depend on where windows fall.
`masks.open_mask` builds the combination from front-end parameters.

Without a CRS on one side (the input's or the source's) nothing can be reprojected: a raster
source is then read pixel for pixel when it has the input's size and its geotransform (or none
on one side), else refused with a message saying which CRS is missing; polygons without a CRS
over an input without one are taken to be in the input's own coordinates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import InputError
from ..raster import open_raster
from ..vector import rasterize_features, read_features
from .qa import QAExpression

if TYPE_CHECKING:
    from affine import Affine

# --- grid --------------------------------------------------------------------------------------------------------

NO_MASK = ("no cloud mask given: give a mask layer (raster or polygons), a QA band with an expression such as "
           "'bits(14, 15) == 3', or turn on detection")


@dataclass(frozen=True)
class Grid:
    """The input raster's pixel grid, on which every mask is delivered."""

    crs: object  # rasterio.crs.CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, src) -> Grid:
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


def _crs_name(crs) -> str:
    """A CRS as people write it: EPSG:code where it has one, else its name."""
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    text = crs.to_string()
    return text if len(text) <= 60 else "a CRS without EPSG code"


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
    (local) grid transforms well; a mask's own extent may not (a world mask has no UTM bounds).
    Both CRSs missing: the bounds are in the input's own coordinates; one missing: see `crs_missing`."""
    if crs is None and grid.crs is None:
        overlaps, here = _boxes_overlap(bounds, grid.bounds), bounds
    elif crs is None or grid.crs is None:
        raise crs_missing(what, crs, grid, "raster mask")
    else:
        grid_there = _safe_transform_bounds(grid.crs, crs, grid.bounds)
        if all(map(math.isfinite, grid_there)):
            overlaps = _boxes_overlap(grid_there, bounds)
        else:
            overlaps = _boxes_overlap(_safe_transform_bounds(crs, grid.crs, bounds), grid.bounds)
        here = _safe_transform_bounds(crs, grid.crs, bounds)
    if not overlaps:
        if all(map(math.isfinite, here)):
            where = f"its bounds in the input's {'CRS' if grid.crs else 'coordinates'} {_fmt_bounds(here, grid.crs)}"
        else:  # cannot be transformed into the input's CRS at all
            where = f"its bounds in its own CRS {_crs_name(crs)} {_fmt_bounds(bounds, crs)}"
        raise InputError(f"the {what} does not overlap the input raster; check that it covers the same area "
                         f"({where}, input bounds {_fmt_bounds(grid.bounds, grid.crs)})")


ASSIGN_CRS = "in QGIS: Raster > Projections > Assign Projection; with GDAL: gdal_edit.py -a_srs EPSG:<code>"


def pixel_aligned(src, grid: Grid) -> bool:
    """Whether a raster whose CRS or the input's is missing may be read pixel for pixel on the grid:
    the input's size, and the input's geotransform or none at all on one side (a mask made as an array)."""
    return ((src.width, src.height) == (grid.width, grid.height)
            and (src.transform.almost_equals(grid.transform) or src.transform.is_identity
                 or grid.transform.is_identity))


def crs_missing(what: str, crs, grid: Grid, kind: str) -> InputError:
    """Why a source (`what`, in `crs`) cannot be placed on the grid when it or the input has no CRS,
    and the ways on; `kind` names a raster that would do ("raster mask", "QA raster", ...)."""
    same_size = f"a {kind} of the input's size ({grid.width} x {grid.height} px), which is read pixel for pixel"
    if grid.crs is None and crs is None:
        return InputError(f"neither the input raster nor the {what} has a coordinate reference system, and the "
                          f"{what} does not lie on the input's pixel grid; give {same_size}, or assign both their "
                          f"CRS ({ASSIGN_CRS})")
    if grid.crs is None:
        return InputError(f"the input raster has no coordinate reference system, so the {what}, which is in "
                          f"{_crs_name(crs)}, cannot be placed on it; assign the input raster's CRS "
                          f"({ASSIGN_CRS}), or give {same_size}")
    return InputError(f"the {what} has no coordinate reference system, so it cannot be placed on the input raster "
                      f"(in {_crs_name(grid.crs)}); assign its CRS ({ASSIGN_CRS}), or give {same_size}")


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
            if self.src.crs is None or grid.crs is None:  # no reprojection: pixel for pixel, or not at all
                if pixel_aligned(self.src, grid):
                    self.reader = self.src
                    return
                raise crs_missing(f"{what} {path}", self.src.crs, grid, what)
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
        assert self.reader is not None, "read after close"  # nosec B101  # internal invariant, not input checking
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
        what = f"mask layer {features.layer} of {path}"
        if grid.crs is None and features.crs is None:  # both in the input's own coordinates
            self.geoms = list(features.geometries)
        elif grid.crs is None:
            raise crs_missing(what, features.crs, grid, "raster mask")
        else:
            self.geoms = features.reprojected(grid.crs)
        self.boxes = np.array([g.bounds for g in self.geoms], dtype=float).reshape(-1, 4)
        _check_overlap(features.crs, features.bounds(), grid, what)

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

    def __init__(self, path: str | os.PathLike, band: int | None, expression: str | QAExpression, grid: Grid):
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
