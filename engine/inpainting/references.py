"""Reference dates for the cloud fill: other images of the same place, each read on the
input's grid with its own cloud mask, and their acquisition dates.

A reference is any raster of the same place on another date (any CRS, resolution and
extent: warped bilinearly onto the input's grid). Its own clouds come from a mask layer
of its own, a QA band of its own with an expression, or detection; its nodata and its
outside count as not clear too. Dates come from a parameter, else the raster's metadata
(ACQUISITION_DATE, DATE_ACQUIRED, SENSING_TIME, TIFFTAG_DATETIME, ...), else the file
name (2021-06-30, 20210630); they order the references, nearest to the input's date
first, for the `nearest` combination and the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from ..errors import InputError
from ..progress import Feedback
from ..raster import BLOCK, open_raster
from .masks import Grid, GridBand, open_mask
from .sources import CombinedMask, MaskSource, RasterMask

MAX_REFERENCES = 16
COMBINE = ("weighted", "nearest")
DATE_TAGS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "SENSING_DATE", "PRODUCT_START_TIME",
             "DATATAKE_1_DATATAKE_SENSING_START", "ACQUISITIONDATE", "DATE", "TIFFTAG_DATETIME")
_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19[7-9]|20\d)\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")


@dataclass
class ReferenceOptions:
    """The reference dates of a fill and how to read them."""

    paths: list[str]
    bands: list[int] | None = None  # 1-based bands of each reference matching the input's, default the same numbers
    masks: list[str | None] | None = None  # per reference: a raster (non-zero = cloud) or polygon layer, or None
    qa_band: int | None = None  # a band of each reference holding QA flags, tested with qa_expression
    qa_expression: str | None = None
    detect: bool = False  # detect each reference's clouds with the spectral test
    dates: list[str] | None = None  # ISO dates, one per reference; default: metadata, then file name
    date: str | None = None  # the input's date; default: metadata, then file name
    combine: str = "weighted"  # or "nearest": per pixel the nearest date clear there

    @classmethod
    def of(cls, reference, bands: list[int] | None = None) -> ReferenceOptions | None:
        """Options from what `inpaint(reference=...)` was given: None, one path, a list of paths or options."""
        if reference is None or isinstance(reference, ReferenceOptions):
            if bands and reference is not None and reference.bands is None:
                return dataclasses.replace(reference, bands=list(bands))  # the caller's options stay as they were
            return reference
        paths = [reference] if isinstance(reference, (str, os.PathLike)) else list(reference)
        return cls(paths=[str(p) for p in paths], bands=list(bands) if bands else None) if paths else None

    def check(self) -> None:
        """InputError for settings that contradict each other, before any work."""
        n = len(self.paths)
        if n == 0:
            raise InputError("reference options were given without any reference raster; give one or more "
                             "reference rasters, or none at all")
        if n > MAX_REFERENCES:
            raise InputError(f"{n} reference rasters were given; at most {MAX_REFERENCES} are used at once: give the "
                             f"{MAX_REFERENCES} nearest dates")
        if self.masks is not None and len(self.masks) != n:
            raise InputError(f"{len(self.masks)} reference masks for {n} reference rasters; give one mask per "
                             f"reference, in the same order (none for a reference without mask), or no masks")
        if self.dates is not None and len(self.dates) != n:
            raise InputError(f"{len(self.dates)} reference dates for {n} reference rasters; give one date per "
                             f"reference (YYYY-MM-DD), in the same order, or none to read them from the files")
        for d in (self.dates or []) + ([self.date] if self.date else []):
            parse_date(d)
        if self.combine not in COMBINE:
            raise InputError(f"unknown reference combination {self.combine!r}; choose {' or '.join(COMBINE)}")
        if (self.qa_band is None) != (self.qa_expression is None):
            raise InputError("a reference QA band needs a QA expression and the reverse; give both (e.g. band 4 with "
                             "'bits(3, 4) > 0') or neither")
        if self.qa_expression:
            from .qa import QAExpression

            QAExpression(self.qa_expression)


def parse_date(text: str) -> dt.date:
    """A date written YYYY-MM-DD (a time after it is ignored), or an InputError saying so."""
    m = re.match(r"\s*(\d{4})[-:/]?(\d{2})[-:/]?(\d{2})", str(text))
    try:
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        pass
    raise InputError(f"cannot read {text!r} as a date; write dates as YYYY-MM-DD, e.g. 2021-06-30")


def raster_date(path: str | os.PathLike) -> dt.date | None:
    """The acquisition date of a raster: from its metadata, else its file name; None when neither tells."""
    with contextlib.suppress(rasterio.errors.RasterioIOError, OSError), rasterio.open(str(path)) as src:
        tags = {k.upper(): v for k, v in src.tags().items()}
        for key in DATE_TAGS:
            if key in tags:
                with contextlib.suppress(InputError):
                    return parse_date(tags[key])
    found = _DATE_IN_NAME.findall(Path(str(path)).name)
    for y, m, d in found:
        with contextlib.suppress(ValueError):
            return dt.date(int(y), int(m), int(d))
    return None


def date_order(options: ReferenceOptions, input_path: str | os.PathLike,
               feedback: Feedback) -> tuple[list[int], list[dt.date | None], dt.date | None]:
    """(indexes of the references, nearest date first; each reference's date; the input's date). Where a
    date is unknown the order given is kept, and said."""
    dates: list[dt.date | None] = ([parse_date(d) for d in options.dates] if options.dates
                                   else [raster_date(p) for p in options.paths])
    own = parse_date(options.date) if options.date else raster_date(input_path)
    order = list(range(len(options.paths)))
    known = [d for d in dates if d is not None]
    if own is not None and len(known) == len(dates):
        gaps = [abs((d - own).days) for d in known]
        order.sort(key=lambda i: gaps[i])
        listing = ", ".join(f"{Path(options.paths[i]).name} ({dates[i]}, {gaps[i]} days)" for i in order)
        feedback.info(f"input date {own}; references nearest first: {listing}")
    elif len(order) > 1:
        unknown = "the input" if own is None else ", ".join(
            Path(options.paths[i]).name for i in order if dates[i] is None)
        feedback.info(f"no date for {unknown} (metadata or file name); references taken in the order given, "
                      f"first = nearest; give the dates (REFERENCE_DATES / --reference-dates) to order them")
    return order, dates, own


class ReferenceImage:
    """One reference read on the input's grid: directly when it lies on it, else through a bilinear
    WarpedVRT. `read` gives (bands, rows, cols) float32, NaN wherever a band has no valid value (nodata,
    outside its extent) or the reference's own mask says cloud (`clouds`, which the caller owns and closes)."""

    def __init__(self, path: str | os.PathLike, bands: list[int], grid: Grid, clouds: MaskSource | None = None):
        from rasterio.enums import Resampling

        self.bands: list[GridBand] = []
        self.clouds = clouds
        try:
            for b in bands:
                src = self.bands[0].src if self.bands else None
                self.bands.append(GridBand(path, b, grid, "reference raster", src=src,
                                           resampling=Resampling.bilinear))
        except BaseException:
            self.close()
            raise

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        out = np.empty((len(self.bands), row1 - row0, col1 - col0), np.float32)
        for i, band in enumerate(self.bands):
            data, valid = band.read(row0, row1, col0, col1)
            out[i] = np.where(valid, data, np.nan)
        if self.clouds is not None:
            out[:, self.clouds.read(row0, row1, col0, col1)] = np.nan
        return out

    def close(self) -> None:
        for band in reversed(self.bands):  # the first one owns the dataset the others share
            band.close()
        self.bands = []


def _detected_on_grid(path: str, grid: Grid, stack: contextlib.ExitStack) -> MaskSource:
    """The spectral cloud test run on a reference on its own grid, then read on the input's grid
    (a temporary mask raster, warped nearest), removed when the stack closes."""
    from .detect import DetectedMask

    with open_raster(path) as src:
        if grid.same_as(src):
            return stack.enter_context(DetectedMask(path, grid=grid))
        own = Grid.of(src)
    tmp = tempfile.NamedTemporaryFile(prefix="satgen_refmask_", suffix=".tif", delete=False)
    tmp.close()
    stack.callback(_remove, tmp.name)
    with DetectedMask(path, grid=own) as det, rasterio.open(
            tmp.name, "w", driver="GTiff", width=own.width, height=own.height, count=1, dtype="uint8",
            crs=own.crs, transform=own.transform, compress="deflate", tiled=False) as dst:
        for r0 in range(0, own.height, BLOCK):
            r1 = min(own.height, r0 + BLOCK)
            dst.write(det.read(r0, r1, 0, own.width).astype(np.uint8)[None],
                      window=rasterio.windows.Window(0, r0, own.width, r1 - r0))
    return stack.enter_context(RasterMask(tmp.name, grid))


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class ReferenceStack:
    """The references of a fill, nearest date first (`order`), read together: `read` gives
    (K, bands, rows, cols) float32 with NaN where a reference is not clear and valid."""

    def __init__(self, options: ReferenceOptions, input_bands: list[int], grid: Grid, input_path, feedback: Feedback):
        options.check()
        bands = list(options.bands or input_bands)
        if len(bands) != len(input_bands):
            raise InputError(f"the reference bands {bands} must match the input bands {input_bands} one to one; "
                             f"give as many reference bands as input bands, in the same order")
        self.order, self.dates, self.date = date_order(options, input_path, feedback)
        self.paths = [options.paths[i] for i in self.order]
        self.images: list[ReferenceImage] = []
        self._stack = contextlib.ExitStack()
        try:
            for i in self.order:
                path = options.paths[i]
                clouds: MaskSource | None = None
                mask = options.masks[i] if options.masks else None
                if mask or options.qa_expression:
                    clouds = self._stack.enter_context(open_mask(
                        grid, mask_path=mask or None, qa_path=path if options.qa_expression else None,
                        qa_band=options.qa_band, qa_expression=options.qa_expression))
                if options.detect:
                    detected = _detected_on_grid(path, grid, self._stack)
                    clouds = detected if clouds is None else CombinedMask([clouds, detected], grid)
                self.images.append(ReferenceImage(path, bands, grid, clouds))
        except BaseException:
            self.close()
            raise
        self.bands = bands

    def __len__(self) -> int:
        return len(self.images)

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        return np.stack([image.read(row0, row1, col0, col1) for image in self.images])

    def close(self) -> None:
        for image in self.images:
            image.close()
        self.images = []
        self._stack.close()


def as_paths(values: Sequence[str | os.PathLike | None] | None) -> list[str | None] | None:
    """Mask paths as strings, 'none' or '' meaning no mask for that reference."""
    if values is None:
        return None
    return [None if v is None or str(v).strip().lower() in ("", "none", "-") else str(v) for v in values]
