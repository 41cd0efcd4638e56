"""Class-conditional synthesis: data sets on tiny generated layouts, tiny training of
each architecture, SEED determinism, output data set, metrics on known cases."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from engine.errors import Cancelled, InputError
from engine.modelfile import read_card
from engine.progress import Feedback
from engine.synthesis.datasets import load_class_folders, load_raster_patches
from engine.synthesis.scores import fid, kid
from engine.synthesis.synthesize import synthesize
from engine.synthesis.training import SynthesisConfig, train_synthesis
from helpers import ROOT, write_raster


def _png(path, rgb):
    Image.fromarray(rgb.astype(np.uint8)).save(path)


@pytest.fixture
def folders(tmp_path):
    """root/{bright (3 png + 1 broken), dark (2 three-band tif), empty/}."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    (root / "bright").mkdir(parents=True)
    (root / "dark").mkdir()
    (root / "empty").mkdir()
    for i in range(3):
        _png(root / "bright" / f"b{i}.png", 200 + rng.integers(0, 50, (20, 24, 3)))
    (root / "bright" / "broken.png").write_bytes(b"not a png at all")
    for i in range(2):
        write_raster(root / "dark" / f"d{i}.tif", rng.integers(0, 40, (3, 16, 16)).astype(np.uint8))
    return root


def test_class_folders_skip_unreadable_and_empty(folders):
    warnings = []
    ps = load_class_folders(folders, patch_size=16, val_fraction=0.3, warn=warnings.append)
    assert ps.classes == ["bright", "dark"]
    assert ps.x.shape == (5, 3, 16, 16)
    assert len(ps.skipped) == 1 and "broken.png" in ps.skipped[0]
    assert any("broken.png" in w for w in warnings) and any("empty" in w for w in warnings)
    assert ps.held_out.sum() >= 1 and (~ps.held_out).sum() >= 2
    assert ps.x[ps.labels == 0].mean() > 150 > ps.x[ps.labels == 1].mean()


def test_a_file_declaring_a_huge_image_is_read_decimated_or_skipped(folders):
    # 16000 x 16000 px declared, a few kB on disk (no block written): read whole it would take 768 MB
    with rasterio.open(folders / "dark" / "huge.tif", "w", driver="GTiff", width=16000, height=16000, count=3,
                       dtype="uint8", tiled=True, compress="deflate", sparse_ok=True) as dst:
        dst.write_band(1, np.full((256, 256), 20, np.uint8), window=rasterio.windows.Window(0, 0, 256, 256))
    assert (folders / "dark" / "huge.tif").stat().st_size < 100_000
    data = (folders / "dark" / "cut.tif")
    data.write_bytes((folders / "dark" / "huge.tif").read_bytes()[:300])  # the same header, cut short
    code = ("import json, resource, sys; from engine.synthesis.datasets import load_class_folders; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"ps = load_class_folders({str(folders)!r}, patch_size=16, warn=lambda m: None); "
            "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024; "
            "print(json.dumps([grown, ps.sources, ps.skipped]))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    grown_mb, sources, skipped = json.loads(run.stdout.strip().splitlines()[-1])
    assert grown_mb < 300  # bounded by the decimated read (a whole read: 768 MB), not by what the file declares
    assert any("huge.tif" in s for s in sources) and any("cut.tif" in s for s in skipped)


def test_class_folder_files_that_lie_or_are_incomplete_are_skipped_fast(folders):
    """Found by tests/fuzzing.py (datasets, seed 0): a TIFF of a few hundred bytes declaring 65535 bands
    made GDAL read for hours (case 309); NaN pixels went into the patches (case 13)."""
    import time

    from fuzzing import tiff_bytes

    (folders / "dark" / "bands.tif").write_bytes(tiff_bytes(1, 1, samples=65535, bits=16))
    nan = np.ones((3, 16, 16), np.float32)
    nan[1, 3, 4] = np.nan
    write_raster(folders / "dark" / "nan.tif", nan)
    (folders / "dark" / "complex.tif").write_bytes(tiff_bytes(8, 8, bits=64, fmt=6))
    start = time.perf_counter()
    ps = load_class_folders(folders, patch_size=16, warn=lambda m: None)
    assert time.perf_counter() - start < 10
    skipped = "\n".join(ps.skipped)
    assert "65535 bands" in skipped and "NaN or infinite" in skipped and "complex values" in skipped
    assert np.isfinite(ps.x).all()


def test_names_that_are_not_utf8_make_printable_messages(folders):
    """A folder or file name that is not UTF-8 (an old archive's) crashed the print of its message
    (fuzz: datasets seed 0 cases 23, 77); the image is read all the same, its class named printably."""
    odd = folders / "caf\udce9"  # b"caf\xe9": Latin-1, not UTF-8
    odd.mkdir()
    (folders / "bright" / "b0.png").rename(odd / "x\udcff.png")
    (odd / "broken\udcfe.png").write_bytes(b"junk")
    messages = []
    ps = load_class_folders(folders, patch_size=16, warn=messages.append)
    for text in messages + ps.skipped + ps.classes:
        text.encode("utf-8")
    assert "caf\ufffd" in ps.classes
    with pytest.raises(InputError, match="1 or more"):  # was a raw ValueError from numpy (case 14)
        load_class_folders(folders, patch_size=16, max_per_class=-1)


def test_class_folders_bad_input(tmp_path, folders):
    write_raster(folders / "dark" / "five.tif", np.zeros((5, 16, 16), np.uint8))
    with pytest.raises(InputError, match="mixed band counts"):
        load_class_folders(folders, patch_size=16, warn=lambda m: None)
    (tmp_path / "none" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="no readable image"):
        load_class_folders(tmp_path / "none", warn=lambda m: None)
    with pytest.raises(InputError, match="does not exist"):
        load_class_folders(tmp_path / "missing")


def _scene(tmp_path):
    """64 x 64 px, 2 bands: left half dark (class 1), right half bright (class 2)."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 100, (2, 64, 64)).astype(np.uint16)
    img[:, :, 32:] += 1000
    classes = np.ones((1, 64, 64), np.float32)
    classes[:, :, 32:] = 2
    classes[:, :4, :4] = -9999
    raster = write_raster(tmp_path / "img.tif", img, descriptions=["red", "nir"])
    labels = write_raster(tmp_path / "classes.tif", classes, nodata=-9999)
    return raster, labels


def test_raster_with_class_raster_and_block_split(tmp_path):
    raster, labels = _scene(tmp_path)
    ps = load_raster_patches(raster, labels, patch_size=8, threshold=0.9, block_size=16, val_fraction=0.25,
                             class_names={"1": "dark", "2": "bright"})
    assert ps.classes == ["dark", "bright"] and ps.band_names == ["red", "nir"] and ps.dtype == "uint16"
    assert ps.held_out.any() and (~ps.held_out).any()
    bright = ps.x[ps.labels == 1]
    assert bright.min() >= 1000 and ps.x[ps.labels == 0].max() < 100
    # no window crosses a block edge: training and held-out windows never overlap
    rc = np.array([[int(v) for v in s.split(",")] for s in ps.sources])
    assert ((rc // 16) == ((rc + 7) // 16)).all()


def test_raster_with_polygons(tmp_path):
    raster, _ = _scene(tmp_path)
    x0, y0 = 500000.0, 5800000.0  # write_raster's origin, 10 m pixels
    def box(c0, c1):
        return {"type": "Polygon", "coordinates": [[[x0 + c0 * 10, y0], [x0 + c1 * 10, y0], [x0 + c1 * 10, y0 - 640],
                                                    [x0 + c0 * 10, y0 - 640], [x0 + c0 * 10, y0]]]}
    gj = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
          "features": [{"type": "Feature", "properties": {"lc": "field"}, "geometry": box(0, 32)},
                       {"type": "Feature", "properties": {"lc": "town"}, "geometry": box(32, 64)}]}
    path = tmp_path / "lc.geojson"
    path.write_text(json.dumps(gj))
    ps = load_raster_patches(raster, path, "lc", patch_size=8, threshold=0.9, block_size=16)
    assert ps.classes == ["field", "town"]
    assert ps.x[ps.labels == 1].min() >= 1000
    with pytest.raises(InputError, match="no field 'missing'"):
        load_raster_patches(raster, path, "missing", patch_size=8)
    with pytest.raises(InputError, match="threshold"):
        load_raster_patches(raster, path, "lc", patch_size=8, threshold=0)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("syn")
    raster, labels = _scene(tmp)
    out = {}
    for arch, extra in (("cdcgan", dict(ngf=8, ndf=8, nz=16)),
                        ("diffusion", dict(base=8, depth=2, steps=3, guidance_samples=6))):
        config = SynthesisConfig(output_model=str(tmp / f"{arch}.satgen"), report_dir=str(tmp / arch), arch=arch,
                                 input=str(raster), labels=str(labels), patch_size=16, threshold=0.9,
                                 block_size=32, stride=8, epochs=1, patches_per_epoch=16, batch_size=8,
                                 class_names={"1": "dark", "2": "bright"}, device="cpu", **extra)
        out[arch] = (train_synthesis(config), config)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["cdcgan", "diffusion"])
def test_tiny_training_writes_model_and_report(tiny_models, arch):
    path, config = tiny_models[arch]
    card = read_card(path)
    assert card.task == "synthesize" and card.classes == ["dark", "bright"] and card.tile_size == 16
    assert card.outputs.names == ["red", "nir"] and card.outputs.dtype == "uint16"
    for name in ("loss_curves.png", "samples.png", "metrics.json", "checkpoint.pt"):
        assert (tmp := __import__("pathlib").Path(config.report_dir) / name).exists(), tmp
    # resume: a second epoch continues from the checkpoint
    config.epochs = 2
    train_synthesis(config)
    metrics = json.loads((__import__("pathlib").Path(config.report_dir) / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(h["images_per_s"] > 0 for h in metrics["history"])
    if arch == "diffusion":  # guidance chosen after training, on the training patches; the table is in the card
        from engine.synthesis.guidance import GRID, pick

        sampler = read_card(path).training["sampler"]
        table = sampler["guidance_selection"]["kid_by_guidance"]
        scored = {float(g): float("nan") if v is None else v for g, v in table.items()}
        assert len(scored) == len(GRID) and sampler["guidance"] == pick(scored)
        assert metrics["sampler"] == sampler


def test_moving_average_warms_up_from_the_random_start():
    """The weights' average follows the network closely at first and reaches its decay later: a short run's
    average is not mostly the random weights it started from."""
    from engine.synthesis.training import ema_decay

    assert ema_decay(0.999, 0) == 0.1 and ema_decay(0.999, 90) == 0.91
    assert ema_decay(0.999, 10**6) == 0.999 and ema_decay(0.995, 5000) == 0.995
    # what is left of the starting weights after 2,000 updates: 13 % at a constant 0.999, next to nothing now
    left = np.prod([ema_decay(0.999, t) for t in range(1, 2001)])
    assert 0.999 ** 2000 > 0.13 and left < 0.01


def test_guidance_choice_prefers_one_on_ties():
    from engine.synthesis.guidance import pick

    assert pick({0.5: 2.0, 1.0: 1.0, 1.5: 1.0, 3.0: 0.999}) == 1.0  # within 1 % of the lowest: nearest 1
    assert pick({0.5: 2.0, 1.0: 1.0, 1.5: 0.5, 3.0: 0.6}) == 1.5
    assert pick({0.5: 0.3, 2.0: 0.3}) == 0.5 and pick({1.5: float("nan")}) == 1.0


def test_cli_guidance_auto_or_a_number():
    from engine.cli import build_parser

    parse = build_parser().parse_args
    base = ["train", "synthesis", "--dataset", "d", "--output-model", "m.satgen", "--report-dir", "r"]
    assert parse(base + ["--guidance", "auto"]).guidance is None and parse(base).guidance is None
    assert parse(base + ["--guidance", "1.25", "--guidance-samples", "20"]).guidance_samples == 20
    assert parse(base + ["--guidance", "1.25"]).guidance == 1.25
    with pytest.raises(SystemExit):
        parse(base + ["--guidance", "strong"])


def test_fixed_guidance_is_kept_and_bad_values_refused(tmp_path):
    raster, labels = _scene(tmp_path)
    config = SynthesisConfig(output_model=str(tmp_path / "r" / "m.satgen"), report_dir=str(tmp_path / "r"),
                             input=str(raster), labels=str(labels), patch_size=16, threshold=0.9, block_size=32,
                             stride=8, epochs=1, patches_per_epoch=8, batch_size=8, base=8, depth=2, steps=2,
                             guidance=1.25, class_names={"1": "dark", "2": "bright"}, device="cpu")
    sampler = read_card(train_synthesis(config)).training["sampler"]
    assert sampler["guidance"] == 1.25 and "guidance_selection" not in sampler
    for bad in (-1.0, float("nan"), float("inf")):
        config.guidance = bad
        with pytest.raises(InputError, match="guidance must be a finite number of 0 or more"):
            train_synthesis(config)


@pytest.mark.parametrize("arch", ["cdcgan", "diffusion"])
def test_synthesize_dataset_seed_and_bad_input(tiny_models, tmp_path, arch):
    model = tiny_models[arch][0]
    a = synthesize(tmp_path / "a", model, "bright", count=3, seed=7, steps=2,
                   output_preview=tmp_path / "preview.tif", device="cpu")
    b = synthesize(tmp_path / "b", model, ["Bright"], count=3, seed=7, steps=2, device="cpu")
    c = synthesize(tmp_path / "c", model, "bright", count=3, seed=8, steps=2, device="cpu")
    def read(p):
        with rasterio.open(p) as src:
            return src.read()
    first = [read(p) for p in a.files["bright"]]
    assert all(np.array_equal(x, read(p)) for x, p in zip(first, b.files["bright"], strict=True))
    assert not np.array_equal(first[0], read(c.files["bright"][0]))
    assert first[0].shape == (2, 16, 16) and first[0].dtype == np.uint16
    rows = list(csv.DictReader(open(a.manifest)))
    assert [r["class"] for r in rows] == ["bright"] * 3 and rows[0]["seed"] == "7"
    assert (tmp_path / "a" / rows[0]["file"]).exists()
    with rasterio.open(a.preview) as src:
        assert src.count == 3 and src.width == 3 * 16 + 2 * 2
    png = synthesize(tmp_path / "png", model, "", count=1, fmt="png", device="cpu")
    assert set(png.files) == {"dark", "bright"} and png.files["dark"][0].suffix == ".png"
    with pytest.raises(InputError, match="dark, bright"):
        synthesize(tmp_path / "x", model, "forest", count=1)
    with pytest.raises(InputError, match="COUNT"):
        synthesize(tmp_path / "x", model, "dark", count=0)


class _CancelAfter(Feedback):
    """Cancelled once more than `calls` progress reports came: a user pressing Cancel half way."""

    def __init__(self, calls: int):
        self.calls = calls

    def progress(self, fraction: float) -> None:
        self.calls -= 1

    def is_cancelled(self) -> bool:
        return self.calls < 0


def test_cancelled_or_refused_synthesis_leaves_nothing(tiny_models, tmp_path):
    model = tiny_models["diffusion"][0]
    with pytest.raises(Cancelled):
        synthesize(tmp_path / "set", model, "", count=2, steps=2, device="cpu", feedback=_CancelAfter(0),
                   output_preview=tmp_path / "preview.tif")
    assert list(tmp_path.iterdir()) == []  # no patches, no folder, no hidden parts
    for bad, message in ((dict(steps=0), "at least 1 step"), (dict(guidance=float("nan")), "finite"),
                         (dict(guidance=float("inf")), "finite"), (dict(guidance=-1.0), "finite")):
        with pytest.raises(InputError, match=message):
            synthesize(tmp_path / "set", model, "", count=1, device="cpu", **bad)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "mine.txt").write_text("kept")
    done = synthesize(tmp_path / "set", model, "dark", count=1, steps=2, device="cpu")
    inside = synthesize(tmp_path / "new", model, "dark", count=1, steps=2, device="cpu",
                        output_preview=tmp_path / "new" / "preview.png")  # a preview inside the new data set
    assert inside.preview is not None and inside.preview.exists()
    assert (tmp_path / "set" / "mine.txt").read_text() == "kept" and done.files["dark"][0].exists()
    assert done.files["dark"][0].parent == tmp_path / "set" / "dark"


def test_class_names_that_sanitise_alike_get_folders_of_their_own():
    from engine.synthesis.synthesize import _folder_names

    assert _folder_names(["A b", "A_b", "forest", "Forest", "water"]) == ["A_b_1", "A_b_2", "forest_3", "Forest_4",
                                                                          "water"]


def test_fid_kid_known_cases():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 16))
    b = rng.standard_normal((400, 16))
    far = rng.standard_normal((400, 16)) + 1.0
    assert fid(a, a) == pytest.approx(0, abs=1e-6)
    # KID is unbiased: about 0 (either sign) for samples of one distribution, clearly positive otherwise
    assert kid(a, far) > 0.5 and abs(kid(a, a)) < 0.1 * kid(a, far) and abs(kid(a, b)) < 0.1 * kid(a, far)
    assert fid(a, far) > 10 * max(fid(a, b), 0.1)


def test_top_up_counts_and_paired_gain_known_cases():
    from engine.synthesis.evaluation import paired_gain, top_up_counts

    assert top_up_counts(np.array([0, 0, 0, 2]), 3) == [0, 3, 2]  # class 1 has no real patch: topped up fully
    g = paired_gain([0.7, 0.6, 0.9], [0.5, 0.6, 0.6])  # differences 0.2, 0, 0.3
    assert g["mean"] == pytest.approx(0.5 / 3) and g["se"] == pytest.approx(np.std([0.2, 0, 0.3], ddof=1) / np.sqrt(3))
    assert paired_gain([0.7], [0.5])["se"] is None  # one pair: no spread to report


def test_evaluation_writes_the_synthesize_section(tiny_models, tmp_path):
    from engine.synthesis.evaluation import evaluate_synthesis
    from engine.training.report import update_report

    section = evaluate_synthesis(tiny_models["diffusion"][0], tiny_models["cdcgan"][0], n=4, repeats=1, steps=3,
                                 batch_size=8)
    for key in ("kid_model", "kid_cdcgan", "cas_model", "cas_cdcgan", "acc_real", "acc_real_plus_synthetic",
                "acc_real_topup_synthetic"):
        assert f"synthesize.{key}" in section["summary"]
    counts = section["counts"]["train"]
    assert section["top_up_per_class"] == {c: max(counts.values()) - counts[c] for c in counts}
    assert len(section["classifiers"]["real_topup_model"]["balanced_accuracy_per_repeat"]) == 1
    assert set(section["per_class"]) == {"dark", "bright"} and section["n_synthetic_per_class"] == 4
    assert "not ImageNet" in section["feature_space"]
    assert section["seeds"] == {"synthetic": 1000, "classifiers": [0]}
    gain = section["summary"]["synthesize.gain_topup_model"]  # paired: the same seed trains real and real + synthetic
    real, topup = (section["classifiers"][k]["balanced_accuracy_per_repeat"][0] for k in ("real", "real_topup_model"))
    assert gain["mean"] == pytest.approx(topup - real) and gain["se"] is None  # one repeat: no spread
    report = tmp_path / "quality.json"
    report.write_text(json.dumps({"translate": {"kept": 1}}))
    update_report("synthesize", section, report)
    written = json.loads(report.read_text())
    assert written["translate"] == {"kept": 1} and written["synthesize"]["goals"] == section["goals"]
    assert written["synthesize"]["command"].startswith("python -m engine ")  # what ran, not a fixed label
    update_report("synthesize", section, report, command="satgen:evaluate_synthesis N=4")
    assert json.loads(report.read_text())["synthesize"]["command"] == "satgen:evaluate_synthesis N=4"


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """An Inception-v3 state dict as torchvision ships it (.pth; random weights: nothing can be fetched here)."""
    inception_v3 = needs_torchvision()

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "inception_v3.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return path


def test_inception_features_from_pth_and_safetensors(inception_weights, tmp_path):
    from safetensors.torch import save_file

    from engine.synthesis.inception import InceptionFeatures

    x = np.random.default_rng(0).uniform(-1, 1, (3, 4, 16, 16)).astype(np.float32)
    feats = InceptionFeatures(inception_weights)(x, [2, 1, 0])
    assert feats.shape == (3, 2048) and np.isfinite(feats).all() and feats.std(0).max() > 0
    state = torch.load(inception_weights, weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    assert np.allclose(InceptionFeatures(tmp_path / "w.safetensors")(x, [2, 1, 0]), feats, atol=1e-5)
    net = InceptionFeatures(inception_weights)
    assert net.variant == "torchvision" and not net.net.transform_input  # [-1, 1] goes in as it is
    grey = net(x[:, :1], [0])  # a single band is repeated as grey
    assert np.allclose(grey, net(np.repeat(x[:, :1], 3, axis=1), [0, 1, 2]), atol=1e-5)


def needs_torchvision():
    """torchvision's inception_v3; torchvision is optional (the engine's environment from PyTorch's CPU
    index has none: there these tests are skipped, and the refusal below is tested instead)."""
    return pytest.importorskip("torchvision.models").inception_v3


def test_without_torchvision_inception_scores_are_refused_with_the_fix(tmp_path):
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here; the refusal is tested where it is not")
    from engine.errors import InputError
    from engine.synthesis.inception import InceptionFeatures

    weights = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(1000, 2048)}, weights)
    with pytest.raises(InputError, match="need torchvision"):
        InceptionFeatures(weights)


def test_inception_pytorch_fid_weights_run_the_fid_graph(tmp_path):
    """pytorch-fid's file: 1008 classes, no aux head, same names; its Mixed blocks pool differently."""
    inception_v3 = needs_torchvision()

    from engine.synthesis.inception import InceptionFeatures

    torch.manual_seed(1)
    net = inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=1008)
    torch.save(net.state_dict(), tmp_path / "pt_inception.pth")
    fid_net = InceptionFeatures(tmp_path / "pt_inception.pth")
    assert fid_net.variant.startswith("pytorch-fid") and fid_net.net.AuxLogits is None
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    plain = net.eval()
    plain.fc = torch.nn.Identity()
    with torch.no_grad():
        tv = plain(torch.nn.functional.interpolate(torch.from_numpy(x), size=(299, 299), mode="bilinear")).numpy()
    ours = fid_net(x, [0, 1, 2])
    assert ours.shape == tv.shape and not np.allclose(ours, tv, atol=1e-4)  # the pool branches differ
    # the FID graph's Mixed_7c max-pools its last branch: check that block alone
    block, h = fid_net.net.Mixed_7c, torch.randn(1, 2048, 8, 8)
    with torch.no_grad():
        expected = block.branch_pool(torch.nn.functional.max_pool2d(h, 3, 1, 1))
        assert torch.allclose(block(h)[:, -192:], expected, atol=1e-5)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_inception_weights_that_are_not_plain_tensors_are_refused(tmp_path):
    from engine.synthesis.inception import InceptionFeatures

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": _RunsCode(str(marker))}, evil)  # a checkpoint whose unpickling would open a file
    with pytest.raises(InputError, match="refused"):
        InceptionFeatures(evil)
    assert not marker.exists()  # the pickle's code never ran
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(InputError, match="no Inception-v3 state dict"):
        InceptionFeatures(other)
    torch.save({"fc.weight": [1.0, 2.0]}, other)  # not a tensor
    with pytest.raises(InputError, match="no Inception-v3 state dict"):
        InceptionFeatures(other)
    needs_torchvision()
    torch.save({"fc.weight": torch.zeros(10, 2048), "fc.bias": torch.zeros(10)}, other)
    with pytest.raises(InputError, match="does not fit"):
        InceptionFeatures(other)
    with pytest.raises(InputError, match="does not exist"):
        InceptionFeatures(tmp_path / "missing.pth")


@pytest.mark.slow
def test_evaluation_in_inception_space(tiny_models, inception_weights):
    from engine.synthesis.evaluation import evaluate_synthesis

    section = evaluate_synthesis(tiny_models["diffusion"][0], tiny_models["cdcgan"][0], n=4, repeats=1, steps=3,
                                 batch_size=8, inception_weights=inception_weights, device="cpu")
    s = section["summary"]
    for name in ("model", "cdcgan", "real_train"):  # finite, and taken in another space than the classifier's
        assert np.isfinite(s[f"synthesize.fid_inception_{name}"]) and np.isfinite(s[f"synthesize.kid_inception_{name}"])
        assert s[f"synthesize.fid_inception_{name}"] != section["distances"][name]["fid_mean_per_class"]
    assert set(section["distances_inception"]["model"]["kid_per_class"]) == {"dark", "bright"}
    assert "Inception-v3" in section["inception"]["feature_space"]
    with pytest.raises(InputError, match="does not exist"):  # checked before the long part
        evaluate_synthesis(tiny_models["diffusion"][0], tiny_models["cdcgan"][0], inception_weights="missing.pth")


def test_wide_noise_trains_the_levels_where_sampling_starts():
    from engine.models.class_unet import ClassUNet
    from engine.synthesis.diffusion import SIGMA_MAX, edm_loss

    seen = []

    class Recording(ClassUNet):  # the real network, noting the noise levels it is trained at
        def forward(self, x, sigma, labels):
            seen.append(sigma.detach().clone())
            return super().forward(x, sigma, labels)

    net = Recording(in_channels=2, num_classes=2, base=8, depth=2)
    x, y = torch.zeros(256, 2, 16, 16), torch.zeros(256, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    edm_loss(net, x, y, generator=g)
    edm_loss(net, x, y, generator=g, wide_noise=0.5)
    narrow, wide = seen
    assert (narrow > 20).float().mean() < 0.01  # EDM's log-normal: about 1 in 2000
    assert (wide > 20).float().mean() > 0.05 and float(wide.max()) <= SIGMA_MAX


def test_class_names_exact_first_then_by_case():
    from engine.card import Bands, ModelCard
    from engine.synthesis.synthesize import resolve_classes

    bands = Bands(names=["B1"], low=[0.0], high=[1.0])
    card = ModelCard(task="synthesize", architecture="cdcgan", params={}, inputs=bands, outputs=bands,
                     classes=["Forest", "forest", "Water"])
    assert resolve_classes(card, "Forest,forest, water") == [0, 1, 2]
    assert resolve_classes(card, "") == [0, 1, 2]
    with pytest.raises(InputError, match="differ only in case"):
        resolve_classes(card, "FOREST")
    with pytest.raises(InputError, match="no class 'sand'"):
        resolve_classes(card, ["sand"])
