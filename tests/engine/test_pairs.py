"""Satellite -> map pairs: alignment across CRSs, joint augmentation, a spatial
split that never leaks, determinism, and clear errors. Real GeoTIFFs in tmp_path."""

import numpy as np
import pytest
import torch
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from engine.errors import InputError
from engine.scaling import BandScaling
from engine.splits import BlockSplit, dihedral
from engine.translation.data import Pair, PairPatches, fit_input_scaling, load_pair, pair_sample, val_tiles
from helpers import write_raster

UTM = "EPSG:32633"
UTM_ORIGIN = (500000.0, 5800000.0)  # on zone 33's central meridian, 15 E 52.3 N
RED, GREEN = (230, 20, 30), (40, 160, 60)


def _utm_input(path, rows=160, cols=200, nodata=None):
    data = (np.arange(rows * cols, dtype=np.uint16).reshape(1, rows, cols) % 1000 + 100).repeat(2, axis=0)
    data[:, 0, 0] = 0  # nodata when nodata=0
    return write_raster(path, data, crs=UTM, transform=from_origin(*UTM_ORIGIN, 10.0, 10.0), nodata=nodata)


def _geographic_target(path, in_transform, square, cover_cols, res=0.00008):
    """An EPSG:4326 map covering input columns < cover_cols: RED where the
    pixel's centre falls in input pixels `square` (row0, col0, row1, col1), GREEN elsewhere."""
    left, bottom, right, top = transform_bounds(UTM, "EPSG:4326", UTM_ORIGIN[0], UTM_ORIGIN[1] - 160 * 10.0,
                                                UTM_ORIGIN[0] + cover_cols * 10.0, UTM_ORIGIN[1])
    cols, rows = int(np.ceil((right - left) / res)), int(np.ceil((top - bottom) / res))
    t = from_origin(left, top, res, res)
    r, c = np.mgrid[0:rows, 0:cols] + 0.5
    lon, lat = t * (c.ravel(), r.ravel())
    x, y = warp_transform("EPSG:4326", UTM, lon, lat)
    in_c, in_r = ~in_transform * (np.asarray(x), np.asarray(y))
    in_r, in_c = np.floor(in_r).reshape(rows, cols), np.floor(in_c).reshape(rows, cols)
    r0, c0, r1, c1 = square
    red = (in_r >= r0) & (in_r < r1) & (in_c >= c0) & (in_c < c1)
    img = np.empty((3, rows, cols), np.uint8)
    for b in range(3):
        img[b] = np.where(red, RED[b], GREEN[b])
    write_raster(path, img, crs="EPSG:4326", transform=t)
    return (right - left, top - bottom), (cols, rows)


def _shift(mask, dr, dc):
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(0, dr):h + min(0, dr), max(0, dc):w + min(0, dc)] = mask[max(0, -dr):h - max(0, dr),
                                                                     max(0, -dc):w - max(0, dc)]
    return out


def _dilate(mask):
    return np.logical_or.reduce([_shift(mask, dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)])


def _erode(mask):
    return ~_dilate(~mask)


def test_target_in_another_crs_and_resolution_lands_on_the_right_pixels(tmp_path):
    inp = _utm_input(tmp_path / "s2.tif", nodata=0)
    in_transform = from_origin(*UTM_ORIGIN, 10.0, 10.0)
    square = (60, 40, 100, 80)
    _, (t_cols, t_rows) = _geographic_target(tmp_path / "map.tif", in_transform, square, cover_cols=150)
    assert (t_cols, t_rows) != (150, 160)  # really another resolution

    pair = load_pair(inp, tmp_path / "map.tif")
    r0, c0, r1, c1 = pair.window
    assert pair.x.shape == (2, r1 - r0, c1 - c0) and pair.y.shape == (3, r1 - r0, c1 - c0)
    assert pair.y.dtype == np.uint8 and pair.valid.dtype == bool
    assert pair.transform == in_transform * in_transform.translation(c0, r0)
    assert pair.crs.to_epsg() == 32633 and pair.band_names == ["B1", "B2"] and pair.dtype == "uint16"
    # the target covers input columns < 150 only: the pair is cropped to it (+-1 px at the curved edge)
    assert (r0, c0) == (0, 0) and r1 == 160 and abs(c1 - 150) <= 1

    full_red = np.zeros((160, 200), bool)
    full_red[square[0]:square[2], square[1]:square[3]] = True
    expected = full_red[r0:r1, c0:c1]
    got = pair.valid & np.all(pair.y == np.array(RED, np.uint8)[:, None, None], axis=0)
    assert np.all(got <= _dilate(expected)), "red pixels outside the square (+-1 px)"
    assert np.all(_erode(expected) <= got), "square not filled"
    # nearest neighbour: colours stay pure
    colours = {tuple(c) for c in pair.y[:, pair.valid].T}
    assert colours == {RED, GREEN}
    # input nodata (value 0 at pixel (0, 0) of band 1 and 2) is invalid
    assert not pair.valid[0, 0]
    assert pair.valid[5:-5, 5:-5].all()


def test_target_alpha_and_nodata_are_invalid_and_rgba_drops_alpha(tmp_path):
    inp = _utm_input(tmp_path / "s2.tif")
    rgba = np.full((4, 160, 200), 255, np.uint8)
    rgba[:3] = np.array(GREEN, np.uint8)[:, None, None]
    rgba[3, :, 150:] = 0  # transparent right part: invalid and cropped away
    rgba[3, 10:20, 10:20] = 0
    write_raster(tmp_path / "rgba.tif", rgba, transform=from_origin(*UTM_ORIGIN, 10.0, 10.0))
    pair = load_pair(inp, tmp_path / "rgba.tif")
    assert pair.y.shape == (3, 160, 150) and pair.window == (0, 0, 160, 150)
    assert not pair.valid[10:20, 10:20].any() and pair.valid.sum() == 160 * 150 - 100

    rgb = np.zeros((3, 160, 200), np.uint8)  # nodata 0: black pixels are nodata, (0, 5, 0) is not
    rgb[1, :, :100] = 5
    write_raster(tmp_path / "nd.tif", rgb, transform=from_origin(*UTM_ORIGIN, 10.0, 10.0), nodata=0)
    pair = load_pair(inp, tmp_path / "nd.tif")
    assert pair.window == (0, 0, 160, 100) and pair.valid.all()


def test_palette_target_is_expanded_to_rgb(tmp_path):
    import rasterio

    inp = _utm_input(tmp_path / "s2.tif")
    idx = np.zeros((1, 160, 200), np.uint8)
    idx[0, :80] = 1
    path = write_raster(tmp_path / "pal.tif", idx, transform=from_origin(*UTM_ORIGIN, 10.0, 10.0))
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, {0: (*GREEN, 255), 1: (*RED, 255)})
    pair = load_pair(inp, path)
    assert tuple(pair.y[:, 0, 0]) == RED and tuple(pair.y[:, -1, 0]) == GREEN


@pytest.mark.parametrize("bands", [1, 2])
def test_target_without_rgb_bands_is_refused_with_the_fix(tmp_path, bands):
    inp = _utm_input(tmp_path / "s2.tif")
    write_raster(tmp_path / "grey.tif", np.zeros((bands, 160, 200), np.uint8))
    with pytest.raises(InputError, match=r"(?s)3 bands \(RGB\).*satgen:render_map_target"):
        load_pair(inp, tmp_path / "grey.tif")


def test_rasters_that_do_not_overlap_are_refused(tmp_path):
    inp = _utm_input(tmp_path / "s2.tif")
    far = np.zeros((3, 50, 50), np.uint8)
    write_raster(tmp_path / "far.tif", far, crs="EPSG:4326", transform=from_origin(-70.0, -30.0, 0.001, 0.001))
    with pytest.raises(InputError, match="do not overlap.*same area"):
        load_pair(inp, tmp_path / "far.tif")


def test_overlap_smaller_than_a_patch_says_how_big_it_is(tmp_path):
    inp = _utm_input(tmp_path / "s2.tif")
    small = np.zeros((3, 40, 30), np.uint8)  # 30 x 40 px of 10 m, inside the input
    write_raster(tmp_path / "small.tif", small, transform=from_origin(UTM_ORIGIN[0] + 500, UTM_ORIGIN[1] - 200,
                                                                       10.0, 10.0))
    with pytest.raises(InputError, match=r"overlap on only 30 x 40 px.*needs 64 x 64 px.*at most 16"):
        load_pair(inp, tmp_path / "small.tif", patch=64)
    pair = load_pair(inp, tmp_path / "small.tif", patch=16)  # big enough for a smaller patch
    assert pair.window == (20, 50, 60, 80)


def test_too_large_input_suggests_cropping(tmp_path):
    inp = _utm_input(tmp_path / "s2.tif")
    rgb = np.zeros((3, 160, 200), np.uint8)
    write_raster(tmp_path / "map.tif", rgb)
    with pytest.raises(InputError, match="200 x 160 px.*more than.*crop the input"):
        load_pair(inp, tmp_path / "map.tif", max_pixels=10_000)


def test_bands_are_selected_and_checked(tmp_path):
    inp = _utm_input(tmp_path / "s2.tif")
    write_raster(tmp_path / "map.tif", np.zeros((3, 160, 200), np.uint8))
    assert load_pair(inp, tmp_path / "map.tif", bands=[2]).band_names == ["B2"]
    with pytest.raises(InputError, match=r"band\(s\) \[3\] do not exist"):
        load_pair(inp, tmp_path / "map.tif", bands=[3])


# --------------------------------------------------------------------------- augmentation

def _pattern_pair(h=48, w=40, valid=None):
    """x (1 band, uint8) and y (3 bands) carry the same asymmetric pattern."""
    rng = np.random.default_rng(3)
    pattern = rng.integers(0, 256, (h, w), dtype=np.uint8)
    y = np.stack([pattern, pattern, pattern])
    valid = np.ones((h, w), bool) if valid is None else valid
    return Pair(x=pattern[None].copy(), y=y, valid=valid, transform=from_origin(0, 0, 1, 1), crs=None,
                band_names=["B1"], bands=[1], window=(0, 0, h, w))


IDENTITY_SCALING = BandScaling((0.0,), (255.0,))  # x/127.5 - 1, exactly like y


def test_dihedral_gives_the_eight_symmetries():
    a = np.arange(12).reshape(3, 4)
    outs = [dihedral(a, k) for k in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    assert np.array_equal(outs[0], a) and np.array_equal(outs[1], np.rot90(a)) and np.array_equal(outs[4], a[:, ::-1])
    stacked = dihedral(np.stack([a, a + 1]), 3)
    assert np.array_equal(stacked[1], outs[3] + 1)  # leading axes untouched


@pytest.mark.parametrize("k", range(8))
def test_augmentation_is_joint_for_every_transform(k):
    pair = _pattern_pair()
    pair.valid[3:9, 2:5] = False  # an asymmetric hole: valid must move with the pixels too
    pair.input_valid = pair.valid.copy()  # input nodata there, so x is zeroed as well as y
    plain = pair_sample(pair, IDENTITY_SCALING, 4, 2, 32, 0)
    s = pair_sample(pair, IDENTITY_SCALING, 4, 2, 32, k)
    for c in range(3):
        np.testing.assert_allclose(s["y"][c], s["x"][0], atol=1e-6)  # x and y still correspond pixel for pixel
    np.testing.assert_array_equal(s["valid"], dihedral(plain["valid"], k))
    assert np.all(s["x"][0][~s["valid"]] == 0) and np.all(s["y"][:, ~s["valid"]] == 0)
    if k:
        assert not np.array_equal(s["x"], plain["x"])  # the transform did something


def test_dataset_augments_jointly_with_all_eight_transforms():
    pair = _pattern_pair(64, 64)
    split = BlockSplit(64, 64, 32, 0.25, seed=0)
    ds = PairPatches(pair, split, IDENTITY_SCALING, patch=16, length=200, seed=1)
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        seen.add(item["k"])
        torch.testing.assert_close(item["x"][0], item["y"][1], atol=1e-6, rtol=0)
        raw = pair_sample(pair, IDENTITY_SCALING, item["row"], item["col"], 16, 0)
        np.testing.assert_array_equal(item["y"].numpy(), dihedral(raw["y"], item["k"]))
    assert seen == set(range(8))


# --------------------------------------------------------------------------- split

@pytest.mark.parametrize("h,w,block", [(300, 500, 64), (64, 64, 32), (1000, 90, 100)])
def test_blocks_partition_the_grid(h, w, block):
    split = BlockSplit(h, w, block, 0.2, seed=5)
    boxes = split.train_blocks + split.val_blocks
    cover = np.zeros((h, w), int)
    for r0, c0, r1, c1 in boxes:
        assert r1 - r0 <= block and c1 - c0 <= block
        cover[r0:r1, c0:c1] += 1
    assert cover.min() == 1 and cover.max() == 1
    assert not (split.mask("val") & split.mask("train")).any()
    assert (split.mask("val") | split.mask("train")).all()
    n = len(boxes)
    assert len(split.val_blocks) == min(n - 1, max(1, round(0.2 * n)))


def test_validation_blocks_are_reproducible_and_spread_over_the_scene():
    a = BlockSplit(1000, 1000, 100, 0.2, seed=7)
    assert a.val_blocks == BlockSplit(1000, 1000, 100, 0.2, seed=7).val_blocks
    assert any(BlockSplit(1000, 1000, 100, 0.2, seed=s).val_blocks != a.val_blocks for s in range(1, 5))
    val = a.mask("val")
    for part in (val[:500], val[500:], val[:, :500], val[:, 500:]):  # every half of the scene holds some
        assert part.mean() > 0.1
    rows = {b[0] for b in a.val_blocks}
    assert len(rows) >= 8  # not bunched into a few block rows


def test_split_needs_two_blocks_and_skips_empty_ones():
    with pytest.raises(InputError, match="smaller block size"):
        BlockSplit(100, 100, 256, 0.2)
    valid = np.zeros((200, 200), bool)
    valid[:, :100] = True  # right half has no data
    split = BlockSplit(200, 200, 50, 0.25, valid=valid)
    for b in split.train_blocks + split.val_blocks:
        assert b[1] < 100
    assert len(split.train_blocks) + len(split.val_blocks) == 8


def test_training_patches_never_touch_validation_blocks():
    h, w = 203, 317  # partial edge blocks
    valid = np.ones((h, w), bool)
    valid[100:140, 30:200] = False
    pair = _pattern_pair(h, w, valid)
    split = BlockSplit(h, w, 48, 0.3, seed=2)
    val = split.mask("val")
    ds = PairPatches(pair, split, IDENTITY_SCALING, patch=24, length=3000, seed=0)
    for i in range(len(ds)):
        _, row, col, _ = ds.window(i)
        assert not val[row:row + 24, col:col + 24].any()
        assert any(r0 <= row and row + 24 <= r1 and c0 <= col and col + 24 <= c1
                   for r0, c0, r1, c1 in split.train_blocks)
        assert pair.valid[row:row + 24, col:col + 24].mean() >= 0.9


def test_validation_tiles_lie_in_validation_blocks_without_overlap():
    pair = _pattern_pair(200, 260)
    split = BlockSplit(200, 260, 64, 0.25, seed=1)
    tiles = val_tiles(pair, split, 32)
    assert tiles == val_tiles(pair, split, 32)
    cover = np.zeros((200, 260), int)
    for row, col in tiles:
        cover[row:row + 32, col:col + 32] += 1
    assert cover.max() == 1 and not (cover.astype(bool) & ~split.mask("val")).any()
    full = [b for b in split.val_blocks if b[2] - b[0] == 64 and b[3] - b[1] == 64]
    assert len(tiles) >= 4 * len(full)
    samples = val_tiles(pair, split, 32, IDENTITY_SCALING)
    assert len(samples) == len(tiles) and samples[0]["x"].shape == (1, 32, 32) and samples[0]["x"].dtype == np.float32
    assert (samples[0]["row"], samples[0]["col"]) == tiles[0]


def test_patches_are_deterministic_for_a_seed_and_change_with_epoch_and_seed():
    pair = _pattern_pair(128, 128)
    split = BlockSplit(128, 128, 64, 0.25)
    a = PairPatches(pair, split, IDENTITY_SCALING, patch=32, length=20, seed=4)
    b = PairPatches(pair, split, IDENTITY_SCALING, patch=32, length=20, seed=4)
    first = [a.window(i) for i in range(20)]
    assert first == [b.window(i) for i in reversed(range(20))][::-1]
    loader = torch.utils.data.DataLoader(b, batch_size=5, num_workers=2)
    batched = torch.cat([batch["x"] for batch in loader])
    assert torch.equal(batched, torch.stack([a[i]["x"] for i in range(20)]))
    a.set_epoch(1)
    assert [a.window(i) for i in range(20)] != first
    c = PairPatches(pair, split, IDENTITY_SCALING, patch=32, length=20, seed=5)
    assert [c.window(i) for i in range(20)] != first


def test_patch_larger_than_every_block_is_refused():
    pair = _pattern_pair(128, 128)
    with pytest.raises(InputError, match="no training block is at least 64 x 64"):
        PairPatches(pair, BlockSplit(128, 128, 32, 0.25), IDENTITY_SCALING, patch=64)


def test_scaling_is_fitted_on_valid_training_pixels_only():
    h, w = 128, 128
    x = np.full((2, h, w), 1000, np.uint16)
    x[1] = 2000
    split = BlockSplit(h, w, 32, 0.25, seed=0)
    x[:, split.mask("val")] = 60000  # held-out values must not leak into the scaling
    valid = np.ones((h, w), bool)
    valid[:8] = False
    x[:, :8] = 50000
    x[0, 8:, ::2] = 1100
    pair = Pair(x=x, y=np.zeros((3, h, w), np.uint8), valid=valid, transform=from_origin(0, 0, 1, 1), crs=None,
                band_names=["a", "b"], bands=[1, 2], window=(0, 0, h, w))
    scaling = fit_input_scaling(pair, split)
    assert scaling.low == (1000.0, 2000.0) and scaling.high == (1100.0, 2001.0)
    assert fit_input_scaling(pair, split, max_samples=500, seed=3).high[0] == 1100.0


def test_real_blue_marble_pair_loads_aligned():
    from helpers import SAMPLES

    bmng, relief = SAMPLES / "bluemarble_bmng.tif", SAMPLES / "bluemarble_shadedrelief.tif"
    if not (bmng.exists() and relief.exists()):
        pytest.skip("sample data not built (make data)")
    import rasterio

    pair = load_pair(bmng, relief, patch=256)
    assert pair.x.shape == (3, 2700, 5400) and pair.valid.all() and pair.crs.to_epsg() == 4326
    with rasterio.open(relief) as src:  # 2x finer, same extent: nearest picks one of each 2x2
        ref = src.read(window=((0, 512), (0, 1024)))
    assert np.array_equal(pair.y[:, :256, :512], ref[:, 1::2, 1::2]) or \
        np.array_equal(pair.y[:, :256, :512], ref[:, ::2, ::2])
