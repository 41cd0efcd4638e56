"""The one training loop: batches split over processes, loader workers, precision, and real
torchrun runs with 2 CPU processes (gloo) whose model files load and apply, and resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_synthesis import _scene
from test_translation import real_pair, tiny_config  # noqa: F401 -- real_pair is a fixture

from engine.distributed import Share
from engine.errors import InputError
from engine.modelfile import load_model, read_card
from engine.training.loop import Precision, Run
from engine.translation.apply import translate
from engine.translation.train import train_translation
from helpers import ROOT, write_raster


def _run(share: Share) -> Run:
    device = torch.device("cpu")
    return Run(device=device, precision=Precision("fp32", device), share=share, channels_last=False, compile=False,
               workers=0)


@pytest.mark.parametrize("length,batch,world", [(10, 4, 1), (10, 4, 2), (9, 4, 2), (8, 3, 3), (7, 7, 3)])
def test_each_batch_is_split_over_the_ranks_without_loss_or_overlap(length, batch, world):
    dataset = list(range(length))
    parts = [list(_run(Share(rank, world)).loader(dataset, batch, length)) for rank in range(world)]
    steps = _run(Share(0, world)).steps(length, batch)
    assert all(len(p) == steps for p in parts)
    for step in range(steps):
        joined = torch.cat([p[step] for p in parts]).tolist()
        first = step * batch
        assert joined == list(range(first, min(first + batch, length)))  # the global batch, in order
    # a last batch that cannot give each rank an item is left out; otherwise nothing is
    assert steps == -(-length // batch) - (0 < length % batch < world)


def test_fp16_needs_a_gpu_and_unknown_precisions_are_refused():
    with pytest.raises(InputError, match="fp16 training needs a CUDA GPU; on the CPU use bf16 or fp32"):
        Precision("fp16", torch.device("cpu"))
    with pytest.raises(InputError, match="precision must be one of"):
        Precision("fp8", torch.device("cpu"))
    assert Precision("auto", torch.device("cpu")).name == "fp32"


def _weights(path) -> dict:
    return {k: v.float() for k, v in load_model(path).module.state_dict().items()}


def test_loader_workers_change_nothing_and_bf16_trains(real_pair, tmp_path):  # noqa: F811
    """Items depend on (seed, epoch, index) only: two worker processes give the very same weights as
    none. bf16 autocast on the CPU trains a model that loads and applies."""
    plain = train_translation(tiny_config(real_pair, tmp_path / "plain", workers=0, batch_size=2))
    workers = train_translation(tiny_config(real_pair, tmp_path / "workers", workers=2, batch_size=2))
    a, b = _weights(plain), _weights(workers)
    assert all(torch.equal(a[k], b[k]) for k in a)

    bf16 = train_translation(tiny_config(real_pair, tmp_path / "bf16", precision="bf16"))
    history = json.loads((tmp_path / "bf16" / "report" / "metrics.json").read_text())["history"]
    assert np.isfinite(history[0]["loss_g_l1"]) and history[0]["images_per_s"] > 0
    assert any(not torch.equal(a[k], v) for k, v in _weights(bf16).items())
    out = translate(real_pair[0], tmp_path / "map.tif", model=bf16)
    assert out.output.exists()


def _torchrun(args, tmp_path, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={processes}", "-m", "engine", *map(str, args)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_train_a_translation_model_that_loads_applies_and_resumes(real_pair, tmp_path):  # noqa: F811
    image, target, legend = real_pair
    args = ["train", "translation", "--input", image, "--target", target, "--legend", legend,
            "--output-model", tmp_path / "m.satgen", "--report-dir", tmp_path / "report",
            "--patches-per-epoch", 8, "--batch-size", 4, "--patch-size", 32, "--tile-size", 32, "--overlap", 8,
            "--ngf", 4, "--depth", 5, "--block-size", 64, "--device", "cpu"]
    done = _torchrun(args + ["--epochs", 1], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stdout + done.stderr
    card = read_card(tmp_path / "m.satgen")
    assert card.task == "translate" and "val_psnr_db" in card.metrics
    assert translate(image, tmp_path / "map.tif", model=tmp_path / "m.satgen").output.exists()
    history = json.loads((tmp_path / "report" / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["images_per_s"] > 0 and "val_miou" in history[0]
    assert torch.load(tmp_path / "report" / "checkpoint.pt", weights_only=True)["epoch"] == 1

    # the same command with more epochs goes on from the checkpoint, in one process or two alike
    done = _torchrun(args + ["--epochs", 2], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout + done.stderr
    history = json.loads((tmp_path / "report" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


@pytest.mark.parametrize("arch,extra", [("diffusion", ["--base", 8, "--depth", 2, "--steps", 3,
                                                       "--guidance-samples", 6]),
                                        ("cdcgan", ["--ngf", 8, "--ndf", 8, "--nz", 16])])
def test_two_processes_train_synthesis_models(tmp_path, arch, extra):
    raster, labels = _scene(tmp_path)
    done = _torchrun(["train", "synthesis", "--arch", arch, "--input", raster, "--labels", labels,
                      "--class-names", "1=dark,2=bright", "--patch-size", 16, "--threshold", 0.9,
                      "--block-size", 32, "--stride", 8, "--epochs", 1, "--patches-per-epoch", 16,
                      "--batch-size", 8, "--device", "cpu", "--output-model", tmp_path / "m.satgen",
                      "--report-dir", tmp_path / "report", *extra], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_card(tmp_path / "m.satgen").classes == ["dark", "bright"]


def test_two_processes_train_an_inpainting_model(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(1000, 100, (3, 24, 24)).repeat(8, axis=1).repeat(8, axis=2)
    clear = write_raster(tmp_path / "clear.tif", (base + rng.normal(0, 20, base.shape)).astype(np.uint16))
    done = _torchrun(["train", "inpainting", "--inputs", clear, "--output-model", tmp_path / "m.satgen",
                      "--report-dir", tmp_path / "report", "--epochs", 1, "--patches-per-epoch", 8,
                      "--batch-size", 4, "--patch-size", 32, "--tile-size", 64, "--overlap", 16, "--ngf", 4,
                      "--depth", 3, "--ndf", 4, "--block-size", 64, "--device", "cpu"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_card(tmp_path / "m.satgen").task == "inpaint"
