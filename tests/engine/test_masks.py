"""Cloud masks on the input grid: QA expressions, reprojected raster / vector masks, detection, dilation."""

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from engine.devtools.detector import detection_accuracy
from engine.errors import InputError
from engine.inpainting.detect import DetectedMask, band_roles, parse_band_roles
from engine.inpainting.masks import open_mask
from engine.inpainting.qa import QAExpression
from engine.inpainting.sources import CombinedMask, Grid, QAMask, RasterMask, VectorMask, dilate
from engine.vector import rasterize_features
from helpers import SAMPLES, cloud_scene, write_raster

UTM = "EPSG:32633"
ORIGIN = (500000.0, 5800000.0)
GRID = Grid(CRS.from_string(UTM), from_origin(*ORIGIN, 10, 10), 80, 60)  # 80 cols x 60 rows at 10 m
# a square of rows 20..34, cols 30..49 of GRID
SQUARE = box(ORIGIN[0] + 300, ORIGIN[1] - 350, ORIGIN[0] + 500, ORIGIN[1] - 200)


def expected_square() -> np.ndarray:
    out = np.zeros((GRID.height, GRID.width), bool)
    out[20:35, 30:50] = True
    return out


def assert_within_one_pixel(mask: np.ndarray, expected: np.ndarray):
    """`mask` holds `expected` shrunk by one pixel and lies inside it grown by one pixel."""
    near = np.zeros_like(expected)
    inner = expected.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(np.roll(expected, dy, 0), dx, 1)
            near |= shifted
            inner &= shifted
    assert (mask <= near).all() and (inner <= mask).all()


# --- QA expressions ----------------------------------------------------------------------------------------------

QA = np.array([0, 3 << 14, 2 << 14, 1 << 14, 1 << 4, 8, 9, 10, 11], np.uint16)


@pytest.mark.parametrize("text,hits", [
    ("bits(14, 15) == 3", [1]),
    ("bit(4) or bits(14,15) >= 2", [1, 2, 4]),
    ("qa in (8, 9, 10)", [5, 6, 7]),
    ("qa not in (8, 9, 10)", [0, 1, 2, 3, 4, 8]),
    ("(qa >> 3) & 1 == 1", [5, 6, 7, 8]),
    ("qa & 0x8 == 0b1000", [5, 6, 7, 8]),
    ("1 <= bits(14, 15) < 3", [2, 3]),
    ("qa & 0x10", [4]),
    ("not bit(3) and not bits(14, 15)", [0, 4]),
    ("bit(0) ^ bit(1)", [6, 7]),
    ("(qa << 1) == 0b10010", [6]),
    ("~qa & 1 == 0", [6, 8]),
])
def test_qa_expressions_on_known_bits(text, hits):
    result = QAExpression(text).evaluate(QA)
    assert result.dtype == bool and result.shape == QA.shape
    assert np.flatnonzero(result).tolist() == hits
    assert QAExpression(text).evaluate(QA.reshape(3, 3)).shape == (3, 3)


@pytest.mark.parametrize("text,problem", [
    ("__import__('os').system('touch pwned')", "the only functions are bit"),
    ("open('/etc/passwd')", "the only functions are bit"),
    ("qa.real", "attribute access"),
    ("lambda: qa", "lambdas are not allowed"),
    ("qa == 1.5", "decimal numbers are not allowed"),
    ("qa == True", "booleans are not allowed"),
    ("qa == 'a'", "strings are not allowed"),
    ("cloud == 1", "unknown name 'cloud'"),
    ("qa = 3", "compare with =="),
    ("(qa", "syntax error"),
    ("", "it is empty"),
    ("qa + 1 == 2", "not arithmetic"),
    ("qa == -1", "negative numbers"),
    ("bits(15, 14) == 3", "lowest bit first"),
    ("bits(qa, 2) == 1", "must be integer literals"),
    ("bit(70)", "from 0 to 62"),
    ("bits(1) == 1", "bits takes 2 integer argument"),
    ("qa in 8", "bracketed list"),
    ("qa in (8, qa)", "only integer literals"),
    ("qa is 8", "'is' is not allowed"),
    ("1 == 1", "never reads the QA value"),
    ("~(qa == 1)", "negate a test with not"),
    ("[q for q in qa]", "not allowed"),
    ("qa >> 64", "shifts must be"),
    ("1 << qa", "shifts must be by a number of bits"),  # numpy's shift past 63 bits differs by platform
    ("qa in (1, 2) < 3", "must end the comparison"),  # was a raw TypeError (fuzz: qa seed 0 case 247)
    ("~((qa == 1) & (qa == 2))", "negate a test with not"),  # parsed, then failed when evaluated
    ("(" * 500 + "qa" + ")" * 500, ""),
])
def test_invalid_qa_expressions_say_what_and_how(text, problem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as info:
        QAExpression(text)
    message = str(info.value)
    assert repr(text) in message and problem in message
    assert "bits(14, 15) == 3" in message  # a valid example
    assert not (tmp_path / "pwned").exists()


def test_qa_problem_position_is_shown():
    message = str(pytest.raises(InputError, QAExpression, "bit(3) and qa.imag").value)
    assert "column 12 ('qa.imag')" in message


# --- raster masks ------------------------------------------------------------------------------------------------

def square_raster_in_wgs84(path, nodata=None):
    """A 0/1 mask raster in EPSG:4326, about 3 x 5 m pixels, with SQUARE burnt in, covering GRID."""
    outline = shape(transform_geom(UTM, "EPSG:4326", mapping(box(*GRID.bounds))))
    west, south, east, north = outline.bounds
    res = (0.00005, 0.00004)
    transform = from_origin(west - 0.001, north + 0.001, *res)
    cols, rows = int((east - west + 0.002) / res[0]), int((north - south + 0.002) / res[1])
    square = shape(transform_geom(UTM, "EPSG:4326", mapping(SQUARE)))
    data = rasterize_features([square], transform, (rows, cols)).astype(np.uint8)
    if nodata is not None:
        data[:, :10] = nodata
    return write_raster(path, data[None], crs="EPSG:4326", transform=transform, nodata=nodata)


def test_raster_mask_in_another_crs_and_resolution_lands_within_a_pixel(tmp_path):
    path = square_raster_in_wgs84(tmp_path / "m.tif")
    with RasterMask(path, GRID) as mask:
        whole = mask.read(0, GRID.height, 0, GRID.width)
        assert_within_one_pixel(whole, expected_square())
        assert (mask.read(18, 40, 25, 60) == whole[18:40, 25:60]).all()


def test_raster_mask_coarser_and_smaller_than_the_input(tmp_path):
    # 30 m pixels over the input's upper-left part only; nodata and outside are clear
    data = np.zeros((1, 10, 15), np.uint8)
    data[0, 6:9, 10:14] = 1  # x 300..420 m, y -180..-270 m: rows 18..26, cols 30..41
    data[0, 0, 0] = 255
    path = write_raster(tmp_path / "c.tif", data, crs=UTM, transform=from_origin(*ORIGIN, 30, 30), nodata=255)
    with RasterMask(path, GRID) as mask:
        got = mask.read(0, GRID.height, 0, GRID.width)
    want = np.zeros_like(got)
    want[18:27, 30:42] = True
    assert (got == want).all()


def test_a_world_mask_covers_an_input_far_from_its_utm_zone_centre(tmp_path):
    world = write_raster(tmp_path / "world.tif", np.ones((1, 180, 360), np.uint8), crs="EPSG:4326",
                         transform=from_origin(-180, 90, 1, 1))
    west = Grid(CRS.from_string(UTM), from_origin(250000, 5800000, 10, 10), 20, 20)
    with RasterMask(world, west) as mask:
        assert mask.read(0, 20, 0, 20).all()


def test_non_overlapping_masks_are_refused(tmp_path):
    far = write_raster(tmp_path / "far.tif", np.ones((1, 10, 10), np.uint8), crs=UTM,
                       transform=from_origin(700000, 5000000, 10, 10))
    with pytest.raises(InputError, match="does not overlap the input raster; check that it covers the same area"):
        RasterMask(far, GRID)
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": mapping(box(-70, 10, -69, 11))}]}
    (tmp_path / "far.geojson").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"does not overlap .*input bounds \(500000.0, 5799400.0"):
        VectorMask(tmp_path / "far.geojson", GRID)


def write_crsless(path, data, transform=None):
    """A GeoTIFF without CRS: georeferenced by `transform` alone, or not at all (None)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                           dtype=data.dtype, transform=transform) as dst:
            dst.write(data)
    return path


def crsless_gpkg(path, geom):
    """A GeoPackage polygon layer whose CRS is GeoPackage's 'undefined Cartesian' (srs_id -1)."""
    import sqlite3

    from test_vector import write_gpkg

    write_gpkg(path, {"clouds": [(geom, {})]})
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES ('Undefined', -1, 'NONE', -1, 'undefined', '')")
        con.execute("UPDATE gpkg_geometry_columns SET srs_id = -1")
    return path


NO_CRS_GRID = Grid(None, GRID.transform, GRID.width, GRID.height)  # the input: GRID's transform, no CRS


def test_an_input_without_crs_and_a_mask_with_one_say_so(tmp_path):
    # a WGS84 mask over the same ground was reported as "does not overlap (nan, nan, nan, nan)"
    wgs84 = square_raster_in_wgs84(tmp_path / "m.tif")
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
           "geometry": transform_geom(UTM, "EPSG:4326", mapping(SQUARE))}]}
    (tmp_path / "clouds.geojson").write_text(json.dumps(doc))
    for make in (lambda: RasterMask(wgs84, NO_CRS_GRID), lambda: VectorMask(tmp_path / "clouds.geojson", NO_CRS_GRID),
                 lambda: QAMask(wgs84, 1, "qa == 1", NO_CRS_GRID)):
        with pytest.raises(InputError) as err:
            make()
        text = str(err.value)
        assert "the input raster has no coordinate reference system" in text and "EPSG:4326" in text
        assert "assign the input raster's CRS" in text and "Assign Projection" in text
        assert "of the input's size (80 x 60 px)" in text and "nan" not in text
    # a mask with a CRS on the very grid of the input (the input lost its CRS): read pixel for pixel
    square = expected_square()[None].astype(np.uint8)
    on_grid = write_raster(tmp_path / "on_grid.tif", square, crs=UTM, transform=GRID.transform)
    with RasterMask(on_grid, NO_CRS_GRID) as mask:
        assert (mask.read(0, GRID.height, 0, GRID.width) == expected_square()).all()


def test_a_mask_without_crs_over_an_input_with_one(tmp_path):
    square = expected_square()[None].astype(np.uint8)
    smaller = write_crsless(tmp_path / "small.tif", square[:, :40, :40], GRID.transform)
    with pytest.raises(InputError) as err:
        RasterMask(smaller, GRID)
    text = str(err.value)
    assert f"mask raster {smaller} has no coordinate reference system, so it cannot be placed" in text
    assert "(in EPSG:32633); assign its CRS" in text and "of the input's size (80 x 60 px)" in text
    # the input's size, with the input's geotransform or none at all (a mask made as an array): pixel for pixel
    for name, transform in (("same.tif", GRID.transform), ("bare.tif", None)):
        with RasterMask(write_crsless(tmp_path / name, square, transform), GRID) as mask:
            assert (mask.read(0, GRID.height, 0, GRID.width) == expected_square()).all()
    shifted = write_crsless(tmp_path / "shifted.tif", square, from_origin(ORIGIN[0] + 100, ORIGIN[1], 10, 10))
    with pytest.raises(InputError, match="has no coordinate reference system, so it cannot be placed"):
        RasterMask(shifted, GRID)
    with pytest.raises(InputError, match="has no coordinate reference system; set one"):
        VectorMask(crsless_gpkg(tmp_path / "c.gpkg", SQUARE), GRID)


def test_a_mask_and_an_input_both_without_crs(tmp_path):
    square = expected_square()[None].astype(np.uint8)
    with RasterMask(write_crsless(tmp_path / "same.tif", square, GRID.transform), NO_CRS_GRID) as mask:
        assert (mask.read(0, GRID.height, 0, GRID.width) == expected_square()).all()
    bare_grid = Grid(None, Affine.identity(), GRID.width, GRID.height)  # what rasterio reports without one
    with RasterMask(write_crsless(tmp_path / "bare.tif", square), bare_grid) as mask:
        assert (mask.read(0, GRID.height, 0, GRID.width) == expected_square()).all()
    small = write_crsless(tmp_path / "small.tif", square[:, :30, :30], GRID.transform)
    with pytest.raises(InputError) as err:
        RasterMask(small, NO_CRS_GRID)
    text = str(err.value)
    assert "neither the input raster nor the mask raster" in text and "does not lie on the input's pixel grid" in text
    assert "of the input's size (80 x 60 px)" in text and "nan" not in text
    # polygons without a CRS over an input without one: in the input's own coordinates
    with VectorMask(crsless_gpkg(tmp_path / "c.gpkg", SQUARE), NO_CRS_GRID) as mask:
        assert_within_one_pixel(mask.read(0, GRID.height, 0, GRID.width), expected_square())
    far = crsless_gpkg(tmp_path / "far.gpkg", box(0, 0, 10, 10))
    with pytest.raises(InputError, match=r"does not overlap .*bounds in the input's coordinates \(0.0, 0.0, 10.0, 10"):
        VectorMask(far, NO_CRS_GRID)


def test_vector_mask_in_another_crs(tmp_path):
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"kind": "cloud"},
           "geometry": transform_geom(UTM, "EPSG:4326", mapping(SQUARE))}]}
    (tmp_path / "clouds.geojson").write_text(json.dumps(doc))
    with VectorMask(tmp_path / "clouds.geojson", GRID) as mask:
        whole = mask.read(0, GRID.height, 0, GRID.width)
        assert_within_one_pixel(whole, expected_square())
        assert not mask.read(0, 10, 0, 10).any()
        with pytest.raises(ValueError, match="not inside"):
            mask.read(0, GRID.height + 1, 0, 5)


def test_qa_band_of_the_input_and_of_a_separate_raster(tmp_path):
    qa = np.zeros((GRID.height, GRID.width), np.uint16)
    qa[20:35, 30:50] = 3 << 14
    qa[0, 0] = 1  # nodata: clear even though the test would hold
    image = np.stack([np.full_like(qa, 500), qa])
    src = write_raster(tmp_path / "in.tif", image, crs=UTM, transform=GRID.transform, nodata=1)
    with QAMask(src, 2, "bits(14, 15) == 3 or qa == 1", GRID) as mask:
        assert (mask.read(0, GRID.height, 0, GRID.width) == expected_square()).all()
    coarse = write_raster(tmp_path / "qa20.tif", qa[None, ::2, ::2].copy(), crs=UTM,
                          transform=from_origin(*ORIGIN, 20, 20))
    with QAMask(coarse, None, "bits(14, 15) == 3", GRID) as mask:
        want = expected_square()
        want[35] = want[34]  # the 20-m pixel of rows 34..35
        assert (mask.read(0, GRID.height, 0, GRID.width) == want).all()
    with pytest.raises(InputError, match="has 2 bands; choose which band"):
        QAMask(src, None, "bit(1)", GRID)
    floats = write_raster(tmp_path / "f.tif", np.zeros((1, 4, 4), np.float32), crs=UTM, transform=GRID.transform)
    with pytest.raises(InputError, match="not integers"):
        QAMask(floats, 1, "bit(1)", GRID)


# --- dilation and windows ----------------------------------------------------------------------------------------

def brute_dilate(mask, r):
    out = np.zeros_like(mask)
    rows, cols = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if dy * dy + dx * dx <= r * r and 0 <= y + dy < rows and 0 <= x + dx < cols:
                    out[y + dy, x + dx] = True
    return out


def test_dilate_is_a_disk():
    one = np.zeros((11, 11), bool)
    one[5, 5] = True
    assert dilate(one, 2).sum() == 13 and dilate(one, 0).sum() == 1
    assert dilate(one, 1)[4:7, 4:7].tolist() == [[False, True, False], [True, True, True], [False, True, False]]
    rng = np.random.default_rng(0)
    noisy = rng.random((23, 31)) > 0.97
    for r in (1, 3, 5, 40):
        assert (dilate(noisy, r) == brute_dilate(noisy, r)).all()


def test_windowed_reads_equal_the_whole_with_dilation(tmp_path):
    rng = np.random.default_rng(1)
    blobs = (rng.random((1, GRID.height, GRID.width)) > 0.99).astype(np.uint8)
    path = write_raster(tmp_path / "b.tif", blobs, crs=UTM, transform=GRID.transform)
    with CombinedMask([RasterMask(path, GRID)], GRID, dilate=4) as mask:
        whole = mask.read(0, GRID.height, 0, GRID.width)
        tiled = np.zeros_like(whole)
        for r in range(0, GRID.height, 7):
            for c in range(0, GRID.width, 9):
                r1, c1 = min(r + 7, GRID.height), min(c + 9, GRID.width)
                tiled[r:r1, c:c1] = mask.read(r, r1, c, c1)
    assert (whole == dilate(blobs[0].astype(bool), 4)).all() and (tiled == whole).all()


# --- factory -----------------------------------------------------------------------------------------------------

def test_open_mask_combines_and_closes(tmp_path):
    raster = square_raster_in_wgs84(tmp_path / "m.tif")
    qa = np.zeros((1, GRID.height, GRID.width), np.uint8)
    qa[0, 50:55, 0:5] = 9
    qa_path = write_raster(tmp_path / "scl.tif", qa, crs=UTM, transform=GRID.transform)
    with open_mask(GRID, mask_path=raster, qa_path=qa_path, qa_expression="qa in (8, 9, 10)", dilate=1) as mask:
        got = mask.read(0, GRID.height, 0, GRID.width)
        datasets = [s.band.src for s in mask.sources]
    want = expected_square()
    want[50:55, 0:5] = True
    assert_within_one_pixel(got, dilate(want, 1))
    assert all(d.closed for d in datasets)
    with pytest.raises(InputError, match="no cloud mask given: give a mask layer"):
        with open_mask(GRID):
            pass
    with pytest.raises(InputError, match="without an expression"):
        with open_mask(GRID, qa_path=qa_path):
            pass
    with pytest.raises(InputError, match="GeoPackage or GeoJSON"):
        with open_mask(GRID, mask_path=tmp_path / "m.shp"):
            pass


# --- detection ---------------------------------------------------------------------------------------------------

def test_band_roles_from_names():
    assert band_roles(["B02", "B03", "B04", "B08"]) == ({"blue": 1, "green": 2, "red": 3, "nir": 4}, "sentinel-2")
    assert band_roles([f"B{i}" for i in range(1, 8)])[0] == {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir1": 6}
    assert band_roles(["b3", "b4", "b5"]) == ({"red": 1, "nir": 2, "swir1": 3}, "tm")
    assert band_roles(["Red", "NIR", "Green"])[0] == {"red": 1, "nir": 2, "green": 3}
    assert parse_band_roles("red=3, nir=4,swir1=5") == {"red": 3, "nir": 4, "swir1": 5}
    with pytest.raises(InputError, match="unknown band role 'pan'"):
        parse_band_roles("pan=8")


def test_detection_finds_a_white_cloud_over_vegetation(tmp_path):
    image, _ = cloud_scene()
    path = write_raster(tmp_path / "s2.tif", image, crs=UTM, transform=GRID.transform, nodata=0,
                        descriptions=["B02", "B03", "B04", "B08"])
    image[:, 0, 0] = 0
    with DetectedMask(path) as det:
        assert det.scale == 1e-4
        got = det.read(0, 40, 0, 40)
    want = np.zeros((40, 40), bool)
    want[10:20, 20:30] = True
    assert (got == want).all()
    with pytest.raises(InputError, match="needs the red and near-infrared bands"):
        DetectedMask(write_raster(tmp_path / "x.tif", image, crs=UTM, descriptions=["a", "b", "c", "d"]))
    with DetectedMask(tmp_path / "x.tif", "blue=1,green=2,red=3,nir=4") as det:
        assert (det.read(0, 40, 0, 40) == want).all()


def test_detection_on_unnamed_bands_says_how_to_name_them(tmp_path):
    image, cloud = cloud_scene()
    path = write_raster(tmp_path / "unnamed.tif", image, crs=UTM, transform=GRID.transform)
    with pytest.raises(InputError) as err:
        DetectedMask(path)
    text = str(err.value)
    assert f"the band names of {path} (unnamed, unnamed, unnamed, unnamed) give none" in text
    assert "DETECT_BANDS" in text and "--detect-bands" in text
    assert "e.g. blue=1,green=2,red=3,nir=4 where bands 1-4 are blue, green, red, nir" in text
    five = write_raster(tmp_path / "five.tif", np.concatenate([image, image[:1]]), crs=UTM)
    with pytest.raises(InputError, match="e.g. blue=1,green=2,red=3,nir=4,swir1=5 where bands 1-5"):
        DetectedMask(five)
    with pytest.raises(InputError, match="e.g. green=1,red=2,nir=3 where bands 1-3"):
        DetectedMask(write_raster(tmp_path / "three.tif", image[1:], crs=UTM))
    with pytest.raises(InputError, match="it has 2 band.*at least 3: give a mask layer or a QA band"):
        DetectedMask(write_raster(tmp_path / "two.tif", image[2:], crs=UTM))
    with pytest.raises(InputError, match="the detection bands given hold red=3, nir=4; say which band is which"):
        DetectedMask(path, "red=3,nir=4")
    with pytest.raises(InputError, match=f"detection band\\(s\\) nir=9 do not exist: {path} has bands 1..4"):
        DetectedMask(path, "blue=1,red=3,nir=9")
    with pytest.raises(InputError, match="cannot read detection bands 'red:3' \\(DETECT_BANDS / --detect-bands\\)"):
        DetectedMask(path, "red:3")
    grid = Grid(CRS.from_string(UTM), GRID.transform, 40, 40)
    with open_mask(grid, detect=True, input_path=path, detect_bands="blue=1,green=2,red=3,nir=4") as mask:
        assert (mask.read(0, 40, 0, 40) == cloud).all()


def test_inpaint_command_takes_detection_bands(tmp_path, capsys):
    from engine.cli import main

    image, cloud = cloud_scene()
    path = write_raster(tmp_path / "unnamed.tif", image, crs=UTM, transform=GRID.transform)
    out, used = tmp_path / "filled.tif", tmp_path / "mask.tif"
    base = ["inpaint", "--input", str(path), "--output", str(out), "--output-mask", str(used), "--normalize", "scene"]
    assert main([*base, "--detect"]) == 2
    assert "--detect-bands" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--detect-bands", "blue=1,green=2,red=3,nir=4"]) == 2
    assert "detection is off; turn detection on (DETECT / --detect)" in capsys.readouterr().err
    assert main([*base, "--detect", "--detect-bands", "blue=1,green=2,red=3,nir=4,pan=5"]) == 2
    assert "unknown band role 'pan'" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--detect", "--detect-bands", "blue=1,green=2,red=3,nir=4"]) == 0
    with rasterio.open(used) as m, rasterio.open(out) as o:
        assert (m.read(1) == cloud).all()
        assert np.array_equal(o.read()[:, ~cloud], image[:, ~cloud])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filled.tif", "mask.tif", "unnamed.tif"]


@pytest.mark.skipif(not (SAMPLES / "l8_pensacola_cloudy.tif").exists() or not (SAMPLES / "lsts").exists(),
                    reason="sample data missing: run `make data`")
def test_detection_accuracy_on_held_out_real_masks():
    report = detection_accuracy(SAMPLES)["datasets"]
    l8, lsts = report["l8_pensacola"], report["lsts"]
    # measured: L8 accuracy 0.965 IoU 0.548; TM/ETM+ accuracy 0.907 IoU 0.730 (reports/quality.json, inpaint.detection)
    assert l8["overall_accuracy"] > 0.95 and l8["iou"] > 0.5 and l8["pixels"] > 150_000
    assert lsts["overall_accuracy"] > 0.89 and lsts["iou"] > 0.7 and lsts["pixels"] > 150_000
    assert report["l8_pensacola_no_swir"]["iou"] > 0.5
    with rasterio.open(SAMPLES / "l8_pensacola_cloudy.tif") as src, DetectedMask(src) as det:
        assert det.offset == -0.1 and det.roles["swir1"] == 6
