"""SatGen in graphical models: the example model resources/modeler/train_and_translate.model3
(render map target -> train -> translate) loads, validates and runs for real on a crop of
the real Havel scene and its OpenStreetMap land use; and the provider's algorithms are
all listed with their help."""

from __future__ import annotations

import pytest

from helpers import ROOT, SAMPLES, crop_raster

MODEL3 = ROOT / "resources" / "modeler" / "train_and_translate.model3"
STYLE = ROOT / "resources" / "styles" / "osm_landuse.qml"
LANDUSE = SAMPLES / "havel_osm_landuse.gpkg"
SCENE = SAMPLES / "s2_havel_10m.tif"
ALGORITHMS = {"apply_model", "render_map_target", "train_translation", "translate", "inpaint_clouds",
              "train_inpainting"}


def crop(out, row, col, height, width):
    return crop_raster(SCENE, out, row, col, height, width)


@pytest.fixture
def example_model(satgen_provider):
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL3)), f"cannot load {MODEL3}"
    return model


def set_child_values(model, child_id: str, **values):
    """Static values for a child algorithm's parameters, as a user would set them in the Model Designer."""
    from qgis.core import QgsProcessingModelChildParameterSource

    child = model.childAlgorithm(child_id)
    names = {p.name() for p in child.algorithm().parameterDefinitions()}
    for name, value in values.items():
        assert name in names, f"{child.algorithmId()} has no parameter {name}"
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    model.setChildAlgorithm(child)


def test_provider_lists_all_algorithms_with_help(satgen_provider):
    algs = {alg.name(): alg for alg in satgen_provider.algorithms()}
    assert ALGORITHMS <= set(algs)
    for name in ALGORITHMS:
        alg = algs[name]
        assert alg.displayName().strip(), name
        assert len(alg.shortHelpString().strip()) > 50, f"{name} has no help"
        assert all(p.description().strip() for p in alg.parameterDefinitions()), name


def test_example_model_loads_and_chains(example_model):
    model = example_model
    assert model.displayName() == "SatGen: train and translate"
    assert model.group() == "SatGen examples"
    ok, issues = model.validate()
    assert ok, issues
    children = model.childAlgorithms()
    assert {c.algorithmId() for c in children.values()} == {
        "satgen:render_map_target", "satgen:train_translation", "satgen:translate"}
    assert model.dependsOnChildAlgorithms("translate") == {"render", "train"}
    assert model.dependsOnChildAlgorithms("train") == {"render"}
    inputs = [p.name() for p in model.parameterDefinitions() if not p.isDestination()]
    assert inputs == ["satellite_raster", "landuse_layers", "style", "unlabelled_background",
                      "epochs", "raster_to_translate"]  # the dialog's order
    assert {o.name() for o in model.outputDefinitions()} == {
        "train:model_file", "train:training_report", "translate:translated_map"}
    assert model.shortHelpString().strip()


def test_example_model_runs_render_train_translate(example_model, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    from engine.modelfile import read_card

    model = example_model.create()  # a copy: the module's model stays as shipped
    # tiny training, as one would set it for a first try in the Model Designer
    set_child_values(model, "train", PATCH_SIZE=32, BATCH_SIZE=2, PATCHES_PER_EPOCH=4, WIDTH=4, DEVICE=1)
    set_child_values(model, "translate", TILE_SIZE=64, OVERLAP=16, DEVICE=1)
    # a densely mapped 192 x 192 px window (forest, meadow, farm, water), and a neighbouring one to translate
    train_raster = crop(tmp_path / "train.tif", 352, 608, 192, 192)
    other = crop(tmp_path / "other.tif", 352, 800, 96, 128)

    result = processing.run(model, {
        "satellite_raster": str(train_raster), "landuse_layers": [str(LANDUSE)], "style": str(STYLE),
        "unlabelled_background": True, "epochs": 1, "raster_to_translate": str(other),
        "train:model_file": str(tmp_path / "havel.satgen"), "train:training_report": str(tmp_path / "report"),
        "translate:translated_map": str(tmp_path / "map.tif")})

    card = read_card(result["train:model_file"])
    assert card.task == "translate"
    assert card.params["ngf"] == 4 and card.tile_size == 256  # the child values set above were used
    assert card.inputs.names == ["B02", "B03", "B04", "B08"]
    assert "forest" in card.legend and "background" in card.legend  # the render step's legend went in
    assert (tmp_path / "report" / "metrics.json").exists()

    translated = QgsRasterLayer(result["translate:translated_map"], "map")
    source = QgsRasterLayer(str(other), "other")
    assert translated.isValid()
    assert translated.crs() == source.crs()
    assert translated.extent() == source.extent()
    assert (translated.width(), translated.height(), translated.bandCount()) == (128, 96, 3)
