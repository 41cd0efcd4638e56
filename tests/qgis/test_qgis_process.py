"""The same algorithm through the real qgis_process command line, as users script it."""

import subprocess
import tempfile

import rasterio

from helpers import make_model, write_tile_dataset

QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's qgis_process wrapper is broken (see README)


def qgis_process(env, *args):
    # run outside the checkout: QGIS's Python puts the current folder first on sys.path, where this
    # checkout's satgen_qgis would shadow the plugin under test (the zip's, in the packaging tests)
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tempfile.gettempdir())


def enable_plugin(env):
    qgis_process(env, "plugins", "enable", "satgen_qgis")  # exits 1 when it is enabled already
    assert "* satgen_qgis" in qgis_process(env, "plugins").stdout  # '*' marks enabled plugins


def test_plugin_loads_and_apply_model_runs(qgis_process_env, real_raster, tmp_path):
    enable_plugin(qgis_process_env)
    listing = qgis_process(qgis_process_env, "list")
    assert "satgen:apply_model" in listing.stdout

    model = make_model(tmp_path / "m.satgen", in_bands=4)
    out = tmp_path / "out.tif"
    run = qgis_process(qgis_process_env, "run", "satgen:apply_model", "--",
                       f"INPUT={real_raster}", f"MODEL={model}", "TILE_SIZE=64", "BATCH_SIZE=2", f"OUTPUT={out}")
    assert run.returncode == 0, run.stdout + run.stderr
    with rasterio.open(out) as o, rasterio.open(real_raster) as i:
        assert o.crs == i.crs and o.transform == i.transform and o.shape == i.shape


def test_bad_input_fails_with_a_clear_message(qgis_process_env, real_raster, tmp_path):
    enable_plugin(qgis_process_env)
    model = make_model(tmp_path / "m.satgen", in_bands=3)
    out = tmp_path / "out.tif"
    run = qgis_process(qgis_process_env, "run", "satgen:apply_model", "--",
                       f"INPUT={real_raster}", f"MODEL={model}", f"OUTPUT={out}")
    assert run.returncode != 0
    assert "BANDS" in run.stdout + run.stderr
    assert not out.exists()


def test_without_torch_the_plugin_loads_and_says_what_to_install(qgis_process_env, real_raster, tmp_path):
    # QGIS's own Python has no torch/safetensors: only the venv (PYTHONPATH) has them
    env = dict(qgis_process_env, PYTHONPATH="")
    enable_plugin(env)
    assert "satgen:apply_model" in qgis_process(env, "list").stdout
    out = tmp_path / "out.tif"
    run = qgis_process(env, "run", "satgen:translate", "--", f"INPUT={real_raster}", f"OUTPUT={out}")
    assert run.returncode != 0
    assert "Check dependencies" in run.stdout + run.stderr and "INSTALL=true" in run.stdout + run.stderr
    assert not out.exists()


def test_packaged_zip_loads_and_runs_on_its_own(qgis_process_env, real_raster, tmp_path):
    # the zip `make package` builds: one top folder carrying the engine, nothing else on sys.path
    import zipfile

    from helpers import ROOT

    build = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (archive,) = (ROOT / "dist").glob("satgen_qgis-*.zip")
    with zipfile.ZipFile(archive) as z:
        assert {name.split("/")[0] for name in z.namelist()} == {"satgen_qgis"}
        names = z.namelist()
        assert "satgen_qgis/engine/pipeline.py" in names and "satgen_qgis/metadata.txt" in names
        assert "satgen_qgis/resources/models/translate_s2_osm.satgen" in names
        assert not [n for n in names if "/devtools/" in n or "__pycache__" in n]  # no development-only modules
        assert not [i.filename for i in z.infolist() if (i.external_attr >> 16) & 0o170000 == 0o120000]  # no links
        z.extractall(tmp_path / "plugins")
    env = dict(qgis_process_env, QGIS_PLUGINPATH=str(tmp_path / "plugins"))
    enable_plugin(env)
    model = make_model(tmp_path / "m.satgen", in_bands=4)
    out = tmp_path / "out.tif"
    run = qgis_process(env, "run", "satgen:apply_model", "--", f"INPUT={real_raster}", f"MODEL={model}",
                       "TILE_SIZE=64", f"OUTPUT={out}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.exists()


def test_translate_with_the_shipped_default_model(qgis_process_env, real_raster, tmp_path):
    import numpy as np

    from engine.modelfile import default_model, read_card

    enable_plugin(qgis_process_env)
    out = tmp_path / "map.tif"
    run = qgis_process(qgis_process_env, "run", "satgen:translate", "--", f"INPUT={real_raster}", f"OUTPUT={out}")
    assert run.returncode == 0, run.stdout + run.stderr
    legend = np.array(list(read_card(default_model("translate")).legend.values()), np.int32)
    with rasterio.open(out) as o, rasterio.open(real_raster) as i:
        assert (o.crs, o.transform, o.shape, o.count, o.dtypes[0]) == (i.crs, i.transform, i.shape, 3, "uint8")
        rgb = o.read().reshape(3, -1).T.astype(np.int32)
    # a map: most pixels are close to one of the legend's colours
    distance = np.abs(rgb[:, None, :] - legend[None]).max(axis=2).min(axis=1)
    assert (distance < 30).mean() > 0.5


def listing(folder):
    """{name: bytes} of every file in a folder."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def inpaint_inputs(folder):
    """A crop of the real Virginia scene, a cloud mask raster and a QA raster on its grid, and a
    clear reference over the same ground on another grid (a larger crop): the inputs of one
    inpaint_clouds run with every kind of raster input."""
    import numpy as np

    from helpers import SAMPLES, crop_raster, write_raster

    folder.mkdir()
    scene = crop_raster(SAMPLES / "s2_virginia_10m.tif", folder / "scene.tif", 800, 800, 96, 96)
    reference = crop_raster(SAMPLES / "s2_virginia_10m.tif", folder / "reference.tif", 780, 780, 140, 140)
    cloud = np.zeros((1, 96, 96), np.uint8)
    cloud[0, 20:40, 30:60] = 1
    qa = np.zeros((1, 96, 96), np.uint16)
    qa[0, 60:70, 10:30] = 3 << 14
    with rasterio.open(scene) as src:
        mask = write_raster(folder / "mask.tif", cloud, crs=src.crs, transform=src.transform)
        qa_path = write_raster(folder / "bqa.tif", qa, crs=src.crs, transform=src.transform)
    return scene, mask, qa_path, reference


def test_runs_leave_nothing_beside_the_inputs(qgis_process_env, tmp_path):
    """QGIS made a layer of each input raster, whose statistics GDAL saved as <input>.aux.xml
    beside it; SatGen hands raster files to the engine as they are (satgen_qgis/algorithms/base.py)."""
    enable_plugin(qgis_process_env)
    scene, mask, qa, reference = inpaint_inputs(tmp_path / "inputs")
    before = listing(tmp_path / "inputs")
    out = tmp_path / "out"
    out.mkdir()
    run = qgis_process(qgis_process_env, "run", "satgen:translate", "--", f"INPUT={scene}", f"OUTPUT={out / 'map.tif'}")
    assert run.returncode == 0, run.stdout + run.stderr
    run = qgis_process(qgis_process_env, "run", "satgen:inpaint_clouds", "--", f"INPUT={scene}", f"MASK={mask}",
                       f"QA_BAND={qa}", "QA_EXPRESSION=bits(14, 15) == 3", f"REFERENCE={reference}",
                       f"OUTPUT={out / 'filled.tif'}", f"OUTPUT_MASK={out / 'used.tif'}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "filling from 1 reference date(s)" in run.stdout
    assert listing(tmp_path / "inputs") == before  # the same files, byte for byte, and no new one
    assert sorted(p.name for p in out.iterdir()) == ["filled.tif", "map.tif", "used.tif"]
    with rasterio.open(out / "used.tif") as used:
        assert (used.read(1) == 1).sum() == 20 * 30 + 10 * 20


def test_a_file_that_is_no_raster_is_named(qgis_process_env, tmp_path):
    enable_plugin(qgis_process_env)
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster")
    run = qgis_process(qgis_process_env, "run", "satgen:translate", "--", f"INPUT={notes}",
                       f"OUTPUT={tmp_path / 'map.tif'}")
    assert run.returncode != 0
    assert f"INPUT: cannot read {notes} as a raster; give a GeoTIFF" in run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tif"]


def test_imagery_unlike_the_models_is_warned_and_a_scene_stretch_runs_it(qgis_process_env, tmp_path):
    """The default translation model (Sentinel-2 L1C reflectance x 10000) on Landsat-8 DN: a warning
    naming the fix; NORMALIZE=1 (scene) fits the stretch on the raster and says so; OVERVIEWS=1
    (yes) gives the map overviews, CLOUD_OPTIMIZED=true a COG with them."""
    from helpers import SAMPLES, crop_raster

    enable_plugin(qgis_process_env)
    landsat = crop_raster(SAMPLES / "l8_pensacola_cloudy.tif", tmp_path / "l8.tif", 100, 100, 300, 300)
    out = tmp_path / "map.tif"
    plain = qgis_process(qgis_process_env, "run", "satgen:translate", "--", f"INPUT={landsat}",
                         *(f"BANDS={b}" for b in (2, 3, 4, 5)), f"OUTPUT={out}")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "not those the model was trained on" in plain.stdout + plain.stderr
    assert "NORMALIZE=1" in plain.stdout + plain.stderr
    scene = qgis_process(qgis_process_env, "run", "satgen:translate", "--", f"INPUT={landsat}",
                         *(f"BANDS={b}" for b in (2, 3, 4, 5)), "NORMALIZE=1", "OVERVIEWS=1", f"OUTPUT={out}")
    assert scene.returncode == 0, scene.stdout + scene.stderr
    assert "scene stretch" in scene.stdout and "not those the model was trained on" not in scene.stdout
    with rasterio.open(out) as o:
        assert o.overviews(1) == [2]
        tiff = o.read()
    cog = qgis_process(qgis_process_env, "run", "satgen:translate", "--", f"INPUT={landsat}",
                       *(f"BANDS={b}" for b in (2, 3, 4, 5)), "NORMALIZE=1", "OVERVIEWS=1", "CLOUD_OPTIMIZED=true",
                       f"OUTPUT={tmp_path / 'cog.tif'}")
    assert cog.returncode == 0, cog.stdout + cog.stderr
    with rasterio.open(tmp_path / "cog.tif") as o:
        assert o.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and o.overviews(1) == [2]
        assert (o.read() == tiff).all()


def two_references(folder):
    """A crop of the real Virginia scene (nodata 0 in its top-left 4 x 4 px) with a cloud mask over rows
    24..71, cols 16..79, and two references of other dates on its grid, each a linear change of it:
    a.tif (0.8 x + 150) with its own cloud mask a_mask.tif over cols 48.. (garbage there), b.tif
    (1.1 x + 50) with nodata outside cols 40..63. So under the cloud: cols 16..39 only a is clear,
    40..47 both, 48..63 only b, 64..79 none. (folder, scene values, cloud) with the files in folder."""
    import numpy as np

    from helpers import SAMPLES, crop_raster, write_raster

    folder.mkdir()
    crop = crop_raster(SAMPLES / "s2_virginia_10m.tif", folder / "crop.tif", 800, 800, 96, 96)
    with rasterio.open(crop) as src:
        data, crs, transform = src.read(), src.crs, src.transform
    crop.unlink()
    data = np.maximum(data, 1)
    data[:, :4, :4] = 0
    write_raster(folder / "scene.tif", data, crs=crs, transform=transform, nodata=0)
    cloud = np.zeros((96, 96), bool)
    cloud[24:72, 16:80] = True
    write_raster(folder / "mask.tif", cloud[None].astype(np.uint8), crs=crs, transform=transform)
    a = (0.8 * data + 150).astype(np.uint16)
    a[:, :, 48:] = 60000  # cloud in a, masked by its own mask
    write_raster(folder / "a.tif", a, crs=crs, transform=transform)
    a_cloud = np.zeros((1, 96, 96), np.uint8)
    a_cloud[0, :, 48:] = 1
    write_raster(folder / "a_mask.tif", a_cloud, crs=crs, transform=transform)
    b = (1.1 * data + 50).astype(np.uint16)
    b[:, :, :40] = 0
    b[:, :, 64:] = 0
    write_raster(folder / "b.tif", b, crs=crs, transform=transform, nodata=0)
    return folder, data, cloud


def test_inpaint_from_two_reference_dates(qgis_process_env, tmp_path):
    """REFERENCE repeated for several dates, REFERENCE_MASKS in the same order ('none' for a reference
    without), REFERENCE_BANDS repeated, the nearest date by REFERENCE_DATES and the source layer."""
    import numpy as np

    enable_plugin(qgis_process_env)
    inputs, data, cloud = two_references(tmp_path / "inputs")
    before = listing(inputs)
    out = tmp_path / "out"
    out.mkdir()
    run = qgis_process(qgis_process_env, "run", "satgen:inpaint_clouds", "--", f"INPUT={inputs / 'scene.tif'}",
                       f"MASK={inputs / 'mask.tif'}", f"REFERENCE={inputs / 'a.tif'}", f"REFERENCE={inputs / 'b.tif'}",
                       f"REFERENCE_MASKS={inputs / 'a_mask.tif'}", "REFERENCE_MASKS=none",
                       *(f"REFERENCE_BANDS={b}" for b in (1, 2, 3, 4)), "REFERENCE_DATES=2021-03-01,2021-06-10",
                       "INPUT_DATE=2021-06-15", "REFERENCE_COMBINE=nearest", f"OUTPUT={out / 'filled.tif'}",
                       f"OUTPUT_SOURCE={out / 'source.tif'}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "references nearest first: b.tif (2021-06-10, 5 days), a.tif (2021-03-01, 106 days)" in run.stdout
    assert listing(inputs) == before  # no .aux.xml beside the inputs
    assert sorted(p.name for p in out.iterdir()) == ["filled.tif", "source.tif"]
    with rasterio.open(out / "filled.tif") as o, rasterio.open(out / "source.tif") as s:
        filled, code = o.read(), s.read(1)
        assert s.dtypes[0] == "uint8" and s.nodata == 255
    assert np.array_equal(filled[:, ~cloud], data[:, ~cloud])
    expected = np.zeros((96, 96), np.uint8)
    expected[24:72, 16:40], expected[24:72, 40:64], expected[24:72, 64:80] = 1, 2, 100
    expected[:4, :4] = 255
    assert np.array_equal(code, expected)  # where both are clear (cols 40..47) the nearest date, b (2)
    from_references = (code == 1) | (code == 2)
    assert np.abs(filled.astype(float) - data)[:, from_references].max() <= 3  # a linear change, recovered


def _check_dependencies(env) -> dict:
    import json

    run = qgis_process(env, "--json", "run", "satgen:check_dependencies")
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def test_check_dependencies_reports_versions_and_the_device(qgis_process_env):
    import json

    import numpy
    import torch

    enable_plugin(qgis_process_env)
    result = _check_dependencies(qgis_process_env)
    outputs, report = result["results"], json.loads(result["results"]["REPORT"])
    assert outputs["MISSING"] == "" and report["missing"] == []
    assert report["torch"] == torch.__version__ and report["packages"]["numpy"] == numpy.__version__
    expected = "cuda:0" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads"
    assert outputs["DEVICE"].startswith(expected)
    assert f"device: {outputs['DEVICE']}" in result["log"]["info"]


def test_check_dependencies_runs_without_torch_and_says_what_is_missing(qgis_process_env):
    env = dict(qgis_process_env, PYTHONPATH="")  # QGIS's own Python: no torch, no safetensors
    enable_plugin(env)
    result = _check_dependencies(env)
    assert set(result["results"]["MISSING"].split(",")) >= {"torch", "safetensors"}
    assert result["results"]["DEVICE"] == "unavailable (torch is missing)"
    assert any("INSTALL=true" in w for w in result["log"]["warning"])
    assert result["results"]["ENGINE"].startswith("nowhere")


def test_train_from_folders_of_pairs_then_translate(qgis_process_env, tmp_path):
    """train -> model file -> translate from the command line, on a tile data set given by glob patterns."""
    enable_plugin(qgis_process_env)
    write_tile_dataset(tmp_path / "city", tiles=2, per_tile=2)
    model, tiles = tmp_path / "m.satgen", tmp_path / "city" / "Tile *"
    run = qgis_process(qgis_process_env, "run", "satgen:train_translation", "--",
                       f"IMAGES={tiles / 'images'}", f"MAPS={tiles / 'masks'}",
                       "HOLDOUT=1", "EPOCHS=1", "PATCH_SIZE=32", "BATCH_SIZE=2", "PATCHES_PER_EPOCH=4", "WIDTH=4",
                       "DEVICE=1", f"OUTPUT_MODEL={model}", f"OUTPUT_REPORT={tmp_path / 'report'}")
    assert run.returncode == 0 and model.exists(), run.stdout + run.stderr
    out = tmp_path / "map.tif"
    run = qgis_process(qgis_process_env, "run", "satgen:translate", "--",
                       f"INPUT={tmp_path / 'city' / 'Tile 2' / 'images' / 'part_001.jpg'}", f"MODEL={model}",
                       f"OUTPUT={out}")
    assert run.returncode == 0, run.stdout + run.stderr
    with rasterio.open(out) as o:
        assert o.count == 3 and o.shape == (72, 88)
