"""Tile grids cover rasters exactly; blending weights sum to one."""

import numpy as np
import pytest

from engine.errors import InputError
from engine.windows import TileGrid, axis_offsets, axis_weights, reflect_indices, tile_weights


@pytest.mark.parametrize("size", [1, 5, 31, 32, 33, 100, 257, 1000])
@pytest.mark.parametrize("tile,overlap", [(32, 0), (32, 8), (64, 16), (16, 8)])
def test_offsets_cover_axis_exactly_once_in_order(size, tile, overlap):
    offsets = axis_offsets(size, tile, overlap)
    assert offsets[0] == 0
    assert offsets[-1] + tile >= size  # the last tile reaches the edge (padded past it, never shrunk)
    assert len(offsets) == 1 or offsets[-2] + tile < size + overlap  # no tile lies wholly in padding
    assert all(b - a == tile - overlap for a, b in zip(offsets, offsets[1:], strict=False))
    covered = np.zeros(size, int)
    for o in offsets:
        covered[o:o + tile] += 1
    assert covered.min() >= 1


@pytest.mark.parametrize("tile,overlap", [(32, 8), (64, 16), (16, 1), (256, 32)])
def test_blend_weights_sum_to_one_everywhere(tile, overlap):
    size = 5 * tile + 3
    offsets = axis_offsets(size, tile, overlap)
    total = np.zeros(offsets[-1] + tile)
    for i, o in enumerate(offsets):
        total[o:o + tile] += axis_weights(tile, overlap, i > 0, i < len(offsets) - 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_every_allowed_grid_covers_each_pixel_with_weights_summing_to_one():
    # every tile size up to 48 px, every overlap the grid accepts, sizes around the tile: the promise holds
    rng = np.random.default_rng(0)
    for tile in range(1, 49):
        for overlap in range(0, tile // 2 + 1):
            for size in {1, tile - 1, tile, tile + 1, 3 * tile + int(rng.integers(0, tile))} - {0}:
                offsets = TileGrid(size, 1, tile, overlap).row_offsets
                total = np.zeros(offsets[-1] + tile)
                for i, o in enumerate(offsets):
                    total[o:o + tile] += axis_weights(tile, overlap, i > 0, i < len(offsets) - 1)
                np.testing.assert_allclose(total[:size], 1.0, atol=1e-6, err_msg=f"{tile} {overlap} {size}")


@pytest.mark.parametrize("overlap", [-1, 17, 31, 32])
def test_an_overlap_beyond_half_the_tile_is_refused(overlap):
    with pytest.raises(InputError, match="half the tile size"):
        TileGrid(100, 100, 32, overlap)


def test_tile_weights_2d_partition_of_unity():
    grid = TileGrid(100, 90, 32, 8)
    rows, cols = grid.row_offsets, grid.col_offsets
    total = np.zeros((rows[-1] + 32, cols[-1] + 32))
    for ri, r in enumerate(rows):
        for ci, c in enumerate(cols):
            total[r:r + 32, c:c + 32] += tile_weights(32, 8, ri > 0, ri < len(rows) - 1, ci > 0, ci < len(cols) - 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_weights_are_smooth_and_positive():
    w = axis_weights(64, 16, True, True)
    assert w.min() > 0 and w.max() == 1
    assert np.abs(np.diff(w)).max() < 0.11  # no jump a seam could come from


@pytest.mark.parametrize("size", [1, 2, 3, 10])
def test_reflect_indices_match_numpy_pad(size):
    data = np.arange(size)
    expected = np.pad(data, (0, 40), mode="reflect") if size > 1 else np.zeros(size + 40, int)
    np.testing.assert_array_equal(data[reflect_indices(0, size + 40, size)], expected)


def test_grid_rejects_bad_overlap():
    with pytest.raises(InputError, match="overlap"):
        TileGrid(10, 10, 32, 32)
    with pytest.raises(InputError, match="overlap"):
        TileGrid(10, 10, 32, -1)


@pytest.mark.parametrize("args", [(None, 5, 8, 0), ("8", 5, 8, 0), (5, 5, 8.0, 0), (5, True, 8, 0),
                                  (5, 5, 8, float("nan")), (5, 5, 8, None)])
def test_grid_parameters_that_are_not_whole_numbers_are_refused(args):
    # were raw TypeErrors, or accepted and failing later (fuzz: windows seed 0 cases 3, 6, 169, 318)
    with pytest.raises(InputError, match="whole number of pixels"):
        TileGrid(*args)
