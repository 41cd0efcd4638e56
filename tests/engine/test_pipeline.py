"""The tile pipeline: exact stitching, georeferencing, bands, dtypes, nodata,
cancel and errors, on real GeoTIFFs and real (tiny) torch models."""

import os
import subprocess

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.errors import Cancelled, InputError, ModelFileError
from engine.pipeline import RunStats, TileOptions, apply_model, output_transform, run_tiles
from engine.progress import Feedback
from engine.windows import TileGrid
from helpers import Lines, make_model, smooth_image, write_raster


def stitch(data, tile, overlap, scale=1, batch=3, predict=None):
    """Run `data` (C, H, W) through run_tiles with a pointwise predictor."""
    c, h, w = data.shape
    grid = TileGrid(h, w, tile, overlap)
    rows = []

    def source(r0, r1, c0, c1):
        from engine.windows import reflect_indices
        return data[np.ix_(range(c), reflect_indices(r0, r1, h), reflect_indices(c0, c1, w))], None, None

    predict = predict or (lambda x: x.repeat(scale, 2).repeat(scale, 3))
    def sink(n, chunks):
        rows.append(np.concatenate([v.copy() for v, _valid, _c0 in chunks], axis=2))
        assert rows[-1].shape[1] == n

    run_tiles(grid, scale, c, source, predict, sink, batch, Feedback(), RunStats())
    return np.concatenate(rows, axis=1)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 5), (3, 64, 64), (1, 100, 37), (2, 33, 129), (1, 20, 4500)])
@pytest.mark.parametrize("tile,overlap", [(16, 0), (16, 4), (32, 8), (8, 4)])
def test_stitching_a_pointwise_model_is_exact(shape, tile, overlap):
    data = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(stitch(data, tile, overlap), data, atol=1e-5)


def test_writer_takes_uneven_row_groups_and_writes_whole_blocks(tmp_path):
    from engine.raster import GeoTiffWriter

    data = np.random.default_rng(5).integers(0, 255, (3, 600, 300), dtype=np.uint8)
    writer = GeoTiffWriter(str(tmp_path / "w.tif"), width=300, height=600, dtype="uint8", crs="EPSG:32633",
                           transform=from_origin(0, 600, 1, 1), nodata=None, band_names=["a", "b", "c"])
    row = 0
    for n in (37, 250, 1, 300, 12):
        writer.next_rows(n)[:] = data[:, row:row + n]
        row += n
    writer.close()
    with rasterio.open(tmp_path / "w.tif") as src:
        assert src.block_shapes[0] == (256, 256)
        np.testing.assert_array_equal(src.read(), data)


def test_stitching_with_scale_two():
    data = np.random.default_rng(2).standard_normal((2, 45, 70)).astype(np.float32)
    out = stitch(data, 16, 4, scale=2)
    np.testing.assert_allclose(out, data.repeat(2, 1).repeat(2, 2), atol=1e-5)


@pytest.mark.parametrize("bands", [1, 2, 4])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_apply_keeps_georeferencing_for_bands_and_dtypes(tmp_path, bands, dtype):
    transform = from_origin(300000.5, 4200000.25, 30.0, 30.0)
    src = write_raster(tmp_path / "in.tif", smooth_image(bands, 70, 45, dtype), crs="EPSG:32618",
                       transform=transform)
    model = make_model(tmp_path / "m.satgen", in_bands=bands, dtype=dtype)
    result = apply_model(model, src, tmp_path / "out.tif", TileOptions(batch_size=2))
    with rasterio.open(result.output) as out:
        assert out.crs.to_epsg() == 32618
        assert out.transform == transform
        assert (out.width, out.height, out.count, out.dtypes[0]) == (45, 70, 3, "uint8")
        assert out.descriptions == ("red", "green", "blue")
        assert out.read().std() > 0  # a real model output, not a constant
    assert result.stats.tiles_run == len(TileGrid(70, 45, 32, 8))


def test_raster_smaller_than_one_tile(tmp_path):
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 5, 9))
    result = apply_model(make_model(tmp_path / "m.satgen"), src, tmp_path / "out.tif")
    with rasterio.open(result.output) as out:
        assert out.shape == (5, 9)
    assert result.stats.tiles_run == 1


def test_scale_factor_scales_the_geotransform(tmp_path):
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 40, 50))
    with rasterio.open(src) as s:
        scaled = output_transform(s, 2)
        assert (scaled.a, scaled.e, scaled.c, scaled.f) == (5.0, -5.0, s.transform.c, s.transform.f)
    # a card promising scale 2 on a U-Net that keeps the size is refused, nothing written
    with pytest.raises(ModelFileError, match="scale 2"):
        apply_model(make_model(tmp_path / "m.satgen", scale=2), src, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_nodata_round_trips_and_empty_tiles_are_skipped(tmp_path):
    data = smooth_image(3, 96, 96, "uint16")
    data[:, :40, :] = 0  # the top strip is nodata: whole tiles of it are skipped
    data[:, 60:62, 10:13] = 0
    src = write_raster(tmp_path / "in.tif", data, nodata=0)
    result = apply_model(make_model(tmp_path / "m.satgen"), src, tmp_path / "out.tif")
    with rasterio.open(result.output) as out:
        assert out.nodata == 0
        masked = out.read_masks(1) == 0
    np.testing.assert_array_equal(masked, (data == 0).any(axis=0))  # nodata in any band = nodata
    assert result.stats.tiles_skipped > 0


def test_float_nan_nodata(tmp_path):
    data = smooth_image(3, 40, 40, "float32")
    data[1, 5:9, 5:9] = np.nan
    src = write_raster(tmp_path / "in.tif", data, nodata=float("nan"))
    out_path = apply_model(make_model(tmp_path / "m.satgen", dtype="float32", out_dtype="float32"),
                           src, tmp_path / "out.tif").output
    with rasterio.open(out_path) as out:
        arr = out.read()
    assert np.isnan(arr[:, 5:9, 5:9]).all()
    assert np.isfinite(arr).sum() == 3 * (40 * 40 - 16)


def test_band_selection_explicit_and_by_description(tmp_path):
    data = smooth_image(5, 40, 40)
    src = write_raster(tmp_path / "in.tif", data, descriptions=["B0", "B3", "B1", "X", "B2"])
    model = make_model(tmp_path / "m.satgen")  # bands B1, B2, B3
    by_name = apply_model(model, src, tmp_path / "a.tif").output
    explicit = apply_model(model, src, tmp_path / "b.tif", TileOptions(bands=[3, 5, 2])).output
    with rasterio.open(by_name) as a, rasterio.open(explicit) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with pytest.raises(InputError, match="choose which 3, in the model's order, with BANDS / --bands, e.g. 1,2,3$"):
        apply_model(model, write_raster(tmp_path / "five.tif", data), tmp_path / "c.tif")
    # too few bands: no selection can help, and the message does not suggest one
    with pytest.raises(InputError, match="has only 2, so this model cannot run on it") as info:
        apply_model(model, write_raster(tmp_path / "two.tif", data[:2]), tmp_path / "c.tif")
    assert "BANDS" not in str(info.value)
    with pytest.raises(InputError, match="do not exist"):
        apply_model(model, src, tmp_path / "d.tif", TileOptions(bands=[1, 2, 9]))
    assert not (tmp_path / "c.tif").exists() and not (tmp_path / "d.tif").exists()


def test_wrong_dtype_and_wrong_task_are_refused(tmp_path):
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 40, 40, "uint8"))
    with pytest.raises(InputError, match="uint16"):
        apply_model(make_model(tmp_path / "m.satgen", dtype="uint16"), src, tmp_path / "out.tif")
    with pytest.raises(ModelFileError, match="synthesize"):
        apply_model(make_model(tmp_path / "s.satgen", dtype="uint8", task="synthesize"), src, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_tile_size_must_suit_the_model(tmp_path):
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 40, 40))
    with pytest.raises(InputError, match="multiple of 8"):
        apply_model(make_model(tmp_path / "m.satgen"), src, tmp_path / "out.tif", TileOptions(tile_size=20))


class CancelAfter(Feedback):
    def __init__(self, checks):
        self.checks = checks

    def is_cancelled(self):
        self.checks -= 1
        return self.checks < 0


def test_cancel_leaves_nothing_behind_and_keeps_an_existing_output(tmp_path):
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 300, 300))
    target = tmp_path / "out.tif"
    target.write_bytes(b"previous result")
    with pytest.raises(Cancelled):
        apply_model(make_model(tmp_path / "m.satgen"), src, target, TileOptions(batch_size=2), CancelAfter(20))
    assert target.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "m.satgen", "out.tif"]


def test_error_mid_run_leaves_nothing_behind(tmp_path):
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 200, 200))

    class Boom(Feedback):
        calls = 0

        def progress(self, fraction):
            self.calls += 1
            if self.calls == 5:
                raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        apply_model(make_model(tmp_path / "m.satgen"), src, tmp_path / "out.tif", feedback=Boom())
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "m.satgen"]


def test_input_is_never_modified_and_cannot_be_overwritten(tmp_path):
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 50, 50))
    before = src.read_bytes()
    model = make_model(tmp_path / "m.satgen")
    with pytest.raises(InputError, match="overwrite the input"):
        apply_model(model, src, src)
    apply_model(model, src, tmp_path / "out.tif")
    assert src.read_bytes() == before


def test_png_with_world_file_and_vrt_inputs(tmp_path):
    data = smooth_image(3, 40, 60, "uint8")
    png = tmp_path / "in.png"
    with rasterio.open(png, "w", driver="PNG", width=60, height=40, count=3, dtype="uint8",
                       transform=from_origin(1000.0, 2000.0, 2.0, 2.0), WORLDFILE="YES") as dst:
        dst.write(data)
    for aux in tmp_path.glob("*.aux.xml"):
        aux.unlink()  # georeferencing must come from the world file alone
    assert (tmp_path / "in.wld").exists() or (tmp_path / "in.pgw").exists()
    vrt = tmp_path / "in.vrt"
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">in.png'
        f'</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>' for b in (1, 2, 3))
    vrt.write_text(f'<VRTDataset rasterXSize="60" rasterYSize="40"><GeoTransform>1000, 2, 0, 2000, 0, -2'
                   f'</GeoTransform>{bands}</VRTDataset>')
    model = make_model(tmp_path / "m.satgen", dtype="uint8")
    for name in ("in.png", "in.vrt"):
        out = apply_model(model, tmp_path / name, tmp_path / f"{name}.tif").output
        with rasterio.open(out) as o:
            assert o.transform == from_origin(1000.0, 2000.0, 2.0, 2.0)
            assert o.shape == (40, 60)


def test_jpeg2000_input(tmp_path):
    data = smooth_image(3, 40, 48, "uint16")
    jp2 = tmp_path / "in.jp2"
    with rasterio.open(jp2, "w", driver="JP2OpenJPEG", width=48, height=40, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000.0, 5800000.0, 10.0, 10.0),
                       QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(data)
    out = apply_model(make_model(tmp_path / "m.satgen"), jp2, tmp_path / "out.tif").output
    with rasterio.open(out) as o:
        assert o.crs.to_epsg() == 32633 and o.transform == from_origin(500000.0, 5800000.0, 10.0, 10.0)


def test_missing_input_and_missing_output_folder(tmp_path):
    model = make_model(tmp_path / "m.satgen")
    with pytest.raises(InputError, match="does not exist"):
        apply_model(model, tmp_path / "nope.tif", tmp_path / "out.tif")
    src = write_raster(tmp_path / "in.tif", smooth_image(3, 20, 20))
    with pytest.raises(InputError, match="output folder"):
        apply_model(model, src, tmp_path / "no" / "out.tif")


def test_a_raster_without_georeferencing_stays_without_and_is_said(tmp_path):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    from engine.raster import is_georeferenced

    data = smooth_image(3, 70, 90)
    plain = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(plain, "w", driver="GTiff", width=90, height=70, count=3, dtype=data.dtype) as dst:
            dst.write(data)
        listen = Lines()
        out = apply_model(make_model(tmp_path / "m.satgen"), plain, tmp_path / "out.tif",
                          TileOptions(device="cpu"), listen).output
        with rasterio.open(out) as o:
            assert not is_georeferenced(o) and o.crs is None  # no identity transform that flips it in QGIS
            assert "Origin" not in subprocess.run(["gdalinfo", str(out)], capture_output=True, text=True).stdout
    assert any("no georeferencing" in m for m in listen.lines)


def test_values_unlike_the_training_data_are_warned_and_a_scene_stretch_fits_them(tmp_path):
    """A model fitted on 0..4000 given a raster of 8,000-48,000 (a Landsat-8 DN range): a warning
    naming the bands, the ranges and the fix; with normalize="scene" no warning, and the output is
    that of the same scene in the model's range (a percentile stretch ignores gain and offset)."""
    model = make_model(tmp_path / "m.satgen")
    scene = smooth_image(3, 96, 96)  # 0..4000, the model's range
    bright = write_raster(tmp_path / "bright.tif", (scene.astype(np.uint32) * 10 + 8000).astype(np.uint16))
    plain = write_raster(tmp_path / "plain.tif", scene)
    fb = Lines()
    apply_model(model, plain, tmp_path / "plain_out.tif", feedback=fb)
    assert not fb.warnings()
    fb = Lines()
    apply_model(model, bright, tmp_path / "model_out.tif", feedback=fb)
    warning = fb.warnings()[0]
    for text in ("band 1 (the model's B1)", "0..4000", "NORMALIZE=1", "--normalize scene"):
        assert text in warning
    fb = Lines()
    apply_model(model, bright, tmp_path / "scene_out.tif", feedback=fb, normalize="scene")
    assert not fb.warnings() and any("scene stretch" in x for x in fb.lines)
    apply_model(model, plain, tmp_path / "plain_scene.tif", normalize="scene")
    with rasterio.open(tmp_path / "scene_out.tif") as a, rasterio.open(tmp_path / "plain_scene.tif") as b:
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1
    with pytest.raises(InputError, match="normalize must be"):
        apply_model(model, plain, tmp_path / "x.tif", normalize="auto")


def test_a_scene_stretch_takes_other_dtypes_and_needs_valid_pixels(tmp_path):
    model = make_model(tmp_path / "m.satgen", dtype="uint16")
    floats = write_raster(tmp_path / "f.tif", smooth_image(3, 40, 40, "float32"))
    result = apply_model(model, floats, tmp_path / "f_out.tif", normalize="scene")
    assert result.width == 40
    empty = write_raster(tmp_path / "e.tif", np.zeros((3, 40, 40), np.uint16), nodata=0)
    with pytest.raises(InputError, match="valid pixels to fit"):
        apply_model(model, empty, tmp_path / "e_out.tif", normalize="scene")
    assert not (tmp_path / "e_out.tif").exists()
