"""The same algorithm through the real qgis_process command line, as users script it."""

import subprocess

import rasterio

from helpers import make_model

QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's qgis_process wrapper is broken (see README)


def qgis_process(env, *args):
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=300)


def test_plugin_loads_and_apply_model_runs(qgis_process_env, real_raster, tmp_path):
    enabled = qgis_process(qgis_process_env, "plugins", "enable", "satgen_qgis")
    assert enabled.returncode == 0, enabled.stderr
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
    qgis_process(qgis_process_env, "plugins", "enable", "satgen_qgis")
    model = make_model(tmp_path / "m.satgen", in_bands=3)
    out = tmp_path / "out.tif"
    run = qgis_process(qgis_process_env, "run", "satgen:apply_model", "--",
                       f"INPUT={real_raster}", f"MODEL={model}", f"OUTPUT={out}")
    assert run.returncode != 0
    assert "BANDS" in run.stdout + run.stderr
    assert not out.exists()
