"""Raster reading: the RollingReader the pipeline uses returns exactly what BlockReader
returns, for every window the pipeline asks and for windows in any order; the writer's
compression falls back when GDAL lacks ZSTD; the pixel sample behind stretches and range
checks reads one block per window."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.errors import InputError
from engine.raster import BlockReader, GeoTiffWriter, RollingReader, _sample_starts, overview_factors, sample_pixels
from engine.scaling import BandScaling, range_mismatch
from engine.windows import TileGrid
from helpers import smooth_image


def write_blocked(path, data, *, nodata=None, block=None, mask=False):
    """A GeoTIFF tiled in `block` px blocks, or striped (block=None: GDAL's default strips);
    `mask`: with a GDAL dataset mask (no nodata value) hiding a few pixels."""
    bands, rows, cols = data.shape
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype=data.dtype,
                   crs="EPSG:32633", transform=from_origin(500000.0, 5800000.0, 10.0, 10.0), nodata=nodata,
                   compress="deflate")
    if block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if mask:
            hidden = np.full((rows, cols), 255, np.uint8)
            hidden[rows // 3:rows // 3 + 5, 2:9] = 0
            dst.write_mask(hidden)
    return path


def pipeline_windows(grid: TileGrid, batch: int):
    """The windows run_tiles asks its source for, in its order."""
    cols = grid.col_offsets
    for r in grid.row_offsets:
        for b0 in range(0, len(cols), batch):
            yield r, r + grid.tile, cols[b0], cols[min(len(cols), b0 + batch) - 1] + grid.tile


def assert_same(a, b):
    (da, va), (db, vb) = a, b
    assert da.dtype == db.dtype
    np.testing.assert_array_equal(da, db)
    assert (va is None) == (vb is None)
    if va is not None:
        np.testing.assert_array_equal(va, vb)


@pytest.mark.parametrize("shape,block,tile,overlap,batch", [
    ((3, 200, 150), 32, 48, 8, 2),      # block rows smaller than a tile
    ((2, 181, 97), 64, 32, 5, 3),       # blocks taller than a tile
    ((1, 300, 70), None, 40, 12, 4),    # striped file
    ((2, 20, 33), 16, 64, 8, 2),        # raster smaller than one tile: reflected both ways
    ((1, 1, 1), None, 16, 4, 1),
    ((3, 97, 260), 16, 16, 8, 5),       # overlap of half a tile, the most a grid allows
])
@pytest.mark.parametrize("kind", ["plain", "nodata", "nan", "mask", "twin", "twins", "wide"])
def test_rolling_reader_matches_block_reader_on_pipeline_windows(tmp_path, monkeypatch, shape, block, tile, overlap,
                                                                  batch, kind):
    dtype = "float32" if kind == "nan" else "uint16"
    data = smooth_image(*shape, dtype=dtype)
    nodata = {"nodata": 0, "nan": float("nan")}.get(kind)
    if kind == "nodata":
        data[:, shape[1] // 2:shape[1] // 2 + 3, :4] = 0
        data[0, -1, -1] = 0
    if kind == "nan":
        data[-1, :2, -3:] = np.nan
        data[0, -1, 0] = np.inf
    path = write_blocked(tmp_path / "in.tif", data, nodata=nodata, block=block, mask=kind == "mask")
    bands = list(range(1, shape[0] + 1))
    grid = TileGrid(shape[1], shape[2], tile, overlap)
    monkeypatch.setattr(RollingReader, "min_split", 0)  # every read split between the threads
    if kind == "wide":  # as if too wide to read ahead to the end of a block row
        monkeypatch.setattr(RollingReader, "look_ahead_bytes", 0)
    with rasterio.open(path) as src, rasterio.open(path) as twin, rasterio.open(path) as third:
        plain = BlockReader(src, bands)
        twins = {"twin": [twin], "twins": [twin, third]}.get(kind, [])
        rolling = RollingReader(src, bands, max_rows=tile, twins=twins)
        if kind == "wide":
            assert rolling.block == 1 and rolling.capacity == min(shape[1], tile)
        if kind not in ("plain", "twin", "twins", "wide"):
            assert plain.has_invalid
        if twins:  # each handle decodes whole blocks; as many as there are blocks across, at most
            blocks = -(-shape[2] // (block or shape[2]))
            assert len(rolling._parts) == min(blocks, 1 + len(twins))
            edges = [c for _, c0, c1 in rolling._parts for c in (c0, c1)]
            assert edges[0] == 0 and edges[-1] == shape[2] and all(c % (block or 1) == 0 for c in edges[:-1])
        for window in pipeline_windows(grid, batch):
            assert_same(rolling.read(*window), plain.read(*window))
        # and any window, in any order, up and down
        rng = np.random.default_rng(0)
        for _ in range(60):
            r0 = int(rng.integers(-tile, shape[1] + tile))
            c0 = int(rng.integers(-tile, shape[2] + tile))
            window = r0, r0 + int(rng.integers(1, tile + 1)), c0, c0 + int(rng.integers(1, 3 * tile))
            assert_same(rolling.read(*window), plain.read(*window))
        rolling.close()


def test_rolling_reader_reads_each_block_row_once(tmp_path):
    data = smooth_image(2, 300, 90)
    path = write_blocked(tmp_path / "in.tif", data, block=32)
    grid = TileGrid(300, 90, 48, 16)
    with rasterio.open(path) as src:
        reader = RollingReader(src, [1, 2], max_rows=48)
        windows = []
        real_read = src.read

        def spy(*args, **kwargs):
            windows.append(kwargs["window"])
            return real_read(*args, **kwargs)

        src.read = spy
        for window in pipeline_windows(grid, 2):
            out, valid = reader.read(*window)
            assert not out.flags.writeable and valid is None
    rows = [(int(w.row_off), int(w.row_off + w.height)) for w in windows]
    assert rows[0][0] == 0 and rows[-1][1] == 300
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))  # consecutive: no row twice
    assert all(r1 % 32 == 0 for _r0, r1 in rows[:-1])  # whole block rows
    assert all(w.col_off == 0 and w.width == 90 for w in windows)
    assert reader.capacity == 48 + 31


def test_rolling_reader_reads_a_window_taller_than_it_holds_directly(tmp_path):
    path = write_blocked(tmp_path / "in.tif", smooth_image(1, 100, 10), block=16)
    with rasterio.open(path) as src:
        rolling, plain = RollingReader(src, [1], max_rows=8), BlockReader(src, [1])
        assert rolling.capacity == 8 + 15
        for window in [(0, 8, 0, 10), (0, 60, -3, 12), (90, 98, 0, 10), (50, 150, 0, 10), (96, 104, 0, 10)]:
            assert_same(rolling.read(*window), plain.read(*window))


def test_writer_compression_and_fallback(tmp_path, monkeypatch):
    import engine.raster as raster

    def write(name):
        writer = GeoTiffWriter(str(tmp_path / name), width=300, height=260, dtype="uint8", crs="EPSG:32633",
                               transform=from_origin(500000.0, 5800000.0, 10.0, 10.0), nodata=None,
                               band_names=["a"])
        writer.write_rows(np.arange(300 * 260, dtype=np.uint8).reshape(1, 260, 300))
        writer.close()
        with rasterio.open(tmp_path / name) as dst:
            assert dst.read(1).tobytes() == np.arange(300 * 260, dtype=np.uint8).tobytes()
            return dst.compression.name.lower(), dst.block_shapes[0]

    assert write("default.tif") == (raster.output_compression()["compress"], (256, 256))
    monkeypatch.setattr(raster, "_zstd", lambda: False)
    assert write("fallback.tif") == ("deflate", (256, 256))


def test_overview_levels_by_size_and_choice():
    assert overview_factors(4096, 100) == [] and overview_factors(300, 300, "no") == []
    assert overview_factors(4097, 100) == [2, 4, 8, 16, 32]  # halved until it fits in 256 px
    assert overview_factors(300, 300, "yes") == [2]
    with pytest.raises(InputError, match="overviews must be one of auto, yes, no"):
        overview_factors(10, 10, "maybe")


@pytest.mark.parametrize("categorical", [True, False])
def test_overviews_average_values_and_keep_classes(tmp_path, categorical):
    """Classes (map colours, masks) keep their values in the overviews; images are averaged."""
    checker = (np.indices((600, 600)).sum(axis=0) % 2 * 100).astype(np.uint8)[None]
    path = str(tmp_path / "o.tif")
    writer = GeoTiffWriter(path, width=600, height=600, dtype="uint8", crs="EPSG:32633",
                           transform=from_origin(0, 0, 1, 1), nodata=None, band_names=["class"], overviews="yes",
                           categorical=categorical)
    writer.write_rows(checker)
    writer.close()
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4]
        small = src.read(1, out_shape=(300, 300))
    assert set(np.unique(small)) <= {0, 100} if categorical else set(np.unique(small)) == {50}


@pytest.mark.parametrize("size,block", [(1947, 256), (1000, 256), (300, 256), (5000, 512), (700, 1), (700, 700)])
def test_sample_windows_sit_inside_blocks_and_spread(size, block):
    side, count = 64, 6
    starts = _sample_starts(size, side, count, block)
    assert 1 <= len(starts) <= count and starts == sorted(set(starts))
    assert all(0 <= s <= size - side for s in starts)
    assert starts[-1] - starts[0] >= (size - side) / 2  # spread over the axis, not bunched
    if side <= block < size:  # each window within one block, but a window in a short last block
        crossing = [s for s in starts if s // block != (s + side - 1) // block]
        assert crossing in ([], [size - side])


def test_sample_pixels_reads_one_block_per_window_and_keeps_only_valid_pixels(tmp_path, monkeypatch):
    data = (np.arange(3 * 1100 * 900) % 997).reshape(3, 1100, 900).astype(np.uint16) + 1
    data[:, :300, :] = 0  # nodata
    path = write_blocked(tmp_path / "a.tif", data, nodata=0, block=256)
    windows = []
    read = BlockReader.read
    monkeypatch.setattr(BlockReader, "read", lambda self, *w: windows.append(w) or read(self, *w))
    with rasterio.open(path) as src:
        samples = sample_pixels(src, [1, 2, 3], max_pixels=100_000)
    assert len(windows) == 16  # 4 x 4 windows of 64 px for 100,000 pixels
    blocks = {(r0 // 256, c0 // 256) for r0, r1, c0, c1 in windows}
    assert len(blocks) == 16 and all(r0 // 256 == (r1 - 1) // 256 and c0 // 256 == (c1 - 1) // 256
                                     for r0, r1, c0, c1 in windows)  # one block each, each another block
    assert samples.shape[0] == 3 and 0 < samples.shape[1] < 16 * 64 * 64
    assert samples.min() >= 1  # nodata left out
    assert samples.shape[1] == sum(int((data[0, r0:r1, c0:c1] > 0).sum()) for r0, r1, c0, c1 in windows)


def test_range_mismatch_flags_offset_and_contrast_not_a_fit():
    rng = np.random.default_rng(0)
    scaling = BandScaling((100.0, 0.0), (1100.0, 1.0))
    fit = np.stack([rng.uniform(100, 1100, 5000), rng.uniform(0, 1, 5000)])
    assert range_mismatch(fit, scaling, ["a", "b"]) == []
    assert range_mismatch(fit[:, :50] * 1000, scaling, ["a", "b"]) == []  # too few to tell
    lines = range_mismatch(np.stack([fit[0] / 10000, fit[1] * 10000]), scaling, ["a", "b"])
    assert len(lines) == 2 and "band a" in lines[0] and "band b" in lines[1]
    assert "far outside" in lines[1]
    narrow = np.stack([600 + (fit[0] - 600) / 50, fit[1]])
    (line,) = range_mismatch(narrow, scaling, ["a", "b"])
    assert "band a" in line and "contrast" in line
