"""Synthesis on a tiny class-folder set laid out like EuroSAT RGB (<Class>/<Class>_N.jpg, 64 px, 8-bit):
the loader, the split's determinism, the min-max stretch, tiny training of each architecture at 64 px,
and the EuroSAT evaluation script end to end with the standard FID network."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError
from engine.modelfile import read_card
from engine.synthesis import datasets
from engine.synthesis.datasets import held_out_by_name, load_class_folders, load_unlabelled
from engine.synthesis.training import SynthesisConfig, train_synthesis
from helpers import ROOT

CLASSES = {"Forest": (40, 80, 40), "SeaLake": (20, 40, 90), "Industrial": (150, 140, 140)}


def _eurosat_like(root, per_class: int = 10, seed: int = 0):
    """root/<Class>/<Class>_<i>.jpg: 64 x 64 RGB JPEGs, each class its own colour and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    for k, (name, colour) in enumerate(CLASSES.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, per_class + 1):
            stripes = 30 * np.sin((xx * (k + 1) + yy * rng.uniform(0, 2)) / 4)[..., None]
            image = np.clip(np.array(colour) + stripes + rng.normal(0, 8, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / name / f"{name}_{i}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def eurosat(tmp_path_factory):
    return _eurosat_like(tmp_path_factory.mktemp("eurosat") / "EuroSAT_RGB")


def _held_out_names(patches) -> set[str]:
    return {s.rsplit("/", 1)[-1] for s, h in zip(patches.sources, patches.held_out, strict=True) if h}


def test_loader_reads_the_eurosat_layout(eurosat):
    ps = load_class_folders(eurosat, patch_size=64, val_fraction=0.2, warn=lambda m: None)
    assert ps.classes == sorted(CLASSES) and ps.x.shape == (30, 3, 64, 64) and ps.dtype == "uint8"
    assert ps.band_names == ["red", "green", "blue"]  # from the JPEG's colour interpretation
    assert ps.counts("val") == {c: 2 for c in CLASSES} and ps.counts("train") == {c: 8 for c in CLASSES}
    sea = ps.x[ps.labels == ps.classes.index("SeaLake")].mean(axis=(0, 2, 3))
    assert sea[2] > sea[0]  # bands in RGB order: the sea is blue


def test_more_images_than_memory_is_refused_before_reading_them(eurosat, monkeypatch):
    # 30 images of 3 x 64 x 64 float32 take 1.4 MiB: with 2 MiB of "physical memory" (half allowed) they do not fit
    monkeypatch.setattr(datasets, "physical_memory", lambda: 2 * 2 ** 20)
    read = []
    real = datasets._read_image
    monkeypatch.setattr(datasets, "_read_image", lambda f: read.append(f) or real(f))
    with pytest.raises(InputError, match=r"30 images of 3 band\(s\) at 64 px .*--max-per-class"):
        load_class_folders(eurosat, patch_size=64, warn=lambda m: None)
    assert len(read) == 1  # refused at the first image, not after reading them all
    with pytest.raises(InputError, match=r"unlabelled images .*1\.4 MiB.*1\.0 MiB allowed.*a folder holding a subset"):
        load_unlabelled(eurosat, 64, 3, warn=lambda m: None)
    ps = load_class_folders(eurosat, patch_size=64, max_per_class=5, warn=lambda m: None)  # 50 %: fits
    assert ps.x.shape[0] == 15


def test_split_depends_on_the_file_names_only(eurosat, tmp_path):
    first = load_class_folders(eurosat, patch_size=64, val_fraction=0.2, warn=lambda m: None)
    # another folder name, another class added, more files in one class: the names held out before stay so
    copy = shutil.copytree(eurosat, tmp_path / "elsewhere")
    _eurosat_like(tmp_path / "more", per_class=3, seed=1)
    shutil.copytree(tmp_path / "more" / "Forest", copy / "Pasture")
    for p in (copy / "Pasture").iterdir():
        p.rename(p.with_name(p.name.replace("Forest", "Pasture")))
    again = load_class_folders(copy, patch_size=64, val_fraction=0.2, warn=lambda m: None)
    assert _held_out_names(first) <= _held_out_names(again)
    assert _held_out_names(again) - _held_out_names(first) == {n for n in _held_out_names(again)
                                                                if n.startswith("Pasture")}
    other_seed = load_class_folders(eurosat, patch_size=64, val_fraction=0.2, seed=1, warn=lambda m: None)
    assert _held_out_names(other_seed) != _held_out_names(first)
    # per class: round(fraction x n), at least one of two files, never all
    labels = np.array([0] * 2 + [1] * 1 + [2] * 7)
    held = held_out_by_name([f"f{i}.jpg" for i in range(10)], labels, 0.2, 0)
    assert [int(held[labels == k].sum()) for k in range(3)] == [1, 0, 1]


def test_minmax_stretch_maps_the_training_extremes_to_the_ends(eurosat):
    ps = load_class_folders(eurosat, patch_size=64, val_fraction=0.2, warn=lambda m: None)
    x, _ = ps.part("train")
    scaling = ps.fit_scaling(stretch="minmax")
    assert scaling.low == tuple(x.min(axis=(0, 2, 3)).tolist())
    assert scaling.high == tuple(x.max(axis=(0, 2, 3)).tolist())
    percentile = ps.fit_scaling()
    assert all(lo >= m for lo, m in zip(percentile.low, scaling.low, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("arch, extra", [("cdcgan", dict(ngf=8, ndf=8, nz=16)),
                                         ("diffusion", dict(base=8, depth=2, steps=2, guidance=1.5))])
def test_tiny_training_at_64_px(eurosat, tmp_path, arch, extra):
    config = SynthesisConfig(output_model=str(tmp_path / "m.satgen"), report_dir=str(tmp_path / "r"), arch=arch,
                             dataset=str(eurosat), patch_size=64, val_fraction=0.2, stretch="minmax", epochs=1,
                             batch_size=8, device="cpu", **extra)
    card = read_card(train_synthesis(config))
    assert card.tile_size == 64 and card.classes == sorted(CLASSES) and card.outputs.names == ["red", "green", "blue"]
    ps = load_class_folders(eurosat, patch_size=64, val_fraction=0.2, warn=lambda m: None)
    x, _ = ps.part("train")
    assert card.outputs.low == x.min(axis=(0, 2, 3)).tolist() and card.outputs.high == x.max(axis=(0, 2, 3)).tolist()
    assert card.training["class_counts"]["held_out"] == {c: 2 for c in CLASSES}


STANDARD = ROOT / "data" / "fid" / "inception-2015-12-05.safetensors"


@pytest.mark.slow
@pytest.mark.skipif(not STANDARD.is_file(), reason=f"the standard FID network is not here "
                    f"({STANDARD.relative_to(ROOT)}); `make fid-network` fetches and converts it")
def test_evaluate_eurosat_end_to_end(eurosat, tmp_path, capsys):
    pytest.importorskip("torchvision", reason="the Inception module is torchvision's (not in the engine environment)")
    from engine.devtools import evaluate_eurosat

    quality = ROOT / "reports" / "quality.json"
    before = quality.read_bytes() if quality.exists() else None
    output = tmp_path / "eurosat.json"
    argv = ["--data", str(eurosat), "--work", str(tmp_path / "work"), "--output", str(output),
            "--gan-epochs", "1", "--diffusion-epochs", "1", "--base", "8", "--depth", "2",
            "--per-class", "2", "--cas-seeds", "1", "--cas-steps", "5", "--cas-per-class", "4",
            "--steps", "2", "--guidance", "1.5", "--inception", str(STANDARD), "--device", "cpu"]
    assert evaluate_eurosat.main(argv) == 0
    out = json.loads(output.read_text())
    # the drawn patches are kept per model file and class: scoring again (or after a stop) does not draw again
    drawn = sorted(p.parent.name.split("_")[0] for p in (tmp_path / "work" / "drawn").glob("*/*.npy"))
    assert drawn == ["cdcgan"] * len(CLASSES) + ["diffusion"] * len(CLASSES)
    capsys.readouterr()
    assert evaluate_eurosat.main(argv) == 0
    assert capsys.readouterr().out.count("drawn before") == 2 * len(CLASSES)
    again = json.loads(output.read_text())
    assert again["fid_diffusion_mean"] == out["fid_diffusion_mean"] and again["cas_cdcgan"] == out["cas_cdcgan"]
    assert out["counts"]["test"] == {c: 2 for c in CLASSES} and out["per_class_n"]["generated"] == 2
    for arm in ("cdcgan", "diffusion"):
        assert set(out[f"fid_{arm}_per_class"]) == set(CLASSES) and out[f"fid_{arm}_mean"] > 0
        assert 0 <= out[f"cas_{arm}"]["accuracy"] <= 1 and out["budget"][arm]["epochs"] == 1
    assert out["fid_seed_mean"] == 116.97 and set(out["goals"]) >= {"fid_mean_at_most_35", "cas_at_least_0_80"}
    assert output.with_suffix(".png").exists()
    # a smoke run (fewer than 500 per class) leaves the project's quality report alone
    assert (quality.read_bytes() if quality.exists() else None) == before


def test_unlabelled_images_train_the_unconditional_branch(eurosat, tmp_path):
    """Few labels, many unlabelled images (issue 16's question): a share of every batch is unlabelled, given the
    "no class" token; the classes still come from the labelled folders only."""
    from engine.errors import InputError
    from engine.progress import Feedback
    from engine.synthesis.training import SynthesisTask
    from engine.training.loop import start

    unlabelled = tmp_path / "unlabelled"
    _eurosat_like(unlabelled / "any" / "nesting", per_class=4, seed=3)
    config = SynthesisConfig(output_model=str(tmp_path / "m.satgen"), report_dir=str(tmp_path / "r"),
                             arch="diffusion", dataset=str(eurosat), patch_size=64, val_fraction=0.2, epochs=1,
                             batch_size=8, base=8, depth=2, steps=2, guidance=2.0, unlabelled=str(unlabelled),
                             unlabelled_share=0.25, device="cpu")
    _, _, run = start(config, [config.dataset, config.unlabelled])
    task = SynthesisTask(config, run, Feedback())
    assert len(task.unlabelled) == 12 and task.steps == (24 + 12) // 8
    for x, y, _ in task.batches(0):
        assert x.shape == (8, 3, 64, 64) and (y == 3).sum() == 2 and (y < 3).sum() == 6
    card = read_card(train_synthesis(config))
    assert card.classes == sorted(CLASSES) and card.training["unlabelled"] == {"images": 12, "share": 0.25}
    with pytest.raises(InputError, match="only the diffusion"):
        train_synthesis(SynthesisConfig(**{**config.__dict__, "arch": "cdcgan"}))
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(grey / "g.png")
    with pytest.raises(InputError, match="1 band.*3"):
        train_synthesis(SynthesisConfig(**{**config.__dict__, "unlabelled": str(grey),
                                           "report_dir": str(tmp_path / "r2")}))


@pytest.mark.slow
def test_few_label_study_end_to_end(eurosat, tmp_path):
    from engine.devtools import evaluate_eurosat

    output = tmp_path / "eurosat.json"
    assert evaluate_eurosat.main(["--data", str(eurosat), "--work", str(tmp_path / "work"), "--output", str(output),
                                  "--few-labels", "3", "--few-seeds", "2", "--few-classifier-seeds", "2",
                                  "--few-epochs", "1", "--base", "8", "--depth", "2", "--steps", "2",
                                  "--guidance", "1.5", "--cas-per-class", "3", "--cas-steps", "3",
                                  "--device", "cpu"]) == 0
    found = json.loads((tmp_path / "eurosat_few_labels.json").read_text())
    for size in (3,):
        gain = found[f"aug_gain_{size}"]
        pairs = np.array(gain["accuracy_pairs"])  # subset seed x classifier seed x (alone, with synthesis)
        assert pairs.shape == (2, 2, 2) and ((0 <= pairs) & (pairs <= 1)).all()
        assert gain["mean"] == pytest.approx(100 * (pairs[..., 1] - pairs[..., 0]).mean())
        subset_means = 100 * (pairs[..., 1] - pairs[..., 0]).mean(axis=1)
        assert gain["se"] == pytest.approx(subset_means.std(ddof=1) / np.sqrt(2))
        folder = tmp_path / "work" / "few" / f"k{size}_s0"
        labelled = sorted(p.name for p in (folder / "labelled").rglob("*.jpg"))
        assert len(labelled) == size * len(CLASSES)  # 8 training files per class: the rest is unlabelled
        assert len(list((folder / "unlabelled").iterdir())) == (8 - size) * len(CLASSES)
        card = read_card(folder / "model.satgen")
        assert card.training["unlabelled"]["images"] == (8 - size) * len(CLASSES)
        assert card.training["class_counts"]["train"] == {c: size for c in CLASSES}
