"""The bench's `scale` section: the same training and the same apply run by torchrun with 1 and with
2 processes on this machine, alternating, as real commands (`torchrun --standalone --nproc_per_node=N
-m engine ...`). Training images/s come from the report's metrics.json (the last epoch's, the first
one warms up); inference MP/s are the raster's pixels over the command's wall time (start-up of the
processes included, alike for both), and the 2-process output is checked pixel for pixel against the
1-process one.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess  # nosec B404
import sys
import time
from pathlib import Path

PROCESSES = (1, 2)


def _torchrun(processes: int, args: list, cwd: Path) -> float:
    """Wall seconds of `torchrun ... -m engine ARGS` (the engine of this checkout); raises with its
    output when it fails."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "engine", *map(str, args)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)  # nosec B603
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[2:])} failed:\n{done.stderr[-3000:]}")
    return seconds


def training_args(clear: str, folder: Path, quick: bool) -> list:
    """A small inpainting training (it needs only a clear raster): 2 epochs of 64 patches of 64 px."""
    return ["train", "inpainting", "--inputs", clear, "--output-model", folder / "m.satgen", "--report-dir", folder,
            "--epochs", 2, "--patches-per-epoch", 16 if quick else 64, "--batch-size", 8, "--patch-size", 64,
            "--tile-size", 64, "--overlap", 16, "--ngf", 8 if quick else 16, "--block-size", 128,
            "--device", "cpu", "--precision", "fp32"]


def measure_scale(clear: str, canvas: str, model: str, work: Path, quick: bool = False, repeats: int = 2) -> dict:
    """train_images_per_s_N and infer_mp_per_s_N for N in PROCESSES (medians of `repeats` alternating
    runs), their ratios, and whether the 2-process output equals the 1-process one."""
    import numpy as np
    import rasterio

    # the runs start in `work`: every path absolute
    clear, canvas, model = (str(Path(p).resolve()) for p in (clear, canvas, model))
    work = Path(work).resolve()
    train: dict[int, list[float]] = {n: [] for n in PROCESSES}
    infer: dict[int, list[float]] = {n: [] for n in PROCESSES}
    with rasterio.open(canvas) as src:
        megapixels = src.width * src.height / 1e6
    for _ in range(repeats):
        for n in PROCESSES:
            folder = work / f"scale_train_{n}"
            shutil.rmtree(folder, ignore_errors=True)
            _torchrun(n, training_args(clear, folder, quick), work)
            history = json.loads((folder / "metrics.json").read_text())["history"]
            train[n].append(history[-1]["images_per_s"])
            seconds = _torchrun(n, ["apply", "--model", model, "--input", canvas, "--output",
                                    work / f"scale_apply_{n}.tif", "--device", "cpu", "--overviews", "no"], work)
            infer[n].append(megapixels / seconds)
    with rasterio.open(work / "scale_apply_1.tif") as one, rasterio.open(work / "scale_apply_2.tif") as two:
        identical = bool(np.array_equal(one.read(), two.read()))
    result: dict = {}
    for n in PROCESSES:
        result[f"train_images_per_s_{n}"] = round(statistics.median(train[n]), 2)
        result[f"infer_mp_per_s_{n}"] = round(statistics.median(infer[n]), 3)
    result.update(
        train_ratio_2_1=round(result["train_images_per_s_2"] / result["train_images_per_s_1"], 3),
        infer_ratio_2_1=round(result["infer_mp_per_s_2"] / result["infer_mp_per_s_1"], 3),
        infer_2_identical_to_1=identical, runs=repeats, raster_mp=round(megapixels, 2),
        train_runs_images_per_s={str(n): [round(v, 2) for v in train[n]] for n in PROCESSES},
        infer_runs_mp_per_s={str(n): [round(v, 3) for v in infer[n]] for n in PROCESSES},
        cpu_count=os.cpu_count(),
        note=("torchrun gives each of 2 processes OMP_NUM_THREADS=1, one process keeps torch's own threads: on a "
              "machine with few cores the processes share them, so the ratios say what the split itself costs, "
              "not what more machines would give; inference times include starting the processes"),
        commands=[" ".join(["torchrun --standalone --nproc_per_node=N -m engine", *map(str, args)])
                  for args in (training_args(clear, Path("WORK/scale_train_N"), quick),
                               ["apply", "--model", model, "--input", canvas, "--output", "WORK/scale_apply_N.tif",
                                "--device", "cpu", "--overviews", "no"])],
    )
    return result
