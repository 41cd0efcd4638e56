"""Several reference dates for the cloud fill, end to end: `inpaint(reference=...)` and
`python -m engine inpaint --reference ...` with a real (untrained, tiny) inpainting model
on tiny rasters written with rasterio.

Covered: the per-pixel choice among dates with a known answer, the nearest-date
combination and its source codes (the order given, not the date order), a reference
in another CRS, references' own clouds (mask raster, polygons, QA band) never taken
from, the source and uncertainty outputs, date parsing, and bad input refused with
nothing written. The fills' maths (`combine_references`) is tested in test_fills.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.errors import InputError
from engine.inpainting.apply import MASK_NODATA, MODEL_CODE, MaskOptions, inpaint
from engine.inpainting.references import MAX_REFERENCES, ReferenceOptions, date_order, parse_date, raster_date
from engine.pipeline import TileOptions
from engine.raster import verify_geotiff
from helpers import ROOT, Lines, make_inpaint_model, write_raster

H, W = 64, 64  # one 64 px tile
ORIGIN = from_origin(500000.0, 5800000.0, 10.0, 10.0)  # write_raster's default grid, EPSG:32633
TILES = TileOptions(tile_size=64, overlap=16, batch_size=4, device="cpu")
CLOUD_DN = np.array([5000, 5100, 5200, 5600], np.uint16)  # a white cloud in the input
WILD = 60000  # a reference's value under its own cloud: never to be taken


def boxes(*spans: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W) bool, True in the (row0, row1, col0, col1) boxes."""
    m = np.zeros((H, W), bool)
    for r0, r1, c0, c1 in spans:
        m[r0:r1, c0:c1] = True
    return m


CLOUD = boxes((12, 52, 12, 52))  # the input's cloud


def truth_image(seed: int = 0) -> np.ndarray:
    """The clear ground: a smooth 4-band uint16 scene (products of sinusoids, periods of 19 to 44 px),
    about 600..3400 DN, so bilinear warps change it little."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    bands = []
    for _ in range(4):
        field = sum(np.sin(x / rng.uniform(3, 7) + rng.uniform(0, 6))
                    * np.cos(y / rng.uniform(3, 7) + rng.uniform(0, 6)) for _ in range(2))
        bands.append(2000 + 700 * field)
    return np.stack(bands).round().astype(np.uint16)


TRUTH = truth_image()


def cloudy_input(path, cloud=CLOUD, truth=TRUTH, **kw):
    data = truth.copy()
    data[:, cloud] = CLOUD_DN[:, None]
    return write_raster(path, data, **kw)


def mask_raster(path, m: np.ndarray, **kw):
    return write_raster(path, m[None].astype(np.uint8), **kw)


def polygon_mask(path, r0: int, r1: int, c0: int, c1: int):
    """A GeoJSON polygon over pixel rows r0..r1, cols c0..c1 of the input grid, in EPSG:32633 (its "crs" member)."""
    x0, x1 = 500000.0 + 10 * c0, 500000.0 + 10 * c1
    y0, y1 = 5800000.0 - 10 * r1, 5800000.0 - 10 * r0
    doc = {"type": "FeatureCollection",
           "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
           "features": [{"type": "Feature", "properties": {"kind": "cloud"}, "geometry": {
               "type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}]}
    path.write_text(json.dumps(doc))
    return path


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def err(out: np.ndarray, where: np.ndarray) -> np.ndarray:
    """|output - truth| in DN at the pixels `where`, (bands, n)."""
    return np.abs(out.astype(np.float64) - TRUTH.astype(np.float64))[:, where]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a second torch thread only spins, the more so on a busy machine (as in fuzzing.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_inpaint_model(tmp_path_factory.mktemp("model") / "inpaint.satgen")


def fill(tmp_path, model, name, input_path, mask, reference, **kw):
    out = tmp_path / name
    inpaint(input_path, out, model, MaskOptions(mask=str(mask)), TILES, reference=reference, **kw)
    return out


# --- 1. per pixel, the date clear there ---------------------------------------------------------------------------

def test_each_cloudy_pixel_is_filled_from_the_date_clear_there(model, tmp_path):
    """Reference A (0.8 x truth + 150, float32) is clear only on the left of the cloud, B (the truth) only on the
    right; a strip is under both their clouds. The fill matches the truth, the source layer says 1 left,
    2 right, 100 (the model) in the strip and 0 outside the cloud; the model fills the strip from the
    reference-filled pixels around it."""
    image = cloudy_input(tmp_path / "in.tif")
    mask = mask_raster(tmp_path / "cloud.tif", CLOUD)
    strip = boxes((40, 48, 0, W))
    left = boxes((0, H, 0, 32))
    ref_a = write_raster(tmp_path / "a.tif", (0.8 * TRUTH + 150).astype(np.float32))
    ref_b = write_raster(tmp_path / "b.tif", TRUTH.copy())
    mask_a = mask_raster(tmp_path / "a_clouds.tif", ~left | strip)
    mask_b = mask_raster(tmp_path / "b_clouds.tif", left | strip)
    refs = ReferenceOptions(paths=[str(ref_a), str(ref_b)], masks=[str(mask_a), str(mask_b)])
    out = fill(tmp_path, model, "out.tif", image, mask, refs, output_source=tmp_path / "src.tif")
    filled, source = read(out), read(tmp_path / "src.tif")[0]

    from_a, from_b, neither = CLOUD & left & ~strip, CLOUD & ~left & ~strip, CLOUD & strip
    assert (source[from_a] == 1).all() and (source[from_b] == 2).all()
    assert (source[neither] == MODEL_CODE).all() and (source[~CLOUD] == 0).all()
    assert err(filled, from_a).max() <= 2  # the linear change recovered, up to rounding
    assert err(filled, from_b).max() <= 1
    assert np.array_equal(filled[:, ~CLOUD], read(image)[:, ~CLOUD])
    # where no date is clear, the model fills, seeing the pixels filled from the references as known: the
    # strip between them is filled from both sides, far closer than the model from the input's clear pixels alone
    plain = read(fill(tmp_path, model, "plain.tif", image, mask, None))
    assert err(filled, neither).mean() < 0.5 * err(plain, neither).mean()  # measured 128 vs 342 DN


# --- 2. the nearest date -------------------------------------------------------------------------------------------

def test_nearest_takes_the_nearest_date_and_codes_follow_the_order_given(model, tmp_path):
    image = cloudy_input(tmp_path / "in.tif")
    mask = mask_raster(tmp_path / "cloud.tif", CLOUD)
    rng = np.random.default_rng(1)
    refs = {}
    for day in ("2020-06-01", "2020-07-15", "2020-09-01"):  # every one clear everywhere, each with its own noise
        noisy = TRUTH + rng.normal(0, 40, TRUTH.shape)
        refs[day] = str(write_raster(tmp_path / f"s_{day}.tif", noisy.astype(np.float32)))
    june, july, september = refs.values()

    def run(name, paths, **kw):
        feedback = Lines()
        out = tmp_path / f"{name}.tif"
        inpaint(image, out, model, MaskOptions(mask=str(mask)), TILES, feedback=feedback, output_source=tmp_path /
                f"{name}_src.tif", reference=ReferenceOptions(paths=paths, combine="nearest", **kw))
        return read(out), read(tmp_path / f"{name}_src.tif")[0], feedback.lines

    alone = read(fill(tmp_path, model, "july_alone.tif", image, mask, july))
    out, source, lines = run("given", [june, july, september], date="2020-07-10")
    assert (source[CLOUD] == 2).all() and (source[~CLOUD] == 0).all()  # July: 5 days off, the second given
    assert np.array_equal(out, alone)  # July's fill alone, bit for bit
    assert any("input date 2020-07-10; references nearest first: s_2020-07-15.tif (2020-07-15, 5 days), "
               "s_2020-06-01.tif (2020-06-01, 39 days), s_2020-09-01.tif (2020-09-01, 53 days)" in line
               for line in lines), lines
    out, source, _ = run("reordered", [september, june, july], date="2020-07-10")
    assert (source[CLOUD] == 3).all()  # the same date, now third in the order given
    assert np.array_equal(out, alone)
    # dates given override the file names: the "September" file said to be of 2020-07-08
    out, source, _ = run("dated", [june, july, september], date="2020-07-10",
                         dates=["2020-05-21", "2020-07-25", "2020-07-08"])
    assert (source[CLOUD] == 3).all()


def test_the_input_date_comes_from_its_name_and_unknown_dates_keep_the_order(tmp_path):
    paths = [str(tmp_path / n) for n in ("a_20200901.tif", "b_20200601.tif", "c_20200715.tif")]
    order, dates, own = date_order(ReferenceOptions(paths=paths), tmp_path / "scene_2020-07-10.tif", Lines())
    assert own == dt.date(2020, 7, 10) and order == [2, 1, 0]
    assert dates == [dt.date(2020, 9, 1), dt.date(2020, 6, 1), dt.date(2020, 7, 15)]
    feedback = Lines()
    order, _, own = date_order(ReferenceOptions(paths=paths), tmp_path / "scene.tif", feedback)
    assert own is None and order == [0, 1, 2]
    assert "no date for the input" in feedback.lines[0] and "--reference-dates" in feedback.lines[0]


# --- 3. another CRS -------------------------------------------------------------------------------------------------

def test_a_reference_in_another_crs_is_warped_and_fills_closely(model, tmp_path):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    image = cloudy_input(tmp_path / "in.tif")
    mask = mask_raster(tmp_path / "cloud.tif", CLOUD)
    bounds = rasterio.transform.array_bounds(H, W, ORIGIN)
    geo_transform, gw, gh = calculate_default_transform("EPSG:32633", "EPSG:4326", W, H, *bounds, resolution=5e-5)
    geo = np.full((4, gh, gw), -1, np.float32)
    reproject(TRUTH.astype(np.float32), geo, src_transform=ORIGIN, src_crs="EPSG:32633", dst_transform=geo_transform,
              dst_crs="EPSG:4326", dst_nodata=-1, resampling=Resampling.bilinear)
    ref = write_raster(tmp_path / "geo.tif", geo, crs="EPSG:4326", transform=geo_transform, nodata=-1)
    warped = read(fill(tmp_path, model, "warped.tif", image, mask, str(ref), output_source=tmp_path / "src.tif"))
    plain = read(fill(tmp_path, model, "plain.tif", image, mask, None))
    assert (read(tmp_path / "src.tif")[0][CLOUD] == 1).all()
    assert np.array_equal(warped[:, ~CLOUD], read(image)[:, ~CLOUD])
    # two bilinear warps of 19-44 px waves: within a few DN of a ~2800 DN range, far better than the model
    assert err(warped, CLOUD).mean() < 10 and np.percentile(err(warped, CLOUD), 99) < 40
    assert err(warped, CLOUD).mean() < 0.1 * err(plain, CLOUD).mean()


# --- 4. the references' own clouds ---------------------------------------------------------------------------------

WILD_BOX = (4, 30, 24, 60)  # reference 1's own cloud: half inside the input's cloud, half over clear ground


@pytest.mark.parametrize("how", ["raster", "polygons", "qa"])
def test_a_references_own_clouds_are_never_taken(model, tmp_path, how):
    """Reference 1 holds wild values (60000) under its own cloud, given by a mask raster, a GeoJSON polygon or a
    QA band of its own; reference 2 is clear. With the nearest-date combination (reference 1 first: no dates
    known, the order given) each pixel takes reference 1 where it is clear, so only its mask keeps the wild
    values out: under its cloud the fill comes from reference 2 and no wild value reaches the output;
    without the mask (raster case) they do."""
    image = cloudy_input(tmp_path / "in.tif")
    mask = mask_raster(tmp_path / "cloud.tif", CLOUD)
    own = boxes(WILD_BOX)
    first = (TRUTH.astype(np.int64) + 50).astype(np.uint16)
    first[:, own] = WILD
    second = TRUTH.copy()
    if how == "qa":  # a fifth band of flags, bits 14-15 = 3 where cloudy
        flags = np.where(own, 3 << 14, 1 << 14).astype(np.uint16)[None]
        first = np.concatenate([first, flags])
        second = np.concatenate([second, np.full_like(flags, 1 << 14)])
    paths = [str(write_raster(tmp_path / "r1.tif", first)), str(write_raster(tmp_path / "r2.tif", second))]
    if how == "raster":
        masks = [str(mask_raster(tmp_path / "r1_clouds.tif", own)), None]
        refs = ReferenceOptions(paths=paths, masks=masks, combine="nearest")
    elif how == "polygons":
        masks = [str(polygon_mask(tmp_path / "r1_clouds.geojson", *WILD_BOX)), None]
        refs = ReferenceOptions(paths=paths, masks=masks, combine="nearest")
    else:
        refs = ReferenceOptions(paths=paths, qa_band=5, qa_expression="bits(14, 15) == 3", combine="nearest")
    out = read(fill(tmp_path, model, "out.tif", image, mask, refs, output_source=tmp_path / "src.tif"))
    source = read(tmp_path / "src.tif")[0]
    assert out.max() < 10000
    assert (source[CLOUD & own] == 2).all() and (source[CLOUD & ~own] == 1).all()
    assert err(out, CLOUD & own).max() <= 1  # reference 2, the truth itself
    assert err(out, CLOUD & ~own).max() <= 2  # reference 1, truth + 50, matched
    if how == "raster":  # the test has teeth: unmasked, reference 1's wild values come in
        unmasked = read(fill(tmp_path, model, "unmasked.tif", image, mask,
                             ReferenceOptions(paths=paths, combine="nearest")))
        assert err(unmasked, CLOUD & own).max() > 1000


# --- 5. the outputs -------------------------------------------------------------------------------------------------

def test_source_and_uncertainty_outputs(model, tmp_path):
    """Input with nodata rows (some under the cloud); one reference with a gap of its own under part of the cloud:
    uncertainty 0 on clear pixels, NaN at nodata, positive where filled (from the reference or the model);
    source 0 / 1 / 100 / 255; the output the input bit for bit outside the cloud; all on the input's grid."""
    nodata = boxes((0, 6, 0, W))
    data = TRUTH.copy()
    data[:, CLOUD] = CLOUD_DN[:, None]
    data[:, nodata] = 0
    image = write_raster(tmp_path / "in.tif", data, nodata=0)
    mask = mask_raster(tmp_path / "cloud.tif", boxes((4, 52, 12, 52)))
    cloud = boxes((4, 52, 12, 52)) & ~nodata
    gap = boxes((0, H, 40, 52))
    noise = np.random.default_rng(2).normal(0, 25, TRUTH.shape)  # the reference's own noise: an honest error
    other = (0.9 * TRUTH + 80 + noise).astype(np.float32)
    other[:, gap] = -1
    ref = write_raster(tmp_path / "ref.tif", other, nodata=-1)
    outs = {k: tmp_path / f"{k}.tif" for k in ("out", "source", "uncertainty", "mask")}
    inpaint(image, outs["out"], model, MaskOptions(mask=str(mask)), TILES, reference=str(ref),
            output_source=outs["source"], output_uncertainty=outs["uncertainty"], output_mask=outs["mask"])
    for path in outs.values():
        verify_geotiff(str(path))
        with rasterio.open(path) as dst, rasterio.open(image) as src:
            assert (dst.crs, dst.transform, dst.width, dst.height) == (src.crs, src.transform, src.width, src.height)
    out = read(outs["out"])
    assert np.array_equal(out[:, ~cloud], data[:, ~cloud])  # nodata pixels under the cloud too
    assert err(out, cloud & ~gap).mean() < 40

    with rasterio.open(outs["source"]) as src:
        source = src.read(1)
        assert src.dtypes[0] == "uint8" and src.nodata == MASK_NODATA
        assert "ref.tif" in src.tags()["SATGEN_REFERENCES"]
    assert (source[nodata] == MASK_NODATA).all()
    assert (source[cloud & ~gap] == 1).all() and (source[cloud & gap] == MODEL_CODE).all()
    assert (source[~cloud & ~nodata] == 0).all()

    with rasterio.open(outs["uncertainty"]) as src:
        u = src.read()
        assert src.count == 4 and set(src.dtypes) == {"float32"} and np.isnan(src.nodata)
    assert np.isnan(u[:, nodata]).all()
    assert (u[:, ~cloud & ~nodata] == 0).all()
    filled = u[:, cloud]
    assert np.isfinite(filled).all() and (filled > 0).all()
    # the model's guess (a harmonic interpolation over 12 px) is far less sure than a matched date
    assert np.median(u[:, cloud & gap]) > 3 * np.median(u[:, cloud & ~gap])
    # and the 80 % interval of the date's fill holds most true values, not all
    inside = (err(out, cloud & ~gap) <= u[:, cloud & ~gap]).mean()
    assert 0.6 < inside < 0.97, inside


# --- 6. dates --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["2021-06-30", "20210630", "2021:06:30 10:00:00", "2021-06-30T10:00:00Z",
                                  " 2021/06/30"])
def test_dates_are_read(text):
    assert parse_date(text) == dt.date(2021, 6, 30)


@pytest.mark.parametrize("text", ["2021-13-01", "2021-02-30", "yesterday", "", "21-06-30", "30.06.2021"])
def test_bad_dates_say_how_to_write_one(text):
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        parse_date(text)


def test_raster_dates_from_metadata_then_the_name(tmp_path):
    def tagged(name, **tags):
        path = write_raster(tmp_path / name, np.zeros((1, 4, 4), np.uint8))
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(**tags)
        return path

    assert raster_date(tagged("a.tif", ACQUISITION_DATE="2021-06-30")) == dt.date(2021, 6, 30)
    assert raster_date(tagged("b.tif", DATE_ACQUIRED="2019-01-02")) == dt.date(2019, 1, 2)
    assert raster_date(tagged("c.tif", TIFFTAG_DATETIME="2018:03:04 10:00:00")) == dt.date(2018, 3, 4)
    # metadata first, the name second; an unreadable tag falls back to the name
    assert raster_date(tagged("s_2000-01-01.tif", SENSING_TIME="2017-05-06T10:11:12Z")) == dt.date(2017, 5, 6)
    assert raster_date(tagged("s_2000-01-02.tif", ACQUISITION_DATE="unknown")) == dt.date(2000, 1, 2)
    assert raster_date(tagged("plain.tif")) is None
    assert raster_date(write_raster(tmp_path / "s_20210630.tif", np.zeros((1, 4, 4), np.uint8))) == dt.date(2021, 6, 30)
    assert raster_date(tmp_path / "LC08_L1TP_015033_20210630_20210708_02_T1.tif") == dt.date(2021, 6, 30)
    assert raster_date(tmp_path / "s_2020-06-01.tif") == dt.date(2020, 6, 1)  # the name, even with no file
    for name in ("x.tif", "s_2021-13-01.tif", "id_120210630.tif", "s_20210631.tif"):
        assert raster_date(tmp_path / name) is None, name


# --- 7. bad input -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """An input, its cloud mask, two references and a reference mask, in a folder of their own."""
    d = tmp_path_factory.mktemp("scene")
    far = from_origin(700000.0, 5000000.0, 10.0, 10.0)
    return dict(
        input=cloudy_input(d / "in.tif"), mask=mask_raster(d / "cloud.tif", CLOUD),
        a=str(write_raster(d / "a.tif", TRUTH)), b=str(write_raster(d / "b.tif", TRUTH)),
        a_mask=str(mask_raster(d / "a_clouds.tif", boxes((0, 8, 0, 8)))),
        far=str(write_raster(d / "far.tif", TRUTH, transform=far)), missing=str(d / "missing.tif"))


BAD = {
    "masks count": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"], s["b"]], masks=[s["a_mask"]])),
                    r"1 reference masks for 2 reference rasters; give one mask per reference"),
    "dates count": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"], s["b"]], dates=["2020-06-01"])),
                    r"1 reference dates for 2 reference rasters; give one date per reference \(YYYY-MM-DD\)"),
    "bad reference date": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"], s["b"]],
                                                                     dates=["2020-06-31", "2020-07-01"])),
                           r"cannot read '2020-06-31' as a date; write dates as YYYY-MM-DD"),
    "bad input date": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"]], date="yesterday")),
                       r"cannot read 'yesterday' as a date; write dates as YYYY-MM-DD"),
    "too many": (lambda s: dict(reference=[s["a"]] * (MAX_REFERENCES + 1)),
                 rf"{MAX_REFERENCES + 1} reference rasters were given; at most {MAX_REFERENCES} .*give the "
                 rf"{MAX_REFERENCES} nearest dates"),
    "qa band alone": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"]], qa_band=4)),
                      r"a reference QA band needs a QA expression and the reverse; give both"),
    "qa expression alone": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"]], qa_expression="qa == 1")),
                            r"a reference QA band needs a QA expression and the reverse; give both"),
    "qa expression typo": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"]], qa_band=4,
                                                                     qa_expression="qa = 1")),
                           r"QA expression 'qa = 1' cannot be used.*compare with ==, not ="),
    "unknown combine": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"]], combine="closest")),
                        r"unknown reference combination 'closest'; choose weighted or nearest"),
    "bands count": (lambda s: dict(reference=[s["a"], s["b"]], reference_bands=[1, 2]),
                    r"the reference bands \[1, 2\] must match the input bands \[1, 2, 3, 4\] one to one; give as many"),
    "no overlap": (lambda s: dict(reference=[s["a"], s["far"]]),
                   r"the reference raster .*far.tif does not overlap the input raster; check that it covers the same"),
    "missing reference": (lambda s: dict(reference=[s["a"], s["missing"]]),
                          r"reference raster .*missing.tif does not exist; check the path"),
    "missing reference mask": (lambda s: dict(reference=ReferenceOptions(paths=[s["a"]], masks=[s["missing"]])),
                               r"mask raster .*missing.tif does not exist; check the path"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_reference_input_is_refused_and_nothing_is_written(model, scene, tmp_path, case):
    make, message = BAD[case]
    with pytest.raises(InputError, match=message):
        inpaint(scene["input"], tmp_path / "out.tif", model, MaskOptions(mask=str(scene["mask"])), TILES,
                output_mask=tmp_path / "mask.tif", output_source=tmp_path / "src.tif",
                output_uncertainty=tmp_path / "unc.tif", **make(scene))
    assert list(tmp_path.iterdir()) == []  # not even a hidden part file


def _engine(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "inpaint", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})  # see one_thread


@pytest.mark.parametrize("flags, message", [
    (["--reference-mask", "{a_mask}"], "--reference-mask was given without --reference; give the reference rasters"),
    (["--reference", "{a}", "{b}", "--reference-dates", "2020-06-01,2020-6-2"],
     "cannot read '2020-6-2' as a date; write dates as YYYY-MM-DD")], ids=["mask without reference", "bad date"])
def test_the_command_line_refuses_bad_reference_flags(model, scene, tmp_path, flags, message):
    run = _engine("--input", scene["input"], "--output", tmp_path / "out.tif", "--model", model, "--mask",
                  scene["mask"], "--device", "cpu", "--output-source", tmp_path / "src.tif",
                  *[f.format(**scene) for f in flags])
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert message in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags", [["--reference-detect"], ["--date", "2020-07-10"],
                                   ["--reference-combine", "nearest"]], ids=["detect", "date", "combine"])
def test_reference_only_flags_without_a_reference_are_refused(model, scene, tmp_path, capsys, flags):
    from engine.cli import main

    rc = main(["inpaint", "--input", str(scene["input"]), "--output", str(tmp_path / "out.tif"), "--model", str(model),
               "--mask", str(scene["mask"]), "--device", "cpu", *flags])
    assert rc == 2 and f"{flags[0]} was given without --reference" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- 8. the command line, end to end --------------------------------------------------------------------------------

def test_the_command_line_fills_from_two_dates(model, tmp_path):
    image = cloudy_input(tmp_path / "scene_2020-07-10.tif")
    mask = mask_raster(tmp_path / "cloud.tif", CLOUD)
    a = write_raster(tmp_path / "a.tif", (0.8 * TRUTH + 150).astype(np.float32))
    b = write_raster(tmp_path / "b.tif", TRUTH.copy())
    a_mask = mask_raster(tmp_path / "a_clouds.tif", boxes((0, H, 32, W)))
    out, src_path, unc = tmp_path / "out.tif", tmp_path / "source.tif", tmp_path / "unc.tif"
    run = _engine("--input", image, "--output", out, "--model", model, "--mask", mask, "--device", "cpu",
                  "--tile-size", 64, "--overlap", 16, "--reference", a, b, "--reference-mask", a_mask, "none",
                  "--reference-dates", "2020-07-01,2020-09-01", "--reference-combine", "nearest",
                  "--output-source", src_path, "--output-uncertainty", unc)
    assert run.returncode == 0, run.stderr
    assert "input date 2020-07-10; references nearest first: a.tif" in run.stdout + run.stderr
    for path in (out, src_path, unc):
        verify_geotiff(str(path))
    filled, source, u = read(out), read(src_path)[0], read(unc)
    left = boxes((0, H, 0, 32))
    # nearest: A (9 days off) where it is clear, B (53 days) where A is cloudy
    assert (source[CLOUD & left] == 1).all() and (source[CLOUD & ~left] == 2).all() and (source[~CLOUD] == 0).all()
    assert err(filled, CLOUD).max() <= 2 and np.array_equal(filled[:, ~CLOUD], read(image)[:, ~CLOUD])
    assert u.shape == (4, H, W) and (u[:, ~CLOUD] == 0).all() and (u[:, CLOUD] > 0).all()
