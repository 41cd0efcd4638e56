"""Spatial splits and square symmetries shared by every trainer.

`BlockSplit` cuts a pixel grid into square blocks and holds a deterministic,
scene-wide spread of them out for validation; training windows are drawn inside
training blocks only, so none touches a held-out pixel. `dihedral` applies one
of the 8 flips / quarter turns, the same for an image and its labels.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError

Box = tuple[int, int, int, int]  # (row0, col0, row1, col1), end-exclusive


class BlockSplit:
    """Square blocks of `block` px over an H x W grid, some held out for validation.

    About `val_fraction` of the blocks (at least one, and at least one left for
    training) go to validation, picked by systematic sampling with a seeded
    offset along a serpentine path through the blocks, so that they spread over
    the whole scene; the choice depends only on (grid, block, val_fraction,
    seed, valid). With `valid`, blocks with less than `min_block_valid` valid
    pixels are left out of both sets. Edge blocks may be smaller than `block`.
    """

    def __init__(self, height: int, width: int, block: int = 256, val_fraction: float = 0.2, seed: int = 0,
                 valid: np.ndarray | None = None, min_block_valid: float = 0.25):
        if height < 1 or width < 1:
            raise InputError(f"cannot split an empty grid ({width} x {height} px)")
        if block < 1:
            raise InputError(f"block size must be positive, got {block}")
        if not 0.0 < val_fraction < 1.0:
            raise InputError(f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        if valid is not None and valid.shape != (height, width):
            raise InputError(f"valid mask is {valid.shape[1]} x {valid.shape[0]} px, the grid {width} x {height}")
        self.height, self.width, self.block = int(height), int(width), int(block)
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        n_rows, n_cols = math.ceil(height / block), math.ceil(width / block)
        self.grid_shape = (n_rows, n_cols)
        order: list[tuple[int, int]] = []  # serpentine: neighbours along the path are neighbours in the scene
        for i in range(n_rows):
            cols = range(n_cols) if i % 2 == 0 else range(n_cols - 1, -1, -1)
            order.extend((i, j) for j in cols)
        boxes = {(i, j): (i * block, j * block, min(height, (i + 1) * block), min(width, (j + 1) * block))
                 for i in range(n_rows) for j in range(n_cols)}
        if valid is not None:
            order = [ij for ij in order if valid[box_slices(boxes[ij])].mean() >= min_block_valid]
        n = len(order)
        if n < 2:
            raise InputError(
                f"the {width} x {height} px scene holds only {n} usable block(s) of {block} px, but training and "
                f"validation need at least one each; use a smaller block size (e.g. {max(1, min(height, width) // 2)})")
        n_val = min(n - 1, max(1, round(val_fraction * n)))
        offset = np.random.default_rng(self.seed).random()
        picks = {int(math.floor((k + offset) * n / n_val)) for k in range(n_val)}
        val = {order[p] for p in picks}
        self.val_blocks: list[Box] = [boxes[ij] for ij in sorted(val)]
        self.train_blocks: list[Box] = [boxes[ij] for ij in sorted(set(order) - val)]

    def mask(self, which: str = "val") -> np.ndarray:
        """(H, W) bool: True inside the `which` ("val" or "train") blocks."""
        if which not in ("val", "train"):
            raise ValueError(f"which must be 'val' or 'train', got {which!r}")
        out = np.zeros((self.height, self.width), bool)
        for b in (self.val_blocks if which == "val" else self.train_blocks):
            out[box_slices(b)] = True
        return out

    def __repr__(self) -> str:
        return (f"BlockSplit({self.width} x {self.height} px, block {self.block}: "
                f"{len(self.train_blocks)} train / {len(self.val_blocks)} val)")


def box_slices(box: Box):
    return slice(box[0], box[2]), slice(box[1], box[3])


def box_area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes: k % 4 quarter
    turns, then (k >= 4) a left-right flip. k = 0 is the identity."""
    if not 0 <= k < 8:
        raise ValueError(f"k must be 0..7, got {k}")
    out = np.rot90(array, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)
