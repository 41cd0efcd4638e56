"""satgen:train_translation through processing.run: layers rendered with a QGIS
style as the map, tiny real training, report, and the model going into translate."""

import json
import warnings

import pytest

from helpers import ROOT, SAMPLES, crop_raster, write_tile_dataset


def test_train_from_styled_layers_then_translate(satgen_provider, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    scene = crop_raster(SAMPLES / "s2_havel_10m.tif", tmp_path / "train.tif", 352, 608, 192, 192)
    result = processing.run("satgen:train_translation", {
        "INPUT": str(scene), "LAYERS": [str(SAMPLES / "havel_osm_landuse.gpkg")],
        "STYLE": str(ROOT / "resources" / "styles" / "osm_landuse.qml"), "UNLABELLED_BACKGROUND": True,
        "EPOCHS": 1, "PATCH_SIZE": 32, "BATCH_SIZE": 2, "PATCHES_PER_EPOCH": 4, "WIDTH": 4, "DEVICE": 1,
        "OUTPUT_MODEL": str(tmp_path / "m.satgen"), "OUTPUT_REPORT": str(tmp_path / "report")})
    report = tmp_path / "report"
    assert (report / "target_map.tif").exists()  # the layers, rendered onto the scene's grid
    legend = json.loads((report / "target_legend.json").read_text())
    assert {"forest", "water", "background"} <= set(legend)
    assert (report / "samples.png").exists() and json.loads((report / "metrics.json").read_text())["final"]
    assert result["OUTPUT_HTML"] == str(report / "index.html") and "samples.png" in (report / "index.html").read_text()

    mapped = processing.run("satgen:translate", {"INPUT": str(scene), "MODEL": result["OUTPUT_MODEL"],
                                                 "OUTPUT": str(tmp_path / "map.tif")})
    layer = QgsRasterLayer(mapped["OUTPUT"], "map")
    assert layer.isValid() and layer.extent() == QgsRasterLayer(str(scene), "s").extent()


def test_a_generator_of_the_legends_classes_draws_only_its_colours(satgen_provider, tmp_path):
    """HEAD 1: the generator scores the rendered legend's classes; its raw map has their colours only."""
    import numpy as np
    import processing
    import rasterio

    from engine.modelfile import read_card

    scene = crop_raster(SAMPLES / "s2_havel_10m.tif", tmp_path / "train.tif", 352, 608, 128, 128)
    result = processing.run("satgen:train_translation", {
        "INPUT": str(scene), "LAYERS": [str(SAMPLES / "havel_osm_landuse.gpkg")], "HEAD": 1,
        "STYLE": str(ROOT / "resources" / "styles" / "osm_landuse.qml"), "UNLABELLED_BACKGROUND": True,
        "EPOCHS": 1, "PATCH_SIZE": 32, "BATCH_SIZE": 2, "PATCHES_PER_EPOCH": 4, "WIDTH": 4, "DEVICE": 1,
        "OUTPUT_MODEL": str(tmp_path / "m.satgen"), "OUTPUT_REPORT": str(tmp_path / "report")})
    card = read_card(result["OUTPUT_MODEL"])
    assert card.training["config"]["head"] == "classes" and card.params["classes"] == len(card.classes) > 1
    mapped = processing.run("satgen:translate", {"INPUT": str(scene), "MODEL": result["OUTPUT_MODEL"], "SNAP": False,
                                                 "OUTPUT": str(tmp_path / "map.tif")})
    with rasterio.open(mapped["OUTPUT"]) as src:
        drawn = {tuple(c) for c in src.read().reshape(3, -1).T}
    assert drawn <= {tuple(card.legend[c]) for c in card.classes}
    assert np.isfinite(json.loads((tmp_path / "report" / "metrics.json").read_text())["history"][0]["loss_g_class"])


def test_class_scores_of_maps_without_a_legend_use_flat_colours_fitted_to_them(satgen_provider, tmp_path):
    """HEAD 1 with folders of maps and no LEGEND: PALETTE_SIZE colours fitted to the training maps are the
    classes (the masks' three colours here); asking for more colours than the maps hold is a clear error."""
    import processing
    from qgis.core import QgsProcessingException

    from engine.modelfile import read_card
    from helpers import TILE_COLOURS

    write_tile_dataset(tmp_path, tiles=2, per_tile=2)
    params = {"IMAGES": str(tmp_path / "Tile *" / "images"), "MAPS": str(tmp_path / "Tile *" / "masks"), "HEAD": 1,
              "EPOCHS": 1, "PATCH_SIZE": 32, "BATCH_SIZE": 2, "PATCHES_PER_EPOCH": 4, "WIDTH": 4, "DEVICE": 1,
              "OUTPUT_MODEL": str(tmp_path / "m.satgen"), "OUTPUT_REPORT": str(tmp_path / "report")}
    with pytest.raises(QgsProcessingException, match="fewer than the 8 asked"):  # the default palette size
        processing.run("satgen:train_translation", params)
    result = processing.run("satgen:train_translation", dict(params, PALETTE_SIZE=3))
    card = read_card(result["OUTPUT_MODEL"])
    assert sorted(card.legend.values()) == sorted(TILE_COLOURS.tolist()) and card.params["classes"] == 3


def test_target_or_layers_is_required_and_errors_are_clear(satgen_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    scene = crop_raster(SAMPLES / "s2_havel_10m.tif", tmp_path / "s.tif", 352, 608, 64, 64)
    params = {"INPUT": str(scene), "OUTPUT_MODEL": str(tmp_path / "m.satgen"), "OUTPUT_REPORT": str(tmp_path / "r")}
    with pytest.raises(QgsProcessingException, match="no map given"):
        processing.run("satgen:train_translation", params)
    with pytest.raises(QgsProcessingException, match="power of two"):
        processing.run("satgen:train_translation", dict(params, TARGET=str(scene), PATCH_SIZE=48))
    with pytest.raises(QgsProcessingException, match="power of two"):  # the old name, as saved models have it
        processing.run("satgen:train_translation", dict(params, TARGET=str(scene), TILE_SIZE=48))
    assert not (tmp_path / "m.satgen").exists()


def test_train_from_folders_of_image_pairs(satgen_provider, tmp_path):
    """A tile data set: Tile N/images/*.jpg with Tile N/masks/*.png of the same names, one tile held out."""
    import processing

    write_tile_dataset(tmp_path, tiles=2, per_tile=2)
    params = {"IMAGES": str(tmp_path / "Tile *" / "images"), "MAPS": str(tmp_path / "Tile *" / "masks"),
              "HOLDOUT": 1, "EPOCHS": 1, "PATCH_SIZE": 32, "BATCH_SIZE": 2, "PATCHES_PER_EPOCH": 4, "WIDTH": 4,
              "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "m.satgen"), "OUTPUT_REPORT": str(tmp_path / "report")}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Dataset has no geotransform")
        result = processing.run("satgen:train_translation", params)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())["final"]
    assert metrics["validation"].startswith("1 of 2 folders held out") and result["OUTPUT_MODEL"]
    with pytest.raises(Exception, match="not both"):
        processing.run("satgen:train_translation", dict(params, INPUT=str(tmp_path / "Tile 1/images/part_001.jpg")))
    with pytest.raises(Exception, match="no training data given"):
        processing.run("satgen:train_translation", {k: v for k, v in params.items() if k not in ("IMAGES", "MAPS")})
