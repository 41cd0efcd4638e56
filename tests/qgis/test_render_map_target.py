"""satgen:render_map_target on the real Havel scene and its real OpenStreetMap land use:
grid, pure legend colours, strips, reprojection, clear errors, and real qgis_process."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from helpers import ROOT, SAMPLES

STYLE = ROOT / "resources" / "styles" / "osm_landuse.qml"
LANDUSE = SAMPLES / "havel_osm_landuse.gpkg"
SCENE = SAMPLES / "s2_havel_10m.tif"
FCLASSES = {"farm", "meadow", "forest", "residential", "scrub", "wetland", "water", "grass"}
QGIS_PROCESS = "/usr/bin/qgis_process.bin"


@pytest.fixture(scope="module")
def havel_crop(tmp_path_factory):
    """A 300 x 200 px crop of the real Sentinel-2 Havel scene with forest, meadow, farm and water."""
    out = tmp_path_factory.mktemp("havel") / "havel_300x200.tif"
    with rasterio.open(SCENE) as src:
        window = Window(450, 150, 300, 200)
        profile = src.profile | dict(width=300, height=200, transform=src.window_transform(window),
                                     tiled=False, blockxsize=None, blockysize=None)
        with rasterio.open(out, "w", **{k: v for k, v in profile.items() if v is not None}) as dst:
            dst.write(src.read(window=window))
    return out


@pytest.fixture(scope="module")
def landuse_4326(tmp_path_factory, qgis_processing):
    """The land-use polygons reprojected to EPSG:4326 by QGIS's own algorithm."""
    import processing
    from qgis.core import QgsCoordinateReferenceSystem

    out = tmp_path_factory.mktemp("wgs84") / "landuse_4326.gpkg"
    processing.run("native:reprojectlayer", {"INPUT": str(LANDUSE), "TARGET_CRS":
                                             QgsCoordinateReferenceSystem("EPSG:4326"), "OUTPUT": str(out)})
    return out


def render(raster, tmp_path, name="map", **params):
    import processing

    result = processing.run("satgen:render_map_target", {
        "INPUT": str(raster), "LAYERS": [str(LANDUSE)], "STYLE": str(STYLE),
        "OUTPUT": str(tmp_path / f"{name}.tif"), "OUTPUT_LEGEND": str(tmp_path / f"{name}.json")} | params)
    with rasterio.open(result["OUTPUT"]) as out:
        return out.read(), result


def colour_codes(rgb: np.ndarray) -> np.ndarray:
    return (rgb[0].astype(np.int64) << 16) | (rgb[1].astype(np.int64) << 8) | rgb[2]


def inner_forest_pixel(raster):
    """(row, col) of a pixel well inside the largest forest polygon in the raster."""
    from qgis.core import QgsFeatureRequest, QgsRectangle, QgsVectorLayer

    with rasterio.open(raster) as src:
        b, t = src.bounds, src.transform
    layer = QgsVectorLayer(str(LANDUSE), "landuse", "ogr")
    inside = QgsRectangle(b.left, b.bottom, b.right, b.top)
    request = QgsFeatureRequest().setFilterExpression("\"fclass\" = 'forest'").setFilterRect(inside)
    forests = [f.geometry() for f in layer.getFeatures(request) if inside.contains(f.geometry().boundingBox())]
    assert forests, "the crop should hold a whole forest polygon"
    core = max(forests, key=lambda g: g.area()).buffer(-25, 8)  # 25 m inside its edges
    point = core.pointOnSurface().asPoint()
    return int((t.f - point.y()) / -t.e), int((point.x() - t.c) / t.a)


def test_provider_lists_render_map_target(satgen_provider):
    alg = satgen_provider.algorithm("render_map_target")
    assert alg is not None
    assert [p.name() for p in alg.parameterDefinitions()] == [
        "INPUT", "LAYERS", "STYLE", "BACKGROUND", "OUTPUT", "OUTPUT_LEGEND"]
    assert "legend" in alg.shortHelpString().lower()


def test_map_target_has_the_raster_grid_and_only_legend_colours(satgen_provider, havel_crop, tmp_path):
    rgb, result = render(havel_crop, tmp_path)
    with rasterio.open(result["OUTPUT"]) as out, rasterio.open(havel_crop) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.count == 3 and out.dtypes == ("uint8",) * 3
        assert out.descriptions == ("red", "green", "blue")

    legend = json.loads((tmp_path / "map.json").read_text())
    assert set(legend) == FCLASSES | {"other", "background"}
    assert legend["background"] == [0xF2, 0xEF, 0xE9]
    assert all(isinstance(v, int) for c in legend.values() for v in c)

    codes = colour_codes(rgb)
    known = np.isin(codes, colour_codes(np.array(list(legend.values())).T[:, :, None]))
    assert known.mean() >= 0.99, f"only {known.mean():.3%} of pixels are legend colours"
    present = {label for label, c in legend.items() if (codes == colour_codes(np.array(c)[:, None, None])).any()}
    assert {"forest", "meadow", "background"} <= present and len(present) >= 5

    row, col = inner_forest_pixel(havel_crop)
    assert rgb[:, row, col].tolist() == legend["forest"]


def test_strips_give_the_same_image_as_one_render(qgis_app):
    """The whole real scene (1536 x 768 px) in strips of 100 rows and in one piece: every pixel equal."""
    from qgis.core import QgsRasterLayer, QgsVectorLayer
    from qgis.PyQt.QtGui import QColor

    from satgen_qgis import rendering

    raster = QgsRasterLayer(str(SCENE), "scene")
    layer = QgsVectorLayer(str(LANDUSE), "landuse", "ogr")
    assert layer.loadNamedStyle(str(STYLE))[1]
    rendering.unclip_symbols(layer)
    e = raster.extent()
    grid = rendering.Grid(raster.crs(), e.xMinimum(), e.yMaximum(), e.width() / raster.width(),
                          raster.width(), raster.height())

    def render_in(strip_rows):
        parts = []
        rendering.render_layers_to_grid([layer], grid, QColor("#f2efe9"), parts.append, strip_rows=strip_rows)
        assert all(p.shape[0] == 3 and p.shape[2] == grid.width for p in parts)
        assert len(parts) == -(-grid.height // strip_rows)
        return np.concatenate(parts, axis=1)

    whole, strips = render_in(grid.height), render_in(100)
    assert whole.shape == (3, 768, 1536)
    assert len(np.unique(colour_codes(whole))) >= 8  # a real map, not a blank
    assert np.array_equal(strips, whole)


def test_runs_in_a_background_task_like_qgis_desktop(satgen_provider, qgis_app, havel_crop, tmp_path):
    """Desktop QGIS runs algorithms in a worker thread on the project's layers: same map as processing.run."""
    import time

    from qgis.core import (
        QgsApplication,
        QgsProcessingAlgRunnerTask,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProject,
        QgsVectorLayer,
    )

    expected, _ = render(havel_crop, tmp_path, "direct")
    project = QgsProject.instance()
    layer = QgsVectorLayer(str(LANDUSE), "landuse", "ogr")
    assert layer.loadNamedStyle(str(STYLE))[1]
    project.addMapLayer(layer)
    try:
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()  # the task does not own them
        context.setProject(project)
        task = QgsProcessingAlgRunnerTask(
            satgen_provider.algorithm("render_map_target"),
            {"INPUT": str(havel_crop), "LAYERS": [layer.id()], "OUTPUT": str(tmp_path / "task.tif")},
            context, feedback)
        done = {}
        task.executed.connect(lambda ok, results: done.update(ok=ok, results=results))
        QgsApplication.taskManager().addTask(task)
        deadline = time.monotonic() + 60
        while not done and time.monotonic() < deadline:
            qgis_app.processEvents()
            time.sleep(0.01)
    finally:
        project.removeMapLayer(layer.id())
    assert done.get("ok"), done
    with rasterio.open(done["results"]["OUTPUT"]) as out:
        assert np.array_equal(out.read(), expected)


def test_layer_in_another_crs_lands_on_the_same_pixels(satgen_provider, havel_crop, landuse_4326, tmp_path):
    from qgis.core import QgsVectorLayer

    assert QgsVectorLayer(str(landuse_4326), "wgs84", "ogr").crs().authid() == "EPSG:4326"
    native, _ = render(havel_crop, tmp_path, "native")
    reprojected, _ = render(havel_crop, tmp_path, "wgs84", LAYERS=[str(landuse_4326)])
    same = (native == reprojected).all(axis=0).mean()
    assert same >= 0.98, f"only {same:.2%} of pixels agree"


def test_unknown_values_draw_as_other_and_user_layers_keep_their_style(satgen_provider, havel_crop, tmp_path):
    from qgis.core import QgsFeature, QgsGeometry, QgsRectangle, QgsVectorLayer

    with rasterio.open(havel_crop) as src:
        b = src.bounds
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=fclass:string", "quarries", "memory")
    feature = QgsFeature(layer.fields())
    feature.setAttributes(["quarry"])
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(b.left, b.bottom, b.left + 500, b.bottom + 500)))
    layer.dataProvider().addFeatures([feature])
    renderer_before = layer.renderer().type()

    rgb, _ = render(havel_crop, tmp_path, LAYERS=[layer])
    legend = json.loads((tmp_path / "map.json").read_text())
    assert rgb[:, -10, 10].tolist() == legend["other"]  # inside the 500 m square at the lower left
    assert rgb[:, 10, -10].tolist() == legend["background"]
    assert layer.renderer().type() == renderer_before  # STYLE went onto a clone


def silent_layer():
    from qgis.core import QgsNullSymbolRenderer, QgsVectorLayer

    layer = QgsVectorLayer(str(LANDUSE), "unstyled", "ogr")
    layer.setRenderer(QgsNullSymbolRenderer())
    return layer


def empty_categories_layer():
    from qgis.core import QgsCategorizedSymbolRenderer, QgsVectorLayer

    layer = QgsVectorLayer(str(LANDUSE), "no categories", "ogr")
    layer.setRenderer(QgsCategorizedSymbolRenderer("fclass", []))
    return layer


def far_away_layer():
    from qgis.core import QgsFeature, QgsGeometry, QgsRectangle, QgsVectorLayer

    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=fclass:string", "elsewhere", "memory")
    feature = QgsFeature(layer.fields())
    feature.setAttributes(["forest"])
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(500000, 5000000, 501000, 5001000)))
    layer.dataProvider().addFeatures([feature])
    return layer


@pytest.mark.parametrize("case, message", [
    ("no layers", "LAYERS: no layers given"),
    ("outside", "none of LAYERS overlaps the INPUT raster's extent"),
    ("null renderer", "a target with no styled layers: layer 'unstyled' draws nothing"),
    ("no categories", "a target with no styled layers: layer 'no categories' draws nothing"),
    ("broken style", "STYLE: QGIS could not load the style"),
    ("missing style", "STYLE: the style file .* does not exist"),
])
def test_bad_inputs_fail_clearly_and_write_nothing(satgen_provider, havel_crop, tmp_path, case, message):
    import processing
    from qgis.core import QgsProcessingException

    broken = tmp_path / "broken.qml"
    broken.write_text("<qgis><renderer-v2 type=")
    params = {
        "no layers": dict(LAYERS=[]),
        "outside": dict(LAYERS=[far_away_layer()]),
        "null renderer": dict(LAYERS=[silent_layer()], STYLE=None),
        "no categories": dict(LAYERS=[str(LANDUSE), empty_categories_layer()], STYLE=None),
        "broken style": dict(STYLE=str(broken)),
        "missing style": dict(STYLE=str(tmp_path / "nowhere.qml")),
    }[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(QgsProcessingException, match=message) as caught:
        processing.run("satgen:render_map_target", {
            "INPUT": str(havel_crop), "LAYERS": [str(LANDUSE)], "STYLE": str(STYLE),
            "OUTPUT": str(out_dir / "map.tif"), "OUTPUT_LEGEND": str(out_dir / "map.json")} | params)
    if case == "broken style":
        assert "line 1 column" in str(caught.value)  # QGIS's own reason: where its XML parser stopped
    assert list(out_dir.iterdir()) == []


def test_cancel_writes_nothing(satgen_provider, havel_crop, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("satgen:render_map_target", {
            "INPUT": str(havel_crop), "LAYERS": [str(LANDUSE)], "STYLE": str(STYLE),
            "OUTPUT": str(tmp_path / "map.tif"), "OUTPUT_LEGEND": str(tmp_path / "map.json")}, feedback=feedback)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_qgis_process_renders_several_layers(qgis_process_env, havel_crop, landuse_4326, tmp_path):
    def qgis_process(*args):
        return subprocess.run([QGIS_PROCESS, *args], env=qgis_process_env, capture_output=True, text=True,
                              timeout=300, cwd=ROOT)

    enabled = qgis_process("plugins", "enable", "satgen_qgis")  # the profile is shared: may be enabled already
    assert enabled.returncode == 0 or "already enabled" in enabled.stdout + enabled.stderr, enabled.stderr
    out, legend_path = tmp_path / "map.tif", tmp_path / "legend.json"
    run = qgis_process("run", "satgen:render_map_target", "--", f"INPUT={havel_crop}",
                       f"LAYERS={LANDUSE}", f"LAYERS={landuse_4326}", "STYLE=resources/styles/osm_landuse.qml",
                       "BACKGROUND=#ffffff", f"OUTPUT={out}", f"OUTPUT_LEGEND={legend_path}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rendering 2 layer(s)" in run.stdout + run.stderr
    legend = json.loads(legend_path.read_text())
    assert legend["background"] == [255, 255, 255] and legend["forest"] == [100, 165, 90]
    with rasterio.open(out) as o, rasterio.open(havel_crop) as i:
        assert (o.crs, o.transform, o.shape, o.count) == (i.crs, i.transform, i.shape, 3)
        codes = colour_codes(o.read())
    assert np.isin(codes, colour_codes(np.array(list(legend.values())).T[:, :, None])).mean() >= 0.99
