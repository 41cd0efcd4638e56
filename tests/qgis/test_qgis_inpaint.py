"""satgen:train_inpainting -> satgen:inpaint_clouds through processing.run (tiny real
training on a real crop, a polygon mask layer in another CRS), inpaint_clouds through
the real qgis_process command line with a QA band expression, and the fill from several
reference dates (each with its own mask) with its source and uncertainty outputs."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from test_qgis_process import QGIS_PROCESS, enable_plugin, listing, two_references

from helpers import SAMPLES, cloud_scene, crop_raster, write_raster


def _train(tmp_path, scene):
    import processing

    return processing.run("satgen:train_inpainting", {
        "INPUT": [str(scene)], "EPOCHS": 1, "PATCH_SIZE": 32, "BATCH_SIZE": 2, "PATCHES_PER_EPOCH": 4, "WIDTH": 4,
        "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "m.satgen"), "OUTPUT_REPORT": str(tmp_path / "report")})


def test_train_then_inpaint_with_a_polygon_mask_in_another_crs(satgen_provider, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    scene = crop_raster(SAMPLES / "s2_havel_10m.tif", tmp_path / "scene.tif", 352, 608, 128, 128)
    trained = _train(tmp_path, scene)
    assert (tmp_path / "report" / "samples.png").exists()

    with rasterio.open(scene) as src:
        from rasterio.warp import transform_geom

        left, bottom, right, top = src.bounds
        square = {"type": "Polygon", "coordinates": [[(left + 300, top - 300), (left + 700, top - 300),
                                                      (left + 700, top - 700), (left + 300, top - 700),
                                                      (left + 300, top - 300)]]}
        geo = transform_geom(src.crs, "EPSG:4326", square)
        original = src.read()
    mask = tmp_path / "clouds.geojson"
    import json

    mask.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"kind": "cloud"}, "geometry": geo}]}))
    result = processing.run("satgen:inpaint_clouds", {
        "INPUT": str(scene), "MASK": str(mask), "DILATE": 1, "MODEL": trained["OUTPUT_MODEL"],
        "OUTPUT": str(tmp_path / "filled.tif"), "OUTPUT_MASK": str(tmp_path / "mask.tif")})
    layer = QgsRasterLayer(result["OUTPUT"], "filled")
    assert layer.isValid() and layer.extent() == QgsRasterLayer(str(scene), "s").extent()
    with rasterio.open(result["OUTPUT"]) as out, rasterio.open(result["OUTPUT_MASK"]) as m:
        filled, cloud = out.read(), m.read(1) == 1
    # the 40 x 40 px square (10 m pixels), reprojected from WGS84, grown by 1 px
    assert 40 * 40 <= cloud.sum() <= 44 * 44 and cloud[30:70, 30:70].all()
    assert np.array_equal(filled[:, ~cloud], original[:, ~cloud])


def test_mask_errors_are_clear_and_leave_nothing(satgen_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    scene = crop_raster(SAMPLES / "s2_havel_10m.tif", tmp_path / "scene.tif", 352, 608, 64, 64)
    params = {"INPUT": str(scene), "OUTPUT": str(tmp_path / "o.tif"), "OUTPUT_MASK": str(tmp_path / "m.tif")}
    with pytest.raises(QgsProcessingException, match="mask layer"):
        processing.run("satgen:inpaint_clouds", params)
    with pytest.raises(QgsProcessingException, match="QA_BAND"):
        processing.run("satgen:inpaint_clouds", dict(params, QA_EXPRESSION="bits(14, 15) == 3"))
    with pytest.raises(QgsProcessingException, match="bits"):
        processing.run("satgen:inpaint_clouds", dict(params, QA_BAND=str(scene), QA_EXPRESSION="bits(14, 15 == 3"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_qgis_process_inpaints_with_a_qa_band(qgis_process_env, tmp_path):
    """The default model through the real qgis_process, mask from a Landsat-style BQA band."""
    enable_plugin(qgis_process_env)
    scene = crop_raster(SAMPLES / "s2_virginia_10m.tif", tmp_path / "scene.tif", 800, 800, 256, 256)
    qa = np.zeros((1, 256, 256), np.uint16)
    qa[0, 100:160, 40:200] = 3 << 14
    with rasterio.open(scene) as src:
        qa_path = write_raster(tmp_path / "bqa.tif", qa, crs=src.crs, transform=src.transform)
        original = src.read()
    qa_bytes = qa_path.read_bytes()
    for name in ("OUTPUT", "OUTPUT_MASK"):  # an output naming the QA raster: refused, the QA raster kept
        other = "OUTPUT_MASK" if name == "OUTPUT" else "OUTPUT"
        run = subprocess.run([QGIS_PROCESS, "run", "satgen:inpaint_clouds", "--", f"INPUT={scene}",
                              f"QA_BAND={qa_path}", "QA_EXPRESSION=bits(14, 15) == 3", f"{name}={qa_path}",
                              f"{other}={tmp_path / 'other.tif'}"],
                             env=qgis_process_env, capture_output=True, text=True, timeout=300)
        assert run.returncode != 0 and "would overwrite the input" in run.stdout + run.stderr
        assert qa_path.read_bytes() == qa_bytes and not (tmp_path / "other.tif").exists()
    out = tmp_path / "filled.tif"
    run = subprocess.run([QGIS_PROCESS, "run", "satgen:inpaint_clouds", "--", f"INPUT={scene}",
                          f"QA_BAND={qa_path}", "QA_EXPRESSION=bits(14, 15) == 3", f"OUTPUT={out}"],
                         env=qgis_process_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr  # OUTPUT_MASK is optional, as in the dialog
    # no mask written when none is asked for, and nothing beside the inputs (no .aux.xml)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bqa.tif", "filled.tif", "scene.tif"]
    with rasterio.open(out) as o:
        filled = o.read()
        assert o.crs is not None and o.dtypes[0] == "uint16"
    cloud = np.zeros((256, 256), bool)
    cloud[100:160, 40:200] = True
    assert np.array_equal(filled[:, ~cloud], original[:, ~cloud])
    assert not np.array_equal(filled[:, cloud], original[:, cloud])


def test_example_graphical_model_trains_then_inpaints(satgen_provider, tmp_path):
    """resources/modeler/train_and_inpaint.model3: train_inpainting -> inpaint_clouds, run for real."""
    import processing
    from qgis.core import QgsProcessingModelAlgorithm
    from test_modeler import set_child_values

    from helpers import ROOT

    shipped = QgsProcessingModelAlgorithm()
    assert shipped.fromFile(str(ROOT / "resources" / "modeler" / "train_and_inpaint.model3"))
    ok, issues = shipped.validate()
    assert ok, issues
    assert shipped.dependsOnChildAlgorithms("inpaint") == {"train"}
    model = shipped.create()
    set_child_values(model, "train", PATCH_SIZE=32, BATCH_SIZE=2, PATCHES_PER_EPOCH=4, WIDTH=4, DEVICE=1)
    clear = crop_raster(SAMPLES / "s2_virginia_10m.tif", tmp_path / "clear.tif", 600, 600, 128, 128)
    cloudy = crop_raster(SAMPLES / "s2_virginia_10m.tif", tmp_path / "cloudy.tif", 900, 900, 96, 96)
    with rasterio.open(cloudy) as src:
        cloud = np.zeros((1, 96, 96), np.uint8)
        cloud[0, 20:50, 30:70] = 1
        mask = write_raster(tmp_path / "mask.tif", cloud, crs=src.crs, transform=src.transform)
        original = src.read()
    result = processing.run(model, {
        "clear_rasters": [str(clear)], "epochs": 1, "cloudy_raster": str(cloudy), "cloud_mask": str(mask),
        "detect": False, "train:model_file": str(tmp_path / "m.satgen"), "train:training_report": str(tmp_path / "r"),
        "inpaint:filled_raster": str(tmp_path / "filled.tif"), "inpaint:cloud_mask_used": str(tmp_path / "used.tif")})
    with rasterio.open(result["inpaint:filled_raster"]) as out:
        filled = out.read()
    assert np.array_equal(filled[:, cloud[0] == 0], original[:, cloud[0] == 0])
    assert (tmp_path / "r" / "metrics.json").exists()


def far_polygon_layer(name: str, geometry: str = "Polygon"):
    """A memory layer in WGS84 holding one feature far from Europe (a square in the Atlantic, or a point)."""
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    layer = QgsVectorLayer(f"{geometry}?crs=EPSG:4326", name, "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt("POLYGON((-30 10, -29 10, -29 11, -30 11, -30 10))"
                                            if geometry == "Polygon" else "POINT(-30 10)"))
    layer.dataProvider().addFeatures([feature])
    return layer


def test_vector_mask_errors_name_the_users_layer(satgen_provider, tmp_path):
    """Polygon layers the engine cannot read as they are go to it as a temporary GeoPackage; its
    messages call them by the user's layer, never by the copy in QGIS's temporary folder."""
    import processing
    from qgis.core import QgsCoordinateTransformContext, QgsProcessingException, QgsProcessingUtils, QgsVectorFileWriter

    scene = crop_raster(SAMPLES / "s2_havel_10m.tif", tmp_path / "scene.tif", 352, 608, 64, 64)
    far = far_polygon_layer("far clouds")
    shapefile = tmp_path / "far.shp"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "ESRI Shapefile"
    assert QgsVectorFileWriter.writeAsVectorFormatV3(far, str(shapefile), QgsCoordinateTransformContext(),
                                                     options)[0] == QgsVectorFileWriter.NoError
    geojson = tmp_path / "far.geojson"
    atlantic = {"type": "Polygon", "coordinates": [[[-30, 10], [-29, 10], [-29, 11], [-30, 10]]]}
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": atlantic}]}))
    params = {"INPUT": str(scene), "OUTPUT": str(tmp_path / "o.tif"), "OUTPUT_MASK": str(tmp_path / "m.tif")}
    cases = [
        (far, "the mask layer 'far clouds' (a temporary scratch layer) does not overlap the input raster"),
        (str(shapefile), f"the mask layer 'far' ({shapefile}) does not overlap the input raster"),
        (str(geojson), f"the mask layer far of {geojson} does not overlap the input raster"),
        (far_polygon_layer("cloud points", "Point"),
         "mask layer 'cloud points' (a temporary scratch layer) has no polygon features (it holds Point)"),
    ]
    temp = QgsProcessingUtils.tempFolder()
    for mask, message in cases:
        with pytest.raises(QgsProcessingException) as err:
            processing.run("satgen:inpaint_clouds", dict(params, MASK=mask))
        assert message in str(err.value)
        assert temp not in str(err.value) and "satgen_mask" not in str(err.value)
    assert not list(Path(temp).rglob("satgen_mask*.gpkg"))  # the copies are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.cpg", "far.dbf", "far.geojson", "far.prj", "far.shp",
                                                          "far.shx", "scene.tif"]


def unnamed_cloud_scene(path):
    """helpers.cloud_scene with its bands unnamed, written to `path`; (path, cloud)."""
    image, cloud = cloud_scene()
    return write_raster(path, image), cloud


def test_qgis_process_detects_with_detection_bands(qgis_process_env, tmp_path):
    enable_plugin(qgis_process_env)
    scene, cloud = unnamed_cloud_scene(tmp_path / "unnamed.tif")
    out, used = tmp_path / "filled.tif", tmp_path / "used.tif"

    def run(*args):
        return subprocess.run([QGIS_PROCESS, "run", "satgen:inpaint_clouds", "--", f"INPUT={scene}", "NORMALIZE=1",
                               f"OUTPUT={out}", f"OUTPUT_MASK={used}", *args],
                              env=qgis_process_env, capture_output=True, text=True, timeout=300)

    unnamed = run("DETECT=true")
    assert unnamed.returncode != 0
    text = unnamed.stdout + unnamed.stderr
    assert "the band names of" in text and "DETECT_BANDS" in text and "e.g. blue=1,green=2,red=3,nir=4" in text
    off = run("DETECT_BANDS=blue=1,green=2,red=3,nir=4")
    assert off.returncode != 0 and "detection is off" in off.stdout + off.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unnamed.tif"]
    given = run("DETECT=true", "DETECT_BANDS=blue=1,green=2,red=3,nir=4")
    assert given.returncode == 0, given.stdout + given.stderr
    with rasterio.open(used) as m:
        assert (m.read(1) == cloud).all()


def test_two_reference_dates_with_their_own_masks_fill_and_say_from_where(satgen_provider, tmp_path):
    """Two references (tests/qgis/test_qgis_process.py two_references): each fills where it alone is
    clear (source 1, 2), the model where neither is (100); the uncertainty is 0 on clear pixels, NaN
    at nodata; REFERENCE_COMBINE=nearest takes, where both are clear, the nearer date by REFERENCE_DATES."""
    import processing
    from qgis.core import QgsFeature, QgsGeometry, QgsProcessingUtils, QgsRectangle, QgsVectorLayer

    from engine.inpainting.references import COMBINE as ENGINE_COMBINE
    from satgen_qgis.algorithms.inpaint_clouds import COMBINE

    assert tuple(COMBINE) == ENGINE_COMBINE
    inputs, data, cloud = two_references(tmp_path / "inputs")
    before = listing(inputs)
    nodata = data[0] == 0
    out = tmp_path / "out"
    out.mkdir()

    def run(name, **params):
        result = processing.run("satgen:inpaint_clouds", {
            "INPUT": str(inputs / "scene.tif"), "MASK": str(inputs / "mask.tif"),
            "REFERENCE": [str(inputs / "a.tif"), str(inputs / "b.tif")],
            "REFERENCE_MASKS": [str(inputs / "a_mask.tif"), None], "OUTPUT": str(out / f"{name}.tif"),
            "OUTPUT_SOURCE": str(out / f"{name}_source.tif"), **params})
        with rasterio.open(result["OUTPUT"]) as o, rasterio.open(result["OUTPUT_SOURCE"]) as s:
            assert s.dtypes[0] == "uint8" and s.nodata == 255
            return result, o.read(), s.read(1)

    result, filled, code = run("weighted", OUTPUT_UNCERTAINTY=str(out / "uncertainty.tif"))
    assert np.array_equal(filled[:, ~cloud], data[:, ~cloud])  # the input's own pixels, bit for bit
    assert (code[~cloud & ~nodata] == 0).all() and (code[nodata] == 255).all()
    assert (code[24:72, 16:40] == 1).all() and (code[24:72, 48:64] == 2).all()  # where each alone is clear
    assert (code[24:72, 64:80] == 100).all()  # neither clear: the model
    assert np.isin(code[24:72, 40:48], [1, 2]).all()  # both clear: the one carrying most weight
    from_references = (code == 1) | (code == 2)
    # a linear change of the scene, recovered; a's garbage under its own mask never used
    assert np.abs(filled.astype(float) - data)[:, from_references].max() <= 3
    with rasterio.open(result["OUTPUT_UNCERTAINTY"]) as u:
        assert (u.count, u.shape, u.dtypes) == (4, (96, 96), ("float32",) * 4) and np.isnan(u.nodata)
        half = u.read()
    assert (half[:, ~cloud & ~nodata] == 0).all() and np.isnan(half[:, nodata]).all()
    assert (half[:, cloud] > 0).all()
    assert half[:, code == 100].mean() > half[:, from_references].mean()  # a reference date is the surer fill

    # both clear at cols 40..47: the nearest date fills there, by the dates given (the input's: INPUT_DATE)
    dates = {"INPUT_DATE": "2021-06-15", "REFERENCE_COMBINE": 1}
    _, _, a_near = run("a_near", REFERENCE_DATES="2021-06-10,2021-03-01", **dates)
    _, _, b_near = run("b_near", REFERENCE_DATES="2021-03-01, 2021-06-10", **dates)
    assert (a_near[24:72, 16:48] == 1).all() and (a_near[24:72, 48:64] == 2).all()
    assert (b_near[24:72, 16:40] == 1).all() and (b_near[24:72, 40:64] == 2).all()
    for codes in (a_near, b_near):
        assert (codes[24:72, 64:80] == 100).all() and (codes[~cloud & ~nodata] == 0).all()

    # a's mask as polygons in a scratch layer (saved to a temporary GeoPackage for the engine), one
    # reference by a path string, bands as text: the same fill as from the raster mask
    with rasterio.open(inputs / "scene.tif") as src:
        left, bottom, right, top = src.bounds
        layer = QgsVectorLayer(f"Polygon?crs=EPSG:{src.crs.to_epsg()}", "a clouds", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(left + 480, bottom, right, top)))  # cols 48..
    layer.dataProvider().addFeatures([feature])
    _, polygons, polygon_code = run("polygons", REFERENCE_MASKS=[layer, "none"], REFERENCE_BANDS="1,2,3,4")
    assert np.array_equal(polygon_code, code) and np.array_equal(polygons, filled)
    assert not list(Path(QgsProcessingUtils.tempFolder()).rglob("satgen_mask*.gpkg"))  # the copy is gone
    # a's clouds from a QA band of its own (band 5 of each reference), as the same fill
    qa_refs = []
    for name in ("a", "b"):
        with rasterio.open(inputs / f"{name}.tif") as src, rasterio.open(inputs / "a_mask.tif") as a_mask:
            bands, profile = src.read(), src.profile
            flags = a_mask.read().astype(bands.dtype) if name == "a" else np.zeros_like(bands[:1])
        with rasterio.open(tmp_path / f"{name}_qa.tif", "w", **dict(profile, count=5)) as dst:
            dst.write(np.concatenate([bands, flags]))
        qa_refs.append(str(tmp_path / f"{name}_qa.tif"))
    _, by_qa, qa_code = run("qa", REFERENCE=qa_refs, REFERENCE_MASKS=None, REFERENCE_BANDS="1,2,3,4",
                            REFERENCE_QA_BAND=5, REFERENCE_QA_EXPRESSION="qa == 1")
    assert np.array_equal(qa_code, code) and np.array_equal(by_qa, filled)
    _, _, one_code = run("one", REFERENCE=str(inputs / "b.tif"), REFERENCE_MASKS=None, REFERENCE_BANDS=[1, 2, 3, 4])
    assert (one_code[24:72, 40:64] == 1).all() and (one_code[24:72, 16:40] == 100).all()  # b is reference 1 now
    assert listing(inputs) == before  # nothing beside the inputs (no .aux.xml), inputs unchanged


def test_reference_settings_that_contradict_are_refused_and_nothing_is_written(satgen_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    inputs, _, _ = two_references(tmp_path / "inputs")
    before = listing(inputs)
    params = {"INPUT": str(inputs / "scene.tif"), "MASK": str(inputs / "mask.tif"), "REFERENCE": str(inputs / "a.tif"),
              "OUTPUT": str(tmp_path / "o.tif"), "OUTPUT_MASK": str(tmp_path / "m.tif"),
              "OUTPUT_SOURCE": str(tmp_path / "s.tif"), "OUTPUT_UNCERTAINTY": str(tmp_path / "u.tif")}
    cases = [
        (dict(REFERENCE_MASKS=[str(inputs / "a_mask.tif"), str(inputs / "mask.tif")]),
         "2 reference masks for 1 reference rasters; give one mask per reference, in the same order"),
        (dict(REFERENCE_DATES="2021-06-10,2021-03-01"), "2 reference dates for 1 reference rasters; give one date"),
        (dict(REFERENCE_DATES="June 2021"), "write dates as YYYY-MM-DD"),
        (dict(INPUT_DATE="2021-13-40"), "write dates as YYYY-MM-DD"),
        (dict(REFERENCE_QA_BAND=4), "a reference QA band needs a QA expression"),
        (dict(REFERENCE_BANDS="1,2,x"), "REFERENCE_BANDS: cannot read '1,2,x' as band numbers; give 1-based band"),
        (dict(REFERENCE=None, REFERENCE_DATES="2021-06-10"),
         "REFERENCE_DATES given without REFERENCE; give the reference rasters or leave it out"),
        (dict(REFERENCE=None, REFERENCE_BANDS="1,2,3,4"), "reference bands were given without a reference image"),
    ]
    for extra, message in cases:
        with pytest.raises(QgsProcessingException) as err:
            processing.run("satgen:inpaint_clouds", dict(params, **extra))
        assert message in str(err.value)
    assert listing(inputs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]
