"""satgen:train_synthesis (class folders and raster + polygons, cDCGAN) -> satgen:synthesize
through processing.run, and synthesize through the real qgis_process command line."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from test_qgis_process import enable_plugin, qgis_process

from helpers import SAMPLES, crop_raster


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    """A tiny diffusion model trained by the engine on a real Sentinel-2 crop with OSM land use."""
    from engine.synthesis.training import SynthesisConfig, train_synthesis

    tmp = tmp_path_factory.mktemp("synth")
    scene = crop_raster(SAMPLES / "s2_havel_10m.tif", tmp / "scene.tif", 0, 0, 256, 512)
    config = SynthesisConfig(output_model=str(tmp / "m.satgen"), report_dir=str(tmp / "report"), arch="diffusion",
                             input=str(scene), labels=str(SAMPLES / "havel_osm_landuse.gpkg"), field="fclass",
                             patch_size=16, threshold=0.6, block_size=64, epochs=1, patches_per_epoch=16,
                             batch_size=8, base=8, depth=2, steps=2, device="cpu")
    return train_synthesis(config)


def test_synthesize_writes_a_labelled_dataset_and_a_preview_layer(satgen_provider, tiny_synth, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsRasterLayer

    from engine.modelfile import read_card

    classes = read_card(tiny_synth).classes
    params = {"MODEL": str(tiny_synth), "CLASS": classes[0], "COUNT": 2, "SEED": 3, "STEPS": 2,
              "OUTPUT_FOLDER": str(tmp_path / "out"), "OUTPUT_PREVIEW": str(tmp_path / "preview.tif")}
    result = processing.run("satgen:synthesize", params)
    rows = list(csv.DictReader(open(result["MANIFEST"])))
    assert [r["class"] for r in rows] == [classes[0]] * 2 and rows[0]["seed"] == "3"
    first = tmp_path / "out" / rows[0]["file"]
    with rasterio.open(first) as src:
        assert src.count == 4 and src.dtypes[0] == "uint16" and src.shape == (16, 16)
        patch = src.read()
    layer = QgsRasterLayer(result["OUTPUT_PREVIEW"], "preview")
    assert layer.isValid() and layer.bandCount() == 3
    del layer
    again = processing.run("satgen:synthesize", dict(params, OUTPUT_FOLDER=str(tmp_path / "again"),
                                                     OUTPUT_PREVIEW=str(tmp_path / "p2.tif")))
    assert Path(again["OUTPUT_FOLDER"]) == tmp_path / "again"
    with rasterio.open(tmp_path / "again" / rows[0]["file"]) as src:
        assert np.array_equal(src.read(), patch)  # same seed, same patches
    with pytest.raises(QgsProcessingException, match=classes[-1]):
        processing.run("satgen:synthesize", dict(params, CLASS="no such class"))


def test_train_synthesis_from_class_folders(satgen_provider, qgis_process_env, tmp_path):
    """64 px 8-bit class folders (the EuroSAT layout), the min-max stretch; the model then runs in qgis_process."""
    import processing

    rng = np.random.default_rng(0)
    for name, level in (("light", 200), ("dark", 30)):
        (tmp_path / "ds" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((level + rng.integers(0, 40, (64, 64, 3))).astype(np.uint8)).save(
                tmp_path / "ds" / name / f"{name}_{i}.jpg")
    result = processing.run("satgen:train_synthesis", {
        "DATASET": str(tmp_path / "ds"), "ARCH": 1, "PATCH_SIZE": 64, "STRETCH": 1, "EPOCHS": 1, "BATCH_SIZE": 4,
        "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "gan.satgen"), "OUTPUT_REPORT": str(tmp_path / "report")})
    from engine.modelfile import read_card

    card = read_card(result["OUTPUT_MODEL"])
    assert card.classes == ["dark", "light"] and card.architecture == "cdcgan" and card.tile_size == 64
    assert card.outputs.names == ["red", "green", "blue"] and min(card.outputs.low) < 40 < 200 < max(card.outputs.high)
    enable_plugin(qgis_process_env)
    run = qgis_process(qgis_process_env, "run", "satgen:synthesize", "--", f"MODEL={result['OUTPUT_MODEL']}",
                       "CLASS=light", "COUNT=2", f"OUTPUT_FOLDER={tmp_path / 'out'}")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    with rasterio.open(tmp_path / "out" / rows[0]["file"]) as src:
        assert (src.width, src.height, src.count, src.dtypes[0]) == (64, 64, 3, "uint8")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["history"]
    (tmp_path / "free").mkdir()
    for i in range(3):  # images without a class: they train the unconditional branch
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(tmp_path / "free" / f"{i}.png")
    diffusion = processing.run("satgen:train_synthesis", {
        "DATASET": str(tmp_path / "ds"), "ARCH": 0, "PATCH_SIZE": 16, "EPOCHS": 1, "BATCH_SIZE": 4, "DEVICE": 1,
        "GUIDANCE": 2.0, "UNLABELLED": str(tmp_path / "free"), "OUTPUT_MODEL": str(tmp_path / "diff.satgen"),
        "OUTPUT_REPORT": str(tmp_path / "r2")})
    training = read_card(diffusion["OUTPUT_MODEL"]).training
    assert training["sampler"]["guidance"] == 2.0  # given: kept, not chosen
    assert training["unlabelled"] == {"images": 3, "share": 0.5}


def test_synthesize_through_qgis_process(qgis_process_env, tiny_synth, tmp_path):
    enable_plugin(qgis_process_env)
    run = qgis_process(qgis_process_env, "run", "satgen:synthesize", "--", f"MODEL={tiny_synth}", "COUNT=2",
                       "STEPS=2", "FORMAT=1", f"OUTPUT_FOLDER={tmp_path / 'out'}",
                       f"OUTPUT_PREVIEW={tmp_path / 'preview.tif'}")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert rows and all((tmp_path / "out" / r["file"]).suffix == ".png" for r in rows)
    bad = qgis_process(qgis_process_env, "run", "satgen:synthesize", "--", f"MODEL={tiny_synth}", "CLASS=nope",
                       f"OUTPUT_FOLDER={tmp_path / 'bad'}")
    assert bad.returncode != 0 and "its classes are" in bad.stdout + bad.stderr


def test_evaluate_synthesis_through_qgis_process(qgis_process_env, tiny_synth, tmp_path):
    """The model against itself as baseline: every score is written, the distances are equal."""
    enable_plugin(qgis_process_env)
    report = tmp_path / "quality.json"
    run = qgis_process(qgis_process_env, "run", "satgen:evaluate_synthesis", "--", f"MODEL={tiny_synth}",
                       f"BASELINE={tiny_synth}", "N=4", "REPEATS=1", f"OUTPUT={report}")
    assert run.returncode == 0, run.stdout + run.stderr
    section = json.loads(report.read_text())["synthesize"]
    s = section["summary"]
    assert s["synthesize.kid_model"] == s["synthesize.kid_cdcgan"] and 0 <= s["synthesize.acc_real"] <= 1
    assert set(section["per_class"]) == set(section["classes"])
    assert section["command"] == f"satgen:evaluate_synthesis MODEL={tiny_synth} BASELINE={tiny_synth} N=4 REPEATS=1"
    bad = qgis_process(qgis_process_env, "run", "satgen:evaluate_synthesis", "--", f"MODEL={tiny_synth}",
                       f"BASELINE={tiny_synth}", f"INCEPTION_WEIGHTS={tmp_path / 'none.pth'}",
                       f"OUTPUT={tmp_path / 'bad.json'}")
    assert bad.returncode != 0 and "does not exist" in bad.stdout + bad.stderr
    assert not (tmp_path / "bad.json").exists()
