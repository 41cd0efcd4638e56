"""The engine in a Python of its own (satgen_qgis/runner.py, engine_env.py): algorithms run it as a
subprocess, and `satgen:check_dependencies INSTALL=true` builds that Python environment from a wheel
folder for a plugin installed from its zip into a fresh profile with nothing of ours on PYTHONPATH."""

import json
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import rasterio
from test_qgis_process import enable_plugin, qgis_process

from helpers import ROOT, make_model

WHEELS = ROOT / "build" / "wheels"


@pytest.fixture
def engine_subprocess(monkeypatch):
    """Algorithms run the engine as a subprocess of this venv's Python, as they would in SatGen's environment."""
    monkeypatch.setenv("SATGEN_PYTHON", sys.executable)
    from satgen_qgis import runner

    assert runner.where().startswith("SatGen's engine environment")


def test_translate_in_a_subprocess_gives_the_same_map(satgen_provider, engine_subprocess, real_raster, tmp_path,
                                                       monkeypatch):
    import processing
    from qgis.core import QgsProcessingFeedback

    seen, messages = [], []

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            messages.append(info)

    feedback = Feedback()
    feedback.progressChanged.connect(seen.append)
    params = {"INPUT": str(real_raster), "TILE_SIZE": 128}
    processing.run("satgen:translate", dict(params, OUTPUT=str(tmp_path / "sub.tif")), feedback=feedback)
    monkeypatch.delenv("SATGEN_PYTHON")
    processing.run("satgen:translate", dict(params, OUTPUT=str(tmp_path / "in.tif")))
    with rasterio.open(tmp_path / "sub.tif") as a, rasterio.open(tmp_path / "in.tif") as b:
        assert a.crs == b.crs and a.transform == b.transform and np.array_equal(a.read(), b.read())
    assert seen and np.isclose(max(seen), 100.0)
    assert any("tiles" in m for m in messages)  # the engine's own log lines come through


def test_engine_errors_in_a_subprocess_read_as_in_qgis_python(satgen_provider, engine_subprocess, real_raster,
                                                              tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    model = make_model(tmp_path / "m.satgen", in_bands=3)
    with pytest.raises(QgsProcessingException, match="BANDS"):
        processing.run("satgen:apply_model", {"INPUT": str(real_raster), "MODEL": str(model),
                                               "OUTPUT": str(tmp_path / "out.tif")})
    assert not (tmp_path / "out.tif").exists()


def test_cancel_in_a_subprocess_stops_within_seconds_and_writes_nothing(satgen_provider, engine_subprocess,
                                                                        real_raster, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelAtFirstEpoch(QgsProcessingFeedback):
        def setProgress(self, progress):  # noqa: N802
            super().setProgress(progress)
            if progress > 0 and not self.isCanceled():
                self.cancelled_at = time.monotonic()
                self.cancel()

    feedback = CancelAtFirstEpoch()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("satgen:train_inpainting", {
            "INPUT": [str(real_raster)], "EPOCHS": 200, "PATCH_SIZE": 32, "BATCH_SIZE": 2, "PATCHES_PER_EPOCH": 8,
            "WIDTH": 4, "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "m.satgen"),
            "OUTPUT_REPORT": str(tmp_path / "report")}, feedback=feedback)
    took = time.monotonic() - feedback.cancelled_at
    print(f"cancel to stop: {took:.1f} s")
    assert took < 10
    assert not (tmp_path / "m.satgen").exists()


def test_check_dependencies_reports_the_engine_environment(satgen_provider, engine_subprocess):
    import processing

    result = processing.run("satgen:check_dependencies", {})
    report = json.loads(result["REPORT"])
    assert result["ENGINE"].startswith("SatGen's engine environment") and result["MISSING"] == ""
    assert report["executable"] == sys.executable and report["missing"] == []


def test_a_broken_engine_environment_says_how_to_rebuild_it(satgen_provider, monkeypatch, real_raster, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("SATGEN_PYTHON", str(tmp_path / "gone" / "python"))
    with pytest.raises(QgsProcessingException, match="Check dependencies"):
        processing.run("satgen:translate", {"INPUT": str(real_raster), "OUTPUT": str(tmp_path / "out.tif")})


def test_the_wheel_choice_follows_the_gpu_and_the_platform():
    from satgen_qgis import engine_env

    assert engine_env.torch_index("linux", gpu=False) == engine_env.TORCH_CPU_INDEX  # 200 MB, not GBs
    assert engine_env.torch_index("linux", gpu=True) is None  # PyPI's CUDA build
    assert engine_env.torch_index("win32", gpu=True) == engine_env.TORCH_CUDA_WINDOWS_INDEX
    assert engine_env.torch_index("win32", gpu=False) is None and engine_env.torch_index("darwin", gpu=False) is None
    python = engine_env.EngineEnv(ROOT / "x").python
    online = engine_env.pip_commands(python, None, "linux", gpu=False)
    assert online[0][-3:] == ["--index-url", engine_env.TORCH_CPU_INDEX, "torch>=2.2,<3"] and len(online) == 2
    offline = engine_env.pip_commands(python, str(WHEELS), "linux", gpu=False)
    assert len(offline) == 1 and "--no-index" in offline[0]


def test_install_refuses_a_folder_that_is_not_ours(satgen_provider, monkeypatch, tmp_path):
    from satgen_qgis import engine_env
    from satgen_qgis.engine_process import EngineMissingError

    (tmp_path / "mine.txt").write_text("user data")
    monkeypatch.setenv("SATGEN_ENV_DIR", str(tmp_path))
    with pytest.raises(EngineMissingError, match="not SatGen's environment"):
        engine_env.install(None, wheels=str(WHEELS))
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_the_plugin_zip_installs_its_engine_from_wheels_and_translates(qgis_process_env, real_raster, tmp_path):
    """The issue's test: make package, install the zip into a fresh profile, nothing of ours on PYTHONPATH,
    INSTALL=true from a wheel folder, then satgen:translate through qgis_process."""
    if not (WHEELS / ".complete").exists():
        pytest.fail(f"{WHEELS} is missing: run `make wheels` (make test does it for you)")
    build = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (archive,) = (ROOT / "dist").glob("satgen_qgis-*.zip")
    config = tmp_path / "qgis-config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(archive) as z:  # what the plugin manager's "Install from ZIP" does
        z.extractall(plugins)
    env = {k: v for k, v in qgis_process_env.items() if not k.startswith("SATGEN_")}
    env.update(PYTHONPATH="", QGIS_PLUGINPATH="", QGIS_CUSTOM_CONFIG_PATH=str(config))
    enable_plugin(env)
    out = tmp_path / "map.tif"
    before = qgis_process(env, "run", "satgen:translate", "--", f"INPUT={real_raster}", f"OUTPUT={out}")
    assert before.returncode != 0 and "INSTALL=true" in before.stdout + before.stderr

    started = time.monotonic()
    install = qgis_process(env, "--json", "run", "satgen:check_dependencies", "--", "INSTALL=true",
                           f"WHEELS={WHEELS}")
    took = time.monotonic() - started
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    result = json.loads(install.stdout)["results"]
    report = json.loads(result["REPORT"])
    env_folder = config / "satgen" / "engine-env"
    assert result["MISSING"] == "" and result["ENGINE"].startswith("SatGen's engine environment")
    assert report["plugin"] == str(plugins / "satgen_qgis")  # the zip's plugin ran, not the checkout's
    assert report["prefix"] == str(env_folder) and report["packages"]["numpy"].startswith("2.")
    assert (env_folder / "satgen-env.json").exists()
    print(f"INSTALL=true from wheels took {took:.0f} s")

    run = qgis_process(env, "run", "satgen:translate", "--", f"INPUT={real_raster}", f"OUTPUT={out}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with rasterio.open(out) as o, rasterio.open(real_raster) as i:
        assert o.crs == i.crs and o.transform == i.transform and o.shape == i.shape and o.count == 3
        assert len(np.unique(o.read().reshape(3, -1), axis=1)) > 1  # a map, not one colour

    again = qgis_process(env, "--json", "run", "satgen:check_dependencies", "--", "INSTALL=true",
                         f"WHEELS={WHEELS}")
    assert again.returncode == 0 and "nothing to install" in again.stdout


def test_desktop_offers_the_install_in_one_click_when_the_engine_is_missing(qgis_iface, monkeypatch, tmp_path):
    from qgis.PyQt.QtWidgets import QPushButton

    from satgen_qgis.plugin import SatGenPlugin

    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    monkeypatch.setenv("SATGEN_PYTHON", str(tmp_path / "removed-env" / "bin" / "python"))  # its Python is gone
    plugin = SatGenPlugin(qgis_iface)
    plugin.offer_install()
    assert plugin.install_bar is not None and bar.currentItem() is plugin.install_bar
    assert "not installed" in plugin.install_bar.text()
    (button,) = [b for b in plugin.install_bar.findChildren(QPushButton) if b.text().startswith("Install")]
    plugin.unload()
    assert bar.currentItem() is None

    monkeypatch.setenv("SATGEN_PYTHON", sys.executable)  # an engine that runs: no offer
    plugin = SatGenPlugin(qgis_iface)
    plugin.offer_install()
    assert plugin.install_bar is None


def test_a_broken_environment_is_rebuilt_and_a_failed_install_leaves_nothing(satgen_provider, monkeypatch, tmp_path):
    """An environment whose Python no longer runs (say, removed by a QGIS upgrade) is made anew on INSTALL;
    when that install fails (here: a wheel folder whose torch is not a wheel), the folder is removed again
    and the message says what failed."""
    import processing
    from qgis.core import QgsProcessingException

    env = tmp_path / "engine-env"
    (env / "bin").mkdir(parents=True)
    (env / "satgen-env.json").write_text("{}")
    python = env / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'error while loading shared libraries: libpython3.11.so' >&2\nexit 127\n")
    python.chmod(0o755)
    monkeypatch.setenv("SATGEN_ENV_DIR", str(env))
    monkeypatch.delenv("SATGEN_PYTHON", raising=False)
    report = processing.run("satgen:check_dependencies", {})
    assert "does not run" in report["REPORT"] and report["MISSING"]  # said, not raised

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-9.9.9-py3-none-any.whl").write_bytes(b"not a wheel")
    with pytest.raises(QgsProcessingException, match="failed"):
        processing.run("satgen:check_dependencies", {"INSTALL": True, "WHEELS": str(wheels)})
    assert not env.exists()  # neither the broken environment nor the unfinished one is left
