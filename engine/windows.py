"""Tile grids over a raster and the blending weights that stitch tiles back.

Plain value types and numpy only: no I/O, no torch. A grid places tiles of a
fixed size every `stride = tile - overlap` pixels from the top-left corner;
tiles that run past the right or bottom edge are padded by the reader, never
shrunk. Blending weights ramp over each overlap so that the weights of all
tiles covering a pixel sum to exactly one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError


def axis_offsets(size: int, tile: int, overlap: int) -> list[int]:
    """Tile start offsets covering `size` pixels: 0, stride, 2*stride, ..."""
    stride = tile - overlap
    count = max(1, math.ceil((size - overlap) / stride))
    return [i * stride for i in range(count)]


@dataclass(frozen=True)
class TileGrid:
    """Tiles of `tile` px overlapping by `overlap` px over a height x width raster."""

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self):
        for name in ("height", "width", "tile", "overlap"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise InputError(f"the tile grid's {name} must be a whole number of pixels, got {value!r}")
        if self.height < 1 or self.width < 1:
            raise InputError(f"raster has no pixels ({self.width} x {self.height})")
        if self.tile < 1:
            raise InputError(f"tile size must be positive, got {self.tile}")
        if not 0 <= 2 * self.overlap <= self.tile:
            # wider overlaps would let three tiles share a pixel, and the ramps no longer sum to one
            raise InputError(
                f"overlap must be between 0 and half the tile size ({self.tile // 2} px), "
                f"got {self.overlap}; try overlap = tile size / 8"
            )

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def row_offsets(self) -> list[int]:
        return axis_offsets(self.height, self.tile, self.overlap)

    @property
    def col_offsets(self) -> list[int]:
        return axis_offsets(self.width, self.tile, self.overlap)

    @property
    def padded_width(self) -> int:
        """Width covered by the tiles, including padding past the right edge."""
        return self.col_offsets[-1] + self.tile

    def __len__(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)

    def strip_rows(self, strips: range) -> tuple[int, int]:
        """Rows [r0, r1) that the strips `strips` (consecutive indexes of row_offsets) finish in the tile
        pipeline: strip i those from i * stride on, the last strip those down to the bottom."""
        count = len(self.row_offsets)
        r0, r1 = (i * self.stride if i < count else self.height for i in (strips.start, strips.stop))
        return r0, r1


def axis_weights(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D blending profile: 1 in the middle, sin^2 ramps over the overlaps.

    Only sides that have a neighbouring tile ramp; a side on the raster's edge
    stays at 1. A rising ramp sin^2 and the neighbour's falling ramp cos^2 over
    the same pixels sum to one, so no pixel is brightened or darkened.
    """
    w = np.ones(length, dtype=np.float32)
    if overlap > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        if ramp_start:
            w[:overlap] = ramp
        if ramp_end:
            w[length - overlap:] = ramp[::-1]
    return w


def tile_weights(tile: int, overlap: int, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    """2-D weights of one tile; each flag says the tile has a neighbour on that side."""
    return np.outer(axis_weights(tile, overlap, top, bottom), axis_weights(tile, overlap, left, right))


def reflect_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Source indices for positions start..stop-1 of an axis of `size`, mirrored
    at the edges (numpy's 'reflect': ... 2 1 | 0 1 2 ... n-1 | n-2 ...), repeating
    as often as needed, so a raster smaller than a tile is still padded exactly."""
    idx = np.arange(start, stop)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * size - 2
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)
