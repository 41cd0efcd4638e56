"""Inference split over processes by torchrun: `torchrun --nproc_per_node=2 -m engine apply|translate|inpaint`
writes the same output, pixel for pixel, as one process.

The tile pass with a share of the strips (`run_tiles(strips=...)`) is checked in-process against
the whole pass; the command line runs under real torchrun (2 CPU processes, gloo) on tiny models
and rasters of several strips, one of a single strip (a process with nothing to do), and one
whose bottom half cannot be read (a failure in one process fails all, nothing written).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from engine.cli import main
from engine.distributed import Share
from engine.inpainting.apply import MaskOptions, inpaint
from engine.pipeline import RunStats, TileOptions, apply_model, run_tiles
from engine.progress import Feedback
from engine.translation.apply import translate
from engine.windows import TileGrid, reflect_indices
from helpers import ROOT, make_inpaint_model, make_model, smooth_image, write_raster

TILES = dict(tile_size=64, overlap=16, batch_size=3, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """The processes torchrun starts run torch on one thread (OMP_NUM_THREADS=1): so does the
    one-process run they are compared with."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pass(data, grid, scale, strips=None):
    """Output rows sent to the sink by run_tiles over `data` (C, H, W) with a model that mixes each tile's
    pixels (so overlaps differ), and the tiles run."""
    c, h, w = data.shape
    valid_in = (data[0] > -1.5)

    def source(r0, r1, c0, c1):
        ix = np.ix_(reflect_indices(r0, r1, h), reflect_indices(c0, c1, w))
        return data[(slice(None),) + ix], valid_in[ix], None

    def predict(x):
        y = x * np.float32(1.3) + x.mean(axis=(1, 2, 3), keepdims=True) + x[:, ::-1].cumsum(axis=3) / 7
        return y.repeat(scale, 2).repeat(scale, 3)

    rows, valid = [], []

    def sink(n, chunks):
        parts = [(v.copy(), ok.copy()) for v, ok, _c0 in chunks]
        rows.append(np.concatenate([v for v, _ in parts], axis=2))
        valid.append(np.concatenate([ok for _, ok in parts], axis=1))
        assert rows[-1].shape[1] == n

    stats = RunStats()
    run_tiles(grid, scale, c, source, predict, sink, 2, Feedback(), stats, strips)
    empty = np.zeros((c, 0, w * scale), np.float32), np.zeros((0, w * scale), bool)
    return (np.concatenate(rows or [empty[0]], axis=1), np.concatenate(valid or [empty[1]], axis=0),
            stats.tiles_run + stats.tiles_skipped)


@pytest.mark.parametrize("shape, tile, overlap, scale", [
    ((2, 157, 101), 32, 8, 1), ((1, 200, 45), 16, 4, 1), ((3, 61, 70), 16, 4, 2), ((1, 30, 30), 32, 8, 1),
    ((1, 97, 20), 16, 0, 1)])
@pytest.mark.parametrize("world", [2, 3, 5])
def test_the_shares_of_a_tile_pass_join_into_the_whole_bit_for_bit(shape, tile, overlap, scale, world):
    data = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    grid = TileGrid(shape[1], shape[2], tile, overlap)
    whole, whole_valid, _ = _pass(data, grid, scale)
    strips = len(grid.row_offsets)
    joined, joined_valid = [], []
    for rank in range(world):
        share = Share(rank, world).part(strips)
        r0, r1 = grid.strip_rows(share)
        rows, valid, tiles = _pass(data, grid, scale, share)
        assert rows.shape[1] == (r1 - r0) * scale
        # the share's strips and the one above them, unsent
        assert tiles == ((len(share) + (share.start > 0)) * len(grid.col_offsets) if share else 0)
        joined.append(rows)
        joined_valid.append(valid)
    assert np.array_equal(np.concatenate(joined, axis=1), whole)  # not close: equal, bit for bit
    assert np.array_equal(np.concatenate(joined_valid), whole_valid)


def test_strip_rows_cover_the_raster_once():
    grid = TileGrid(157, 50, 32, 8)  # strips at 0, 24, ..., 144: 7
    assert [grid.strip_rows(range(i, i + 1)) for i in (0, 1, 6)] == [(0, 24), (24, 48), (144, 157)]
    assert grid.strip_rows(range(0, 7)) == (0, 157)
    assert grid.strip_rows(range(7, 7)) == (157, 157)  # a process with no strip has no rows


def _torchrun(folder, *args) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 -m engine ARGS` in `folder`, on the CPU."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "engine", *map(str, args), "--device", "cpu"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def _same_rasters(a, b) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        nodata = {**x.profile, "nodata": None}, {**y.profile, "nodata": None}  # NaN != NaN
        assert nodata[0] == nodata[1]  # size, dtype, CRS, transform, blocks, compression
        assert x.nodata == y.nodata or np.isnan(x.nodata) and np.isnan(y.nodata)
        assert (x.descriptions, x.colorinterp, x.tags()) == (y.descriptions, y.colorinterp, y.tags())
        assert np.array_equal(x.read(), y.read(), equal_nan=x.dtypes[0].startswith("float"))
        assert x.overviews(1) == y.overviews(1)
        for level in range(len(x.overviews(1))):
            with rasterio.open(a, overview_level=level) as xo, rasterio.open(b, overview_level=level) as yo:
                assert np.array_equal(xo.read(), yo.read())


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_apply_in_two_processes_writes_what_one_does(tmp_path):
    data = smooth_image(3, 157, 301, "uint16")  # 3 strips of 64 px tiles, overlap 16
    data[:, 20:31, 40:75] = 0
    data[:, 96:157, 240:301] = 0  # a whole tile of nodata, skipped
    raster = write_raster(tmp_path / "in.tif", data, nodata=0)
    model = make_model(tmp_path / "m.satgen", tile=64, overlap=16)
    one = apply_model(model, raster, tmp_path / "one.tif", TileOptions(**TILES, overviews="yes"))
    run = _torchrun(tmp_path, "apply", "--model", model, "--input", raster, "--output", "two.tif",
                    "--tile-size", 64, "--overlap", 16, "--batch-size", 3, "--overviews", "yes")
    assert run.returncode == 0, run.stderr
    _same_rasters(tmp_path / "one.tif", tmp_path / "two.tif")
    with rasterio.open(tmp_path / "two.tif") as out:
        assert out.overviews(1) == [2]
    assert _files(tmp_path) == ["in.tif", "m.satgen", "one.tif", "two.tif"]  # no part left
    # one summary, by the first process, of the tiles both ran (those of the strip above a share run twice)
    assert run.stdout.count("wrote two.tif (301 x 157 px)") == 1
    assert f"{one.stats.tiles_run + len(TileGrid(157, 301, 64, 16).col_offsets)} tiles run" in run.stdout


def _same_content(a, b) -> None:
    """Same pixels, georeferencing, band descriptions, colours and tags (the layout may differ: a VRT, a COG)."""
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.width, x.height, x.count, x.dtypes, x.crs, x.transform, x.nodata) == \
            (y.width, y.height, y.count, y.dtypes, y.crs, y.transform, y.nodata)
        assert (x.descriptions, x.colorinterp, x.tags()) == (y.descriptions, y.colorinterp, y.tags())
        assert np.array_equal(x.read(), y.read())


def test_vrt_and_cog_joins_in_two_processes_hold_what_one_process_writes(tmp_path):
    data = smooth_image(3, 157, 301, "uint16")  # 3 strips of 64 px tiles: the processes' parts differ in height
    data[:, 20:31, 40:75] = 0
    raster = write_raster(tmp_path / "in.tif", data, nodata=0)
    model = make_model(tmp_path / "m.satgen", tile=64, overlap=16)
    apply_model(model, raster, tmp_path / "one.tif", TileOptions(**TILES))
    common = ("--model", model, "--input", raster, "--tile-size", 64, "--overlap", 16, "--batch-size", 3)
    vrt = _torchrun(tmp_path, "apply", *common, "--output", "two.vrt", "--join", "vrt")
    assert vrt.returncode == 0, vrt.stderr
    _same_content(tmp_path / "one.tif", tmp_path / "two.vrt")
    assert _files(tmp_path / "two_parts") == ["part-000.tif", "part-001.tif"]  # as the processes wrote them
    with rasterio.open(tmp_path / "two.vrt") as mosaic:
        assert mosaic.driver == "VRT" and len(mosaic.files) == 3
    cog = _torchrun(tmp_path, "apply", *common, "--output", "cog.tif", "--join", "cog", "--overviews", "yes")
    assert cog.returncode == 0, cog.stderr
    _same_content(tmp_path / "one.tif", tmp_path / "cog.tif")
    with rasterio.open(tmp_path / "cog.tif") as out:
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and out.overviews(1)
    assert _files(tmp_path) == ["cog.tif", "in.tif", "m.satgen", "one.tif", "two.vrt", "two_parts"]  # no part left


def test_vrt_and_cog_joins_in_one_process(tmp_path):
    raster = write_raster(tmp_path / "in.tif", smooth_image(3, 90, 130, "uint16"))
    model = make_model(tmp_path / "m.satgen", tile=64, overlap=16, task="translate")
    translate(raster, tmp_path / "one.tif", model, TileOptions(**TILES), snap=False)
    for name, join in (("one.vrt", "vrt"), ("cog.tif", "cog")):
        translate(raster, tmp_path / name, model, TileOptions(**TILES, join=join), snap=False)
        _same_content(tmp_path / "one.tif", tmp_path / name)
    assert _files(tmp_path / "one_parts") == ["part-000.tif"]
    # a second run with more parts, then one with fewer: no stale part is left for the VRT to miss
    (tmp_path / "one_parts" / "part-001.tif").write_bytes(b"stale")
    translate(raster, tmp_path / "one.vrt", model, TileOptions(**TILES, join="vrt"), snap=False)
    assert _files(tmp_path / "one_parts") == ["part-000.tif"]


@pytest.mark.parametrize("name, join, message", [
    ("out.vrt", "geotiff", "--join vrt"), ("out.tif", "vrt", "name it .vrt"),
    ("out.png", "cog", "name the output .tif"), ("out.tif", "zip", "join must be one of")])
def test_output_names_must_match_the_join(tmp_path, name, join, message):
    from engine.errors import InputError

    raster = write_raster(tmp_path / "in.tif", smooth_image(3, 40, 40, "uint16"))
    model = make_model(tmp_path / "m.satgen", tile=64, overlap=16)
    with pytest.raises(InputError, match=message):
        apply_model(model, raster, tmp_path / name, TileOptions(**TILES, join=join))
    assert _files(tmp_path) == ["in.tif", "m.satgen"]


def test_translate_with_a_process_that_has_no_strip(tmp_path):
    raster = write_raster(tmp_path / "in.tif", smooth_image(3, 40, 90, "uint16"))  # one strip for two processes
    model = make_model(tmp_path / "m.satgen", tile=64, overlap=16, task="translate")
    translate(raster, tmp_path / "one.tif", model, TileOptions(**TILES), snap=False)
    run = _torchrun(tmp_path, "translate", "--model", model, "--input", raster, "--output", "two.tif",
                    "--no-snap", "--tile-size", 64, "--overlap", 16, "--batch-size", 3)
    assert run.returncode == 0, run.stderr
    _same_rasters(tmp_path / "one.tif", tmp_path / "two.tif")
    assert _files(tmp_path) == ["in.tif", "m.satgen", "one.tif", "two.tif"]


@pytest.fixture(scope="module")
def inpaint_model(tmp_path_factory):
    return make_inpaint_model(tmp_path_factory.mktemp("model") / "inpaint.satgen")


def test_inpaint_in_two_processes_writes_what_one_does(inpaint_model, tmp_path):
    h, w = 150, 123
    data = smooth_image(4, h, w, "uint16", seed=1)
    data[:, :6, :20] = 0  # nodata
    cloud = np.zeros((1, h, w), np.uint8)
    for r0, r1, c0, c1 in ((10, 40, 10, 60), (60, 110, 30, 100), (120, 150, 0, 40)):  # across strips
        cloud[0, r0:r1, c0:c1] = 1
    raster = write_raster(tmp_path / "in.tif", data, nodata=0)
    mask = write_raster(tmp_path / "mask.tif", cloud)
    ref_data = smooth_image(4, h, w, "uint16", seed=2)
    ref_data[:, 70:100, :60] = 0  # the reference has no value there: the model fills it
    reference = write_raster(tmp_path / "ref.tif", ref_data, nodata=0)
    outputs = ("out", "mask_out", "source", "spread")
    inpaint(raster, tmp_path / "out1.tif", inpaint_model, MaskOptions(mask=str(mask)), TileOptions(**TILES),
            output_mask=tmp_path / "mask_out1.tif", output_source=tmp_path / "source1.tif",
            output_uncertainty=tmp_path / "spread1.tif", reference=[reference])
    run = _torchrun(tmp_path, "inpaint", "--model", inpaint_model, "--input", raster, "--mask", mask,
                    "--reference", reference, "--output", "out2.tif", "--output-mask", "mask_out2.tif",
                    "--output-source", "source2.tif", "--output-uncertainty", "spread2.tif",
                    "--tile-size", 64, "--overlap", 16, "--batch-size", 3)
    assert run.returncode == 0, run.stderr
    for name in outputs:
        _same_rasters(tmp_path / f"{name}1.tif", tmp_path / f"{name}2.tif")
    with rasterio.open(tmp_path / "source2.tif") as src:
        assert {0, 1, 100} <= set(np.unique(src.read(1)))  # the input's own, the reference's and the model's
    assert _files(tmp_path) == sorted(["in.tif", "mask.tif", "ref.tif"] +
                                      [f"{name}{i}.tif" for name in outputs for i in (1, 2)])


def _unreadable_below(path, row: int) -> None:
    """Spoil the compressed block of `path` (tiled 16 x 16) holding pixel (row, 0)."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_0_{row // 16}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_0_{row // 16}", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)


def test_a_failure_in_one_process_fails_all_and_writes_nothing(tmp_path):
    # 600 x 400 px: sampled for the stretch in 64 px windows (rows 0, 107, ..., 536), so only the tile pass
    # reads rows 496-511, in the second process's share
    raster = tmp_path / "in.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=400, height=600, count=3, dtype="uint16", tiled=True,
                       blockxsize=16, blockysize=16, compress="deflate", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(0, 6000, 10, 10)) as dst:
        dst.write(smooth_image(3, 600, 400, "uint16"))
    _unreadable_below(raster, 500)
    model = make_model(tmp_path / "m.satgen", tile=64, overlap=16)
    (tmp_path / "out.tif").write_bytes(b"an older output, kept")
    run = _torchrun(tmp_path, "apply", "--model", model, "--input", raster, "--output", "out.tif")
    assert run.returncode != 0
    assert "process 0 of 2: error: process 1 of this run failed (see the error it printed); nothing was written" \
        in run.stderr
    assert "RasterioIOError" in run.stderr  # process 1's own error
    assert "wrote" not in run.stdout
    assert _files(tmp_path) == ["in.tif", "m.satgen", "out.tif"]
    assert (tmp_path / "out.tif").read_bytes() == b"an older output, kept"


def test_commands_of_one_process_are_refused_under_torchrun(tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["info", "--model", str(tiny_model)]) == 2
    assert capsys.readouterr().err.strip() == "process 1 of 2: error: info runs in one process; start it without " \
                                              "torchrun"
