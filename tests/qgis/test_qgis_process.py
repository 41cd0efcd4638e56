"""The same algorithm through the real qgis_process command line, as users script it."""

import subprocess

import rasterio

from helpers import make_model

QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's qgis_process wrapper is broken (see README)


def qgis_process(env, *args):
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=300)


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
    assert "pip install torch safetensors" in run.stdout + run.stderr
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
