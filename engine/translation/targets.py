"""Map targets for satellite -> map translation: the QGIS-free half of satgen:render_map_target.

The QGIS plugin renders styled layers strip by strip onto a satellite raster's grid
(satgen_qgis/rendering.py). This module checks that grid, writes the strips into a
georeferenced RGB GeoTIFF, counts the pixels of each colour, and writes the legend that
decodes the colours back to classes. The GeoTIFF and the legend are renamed into place
only when both are complete, so a failed or cancelled run leaves neither.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio

from ..errors import InputError
from ..fileio import atomic_path
from ..raster import GDAL_ENV, GeoTiffWriter, open_raster

BAND_NAMES = ["red", "green", "blue"]


@dataclass(frozen=True)
class TargetGrid:
    """The pixel grid of a map target: a north-up raster's CRS, transform and size."""

    crs: Any  # rasterio CRS
    transform: Any  # affine.Affine, north-up with square pixels
    width: int
    height: int

    @property
    def x_min(self) -> float:
        return self.transform.c

    @property
    def y_max(self) -> float:
        return self.transform.f

    @property
    def pixel_size(self) -> float:
        return self.transform.a


def target_grid(path: str | os.PathLike) -> TargetGrid:
    """The grid of the raster at `path`, which must be north-up with square pixels (maps
    are rendered north-up, in square pixels)."""
    with rasterio.Env(**GDAL_ENV), open_raster(path) as src:
        t = src.transform
        if t.b != 0 or t.d != 0 or t.e >= 0:
            raise InputError("INPUT is rotated or not north-up; QGIS renders north-up maps only: warp it "
                             "north-up first (Raster > Projections > Warp)")
        if abs(abs(t.e) - t.a) * max(src.width, src.height) > 0.01 * t.a:
            raise InputError(f"INPUT's pixels are not square ({t.a:g} x {-t.e:g}); QGIS renders square "
                             f"pixels only: warp the raster to square pixels first (gdalwarp -tr)")
        return TargetGrid(crs=src.crs, transform=src.transform, width=src.width, height=src.height)


def legend_json(legend: Mapping[str, Sequence[int]]) -> str:
    """The legend {label: [r, g, b], ...} as JSON, one class per line."""
    lines = [f" {json.dumps(label)}: {json.dumps(list(rgb))}" for label, rgb in legend.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_legend(path: str | os.PathLike, legend: Mapping[str, Sequence[int]]) -> None:
    """Write the legend as JSON (see legend_json), renamed into place when complete."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(legend_json(legend))


class Coverage:
    """Counts pixels per colour over the strips, to report each legend class's share."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, rgb: np.ndarray) -> None:
        """Count the colours of a (3, rows, cols) uint8 array."""
        codes = (rgb[0].astype(np.uint32) << 16) | (rgb[1].astype(np.uint32) << 8) | rgb[2]
        values, counts = np.unique(codes, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            self.counts[v] = self.counts.get(v, 0) + c
        self.total += codes.size

    @staticmethod
    def code(rgb: Sequence[int]) -> int:
        r, g, b = rgb
        return (r << 16) | (g << 8) | b

    def only(self, rgb: Sequence[int]) -> bool:
        """Whether every pixel counted has the colour `rgb` (and there was at least one)."""
        return list(self.counts) == [self.code(rgb)]

    def summary(self, legend: Mapping[str, Sequence[int]]) -> str:
        """'label 12.3 %, ..., not in the legend 0.1 %': each legend colour's share of the pixels."""
        total = max(self.total, 1)
        parts = [f"{label} {100 * self.counts.get(self.code(rgb), 0) / total:.1f} %" for label, rgb in legend.items()]
        known = sum(self.counts.get(self.code(rgb), 0) for rgb in {tuple(c) for c in legend.values()})
        parts.append(f"not in the legend {100 * (self.total - known) / total:.1f} %")
        return ", ".join(parts)


def write_map_target(output: str | os.PathLike, grid: TargetGrid, strips: Iterable[np.ndarray],
                     legend: Mapping[str, Sequence[int]] | None = None,
                     legend_path: str | os.PathLike | None = None) -> Coverage:
    """Write `strips`, (3, rows, width) uint8 RGB arrays from the top of `grid` down, as an
    RGB GeoTIFF on `grid` at `output`, and with `legend_path` the legend as JSON; return the
    pixel count per colour.

    `strips` may be a generator that renders each strip on demand, so memory stays bounded by
    one strip; an exception it raises (an error, a cancel) propagates after the partial
    outputs are removed. Both files are renamed into place only when both are complete.
    """
    if legend_path and legend is None:
        raise InputError(f"a legend file {legend_path} was asked for without a legend; pass the legend "
                         f"{{label: [r, g, b]}} or no legend file")
    coverage = Coverage()
    with rasterio.Env(**GDAL_ENV), atomic_path(output) as tmp:
        writer = GeoTiffWriter(tmp, width=grid.width, height=grid.height, dtype="uint8", crs=grid.crs,
                               transform=grid.transform, nodata=None, band_names=BAND_NAMES, overviews="auto",
                               categorical=True)
        try:
            rows = 0
            for rgb in strips:
                if rgb.ndim != 3 or rgb.shape[0] != 3 or rgb.shape[2] != grid.width or rgb.dtype != np.uint8:
                    raise InputError(f"a map strip must be a (3, rows, {grid.width}) uint8 RGB array on the "
                                     f"target grid, not {rgb.dtype} of shape {rgb.shape}; render onto the grid "
                                     f"of the target")
                rows += rgb.shape[1]
                if rows > grid.height:
                    raise InputError(f"the map strips have more rows ({rows}) than the target grid "
                                     f"({grid.height}); render onto the grid of the target")
                coverage.add(rgb)
                writer.write_rows(rgb)
            if rows != grid.height:
                raise InputError(f"the map strips cover {rows} of the target grid's {grid.height} rows; "
                                 f"render the whole grid, top to bottom")
            writer.close()
        except BaseException:
            writer.abort()
            raise
        if legend_path and legend is not None:
            write_legend(legend_path, legend)
    return coverage


def grid_numbers(path: str | os.PathLike) -> dict:
    """target_grid of `path` as plain numbers, for a front end that renders onto it: x_min, y_max,
    pixel_size, width, height."""
    grid = target_grid(path)
    return {"x_min": grid.x_min, "y_max": grid.y_max, "pixel_size": grid.pixel_size, "width": grid.width,
            "height": grid.height}


STRIP_PIXELS = 4_000_000  # pixels per strip read back from a rendered map (12 MB of RGB)


def write_rendered_map_target(rendered: str | os.PathLike, grid_path: str | os.PathLike, output: str | os.PathLike,
                              legend: Mapping[str, Sequence[int]] | None = None,
                              legend_path: str | os.PathLike | None = None) -> dict:
    """write_map_target of a map rendered elsewhere (QGIS, into the plain 3-band uint8 raster
    `rendered` on the grid of `grid_path`), read back in strips; returns the colour shares as text
    (`summary`) and whether every pixel is the legend's background (`background_only`)."""
    grid = target_grid(grid_path)
    with rasterio.Env(**GDAL_ENV), open_raster(rendered) as src:
        if (src.count, src.width, src.height, src.dtypes[0]) != (3, grid.width, grid.height, "uint8"):
            raise InputError(f"the rendered map {rendered} is {src.count} x {src.width} x {src.height} "
                             f"{src.dtypes[0]}, not 3 x {grid.width} x {grid.height} uint8 on the target grid")
        step = max(1, STRIP_PIXELS // grid.width)
        strips = (src.read(window=((row, min(row + step, grid.height)), (0, grid.width)))
                  for row in range(0, grid.height, step))
        coverage = write_map_target(output, grid, strips, legend, legend_path)
    background = (legend or {}).get("background")
    return {"summary": coverage.summary(legend) if legend else "",
            "background_only": background is not None and coverage.only(background)}
