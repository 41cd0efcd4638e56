"""Inputs stay as they are: no <input>.aux.xml beside the rasters of a run through processing.run
(QGIS's layer statistics, which SatGen avoids by handing raster files to the engine as they are),
while layers of the project still work by ID, name or as layer objects."""

import json

import numpy as np
import pytest
import rasterio
from test_qgis_process import inpaint_inputs, listing


def test_processing_runs_leave_nothing_beside_the_inputs(satgen_provider, tmp_path):
    import processing

    scene, mask, qa, reference = inpaint_inputs(tmp_path / "inputs")
    with rasterio.open(scene) as src:
        from rasterio.warp import transform_geom

        left, _, _, top = src.bounds
        square = {"type": "Polygon", "coordinates": [[(left + 100, top - 100), (left + 300, top - 100),
                                                      (left + 300, top - 300), (left + 100, top - 300),
                                                      (left + 100, top - 100)]]}
        polygons = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": transform_geom(src.crs, "EPSG:4326", square)}]}
    (tmp_path / "inputs" / "clouds.geojson").write_text(json.dumps(polygons))
    before = listing(tmp_path / "inputs")
    out = tmp_path / "out"
    out.mkdir()
    processing.run("satgen:translate", {"INPUT": str(scene), "OUTPUT": str(out / "map.tif")})
    processing.run("satgen:inpaint_clouds", {
        "INPUT": str(scene), "MASK": str(mask), "QA_BAND": str(qa), "QA_EXPRESSION": "bits(14, 15) == 3",
        "REFERENCE": str(reference), "OUTPUT": str(out / "filled.tif"), "OUTPUT_MASK": str(out / "used.tif")})
    processing.run("satgen:inpaint_clouds", {  # a polygon mask, read by the engine from the user's file
        "INPUT": str(scene), "MASK": str(tmp_path / "inputs" / "clouds.geojson"), "OUTPUT": str(out / "f2.tif"),
        "OUTPUT_MASK": str(out / "m2.tif")})
    assert listing(tmp_path / "inputs") == before  # the same files, byte for byte, and no new one
    with rasterio.open(out / "used.tif") as used, rasterio.open(out / "m2.tif") as m2:
        assert (used.read(1) == 1).sum() == 20 * 30 + 10 * 20
        assert (m2.read(1) == 1)[10:30, 10:30].all() and (m2.read(1) == 1).sum() < 24 * 24


@pytest.fixture
def project_layers(tmp_path):
    """Layers added to the project, removed again after the test."""
    from qgis.core import QgsProject

    added = []

    def add(layer):
        assert layer.isValid(), layer.source()
        QgsProject.instance().addMapLayer(layer)
        added.append(layer.id())
        return layer

    yield add
    QgsProject.instance().removeMapLayers(added)


def test_layers_of_the_project_by_id_name_or_object(satgen_provider, project_layers, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    scene, mask, _, _ = inpaint_inputs(tmp_path / "inputs")
    layer = project_layers(QgsRasterLayer(str(scene), "cloudy scene"))
    mask_layer = project_layers(QgsRasterLayer(str(mask), "cloud mask"))
    with rasterio.open(scene) as src:
        original = src.read()
    cloud = np.zeros((96, 96), bool)
    cloud[20:40, 30:60] = True
    for i, (value, mask_value) in enumerate([(layer.id(), mask_layer.id()), ("cloudy scene", "cloud mask"),
                                             (layer, mask_layer)]):
        result = processing.run("satgen:inpaint_clouds", {
            "INPUT": value, "MASK": mask_value, "OUTPUT": str(tmp_path / f"filled{i}.tif"),
            "OUTPUT_MASK": str(tmp_path / f"used{i}.tif")})
        with rasterio.open(result["OUTPUT"]) as out, rasterio.open(result["OUTPUT_MASK"]) as used:
            assert (used.read(1) == 1).sum() == cloud.sum()
            assert np.array_equal(out.read()[:, ~cloud], original[:, ~cloud])
    result = processing.run("satgen:translate", {"INPUT": "cloudy scene", "OUTPUT": str(tmp_path / "map.tif")})
    with rasterio.open(result["OUTPUT"]) as out:
        assert out.shape == (96, 96) and out.count == 3
