"""The plugin in real QGIS: loading, provider, and satgen:apply_model through processing.run."""

import numpy as np
import pytest
import rasterio

from helpers import make_model


def test_plugin_class_registers_and_unregisters_the_provider(qgis_app, qgis_processing, qgis_iface):
    from qgis.core import QgsApplication

    import satgen_qgis

    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("satgen")
    if existing is not None:
        registry.removeProvider(existing)
    plugin = satgen_qgis.classFactory(qgis_iface)
    plugin.initProcessing()
    assert registry.providerById("satgen") is not None
    plugin.unload()
    assert registry.providerById("satgen") is None


def test_provider_lists_apply_model(satgen_provider):
    assert satgen_provider.name() == "SatGen"
    assert not satgen_provider.icon().isNull()
    alg = satgen_provider.algorithm("apply_model")
    assert alg is not None
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == ["INPUT", "BANDS", "MODEL", "NORMALIZE", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "DEVICE",
                     "OVERVIEWS", "CLOUD_OPTIMIZED", "OUTPUT"]


def test_apply_model_through_processing_run(satgen_provider, real_raster, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    model = make_model(tmp_path / "m.satgen", in_bands=4)
    result = processing.run("satgen:apply_model", {
        "INPUT": str(real_raster), "MODEL": str(model), "TILE_SIZE": 64, "OVERLAP": 16,
        "BATCH_SIZE": 3, "DEVICE": 1, "OUTPUT": str(tmp_path / "out.tif")})
    layer = QgsRasterLayer(result["OUTPUT"], "out")
    source = QgsRasterLayer(str(real_raster), "in")
    assert layer.isValid()
    assert layer.crs() == source.crs()
    assert layer.extent() == source.extent()
    assert (layer.width(), layer.height(), layer.bandCount()) == (200, 160, 3)
    with rasterio.open(result["OUTPUT"]) as out:
        assert out.read().std() > 0


def test_band_selection_and_clear_errors(satgen_provider, real_raster, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    model3 = make_model(tmp_path / "m3.satgen", in_bands=3)
    out = tmp_path / "out.tif"
    with pytest.raises(QgsProcessingException, match="choose which 3, in the model's order, with BANDS"):
        processing.run("satgen:apply_model", {"INPUT": str(real_raster), "MODEL": str(model3), "OUTPUT": str(out)})
    assert not out.exists()
    result = processing.run("satgen:apply_model", {"INPUT": str(real_raster), "BANDS": [3, 2, 1],
                                                   "MODEL": str(model3), "OUTPUT": str(out)})
    with rasterio.open(result["OUTPUT"]) as o:
        assert o.count == 3
    with pytest.raises(QgsProcessingException, match="pickle"):
        bad = tmp_path / "evil.satgen"
        bad.write_bytes(b"\x80\x04" + b"\x00" * 20)
        processing.run("satgen:apply_model", {"INPUT": str(real_raster), "MODEL": str(bad),
                                              "OUTPUT": str(tmp_path / "o2.tif")})
    assert not (tmp_path / "o2.tif").exists()


def test_cancel_through_qgs_feedback_writes_nothing(satgen_provider, real_raster, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    out = tmp_path / "out.tif"
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("satgen:apply_model", {"INPUT": str(real_raster), "MODEL": str(make_model(
            tmp_path / "m.satgen", in_bands=4)), "OUTPUT": str(out)}, feedback=feedback)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.satgen"]


def test_progress_reaches_qgis_feedback(satgen_provider, real_raster, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback

    seen = []
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(seen.append)
    processing.run("satgen:apply_model", {"INPUT": str(real_raster), "MODEL": str(make_model(
        tmp_path / "m.satgen", in_bands=4)), "OUTPUT": str(tmp_path / "out.tif")}, feedback=feedback)
    assert seen and np.isclose(max(seen), 100.0)


def test_this_environment_runs_the_engine_in_qgis_own_python():
    from satgen_qgis import runner

    assert runner.environment.missing() == []  # this environment has everything
    assert runner.engine_python() is None and runner.where().startswith("QGIS's Python")
