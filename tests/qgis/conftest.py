"""QGIS fixtures: the real SatGen provider in the real Processing registry, a
crop of a real Sentinel-2 scene, and the environment to run real qgis_process."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from helpers import ROOT, SAMPLES, crop_raster

_KEEP = []  # a Python provider must stay referenced, or its Python half is collected


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.qgis)


@pytest.fixture(scope="session", autouse=True)
def release_qgis_objects_before_exit(qgis_app):
    """Python-made layers and providers must go while QGIS is alive; deleted after
    QgsApplication.exitQgis() they crash the interpreter at exit."""
    yield
    import gc

    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    if registry.providerById("satgen") is not None:
        registry.removeProvider("satgen")
    _KEEP.clear()
    gc.collect()
    QgsApplication.processEvents()  # deleteLater() of layer copies


@pytest.fixture
def satgen_provider(qgis_processing):
    """The SatGen provider in the registry (registered again if a test unloaded it)."""
    from qgis.core import QgsApplication

    from satgen_qgis.provider import SatGenProvider

    registry = QgsApplication.processingRegistry()
    if registry.providerById("satgen") is None:
        _KEEP.append(SatGenProvider())
        assert registry.addProvider(_KEEP[-1])
    return registry.providerById("satgen")


@pytest.fixture(scope="session")
def real_raster(tmp_path_factory) -> Path:
    """A 200 x 160 px crop of the real Sentinel-2 Havel scene (B02 B03 B04 B08, uint16)."""
    src_path = SAMPLES / "s2_havel_10m.tif"
    if not src_path.exists():
        pytest.fail(f"{src_path} is missing: run `make data` (make test does it for you)")
    return crop_raster(src_path, tmp_path_factory.mktemp("real") / "havel_crop.tif", 300, 600, 160, 200)


@pytest.fixture(scope="session")
def qgis_process_env(tmp_path_factory) -> dict:
    """Environment for /usr/bin/qgis_process.bin with this plugin (as `make qgis-process` sets it)."""
    plugins = ROOT / "build" / "dev-plugin"
    if not (plugins / "satgen_qgis" / "metadata.txt").exists():
        pytest.fail(f"{plugins} holds no plugin folder: run `make dev-plugin` (make test does it for you)")
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=str(plugins),
        PYTHONPATH=sysconfig.get_paths()["purelib"],
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path_factory.mktemp("qgis-profile")),
    )
    return env
