"""Augmentation gain across block splits: does real + synthetic beat real alone on other held-out blocks?

Fixed on 2026-11-22, before any of its results were seen (session 7):
- Splits: the default (seed 5, the shipped model), seed 7 (session 5's second split, its 300-epoch model)
  and two more: the first seeds of 1, 2, 3, 4, 6, ... whose training set holds all five classes and whose
  held-out set holds >= 15 residential patches (residential is the rare class the tool is for; fewer
  held-out patches move its recall in steps of 1/6 or more). Seed 2 has no water class, seeds 3 and 4 have
  5 and 6 held-out residential patches, so: seeds 1 and 6.
- Each split's diffusion model trained with the default recipe (Makefile `models`, --seed S, 300 epochs).
- Gains measured as `make evaluate` does: 100 synthetic patches per class and top-up, synthetic seed 1000,
  the card's guidance and steps, 10 paired classifier trainings (seeds 0-9), balanced accuracy.
- Verdict for each way (100 per class, top-up): "real + synthetic not worse than real alone" holds when the
  mean over the four splits of the mean paired gain is >= 0.

    PYTHONPATH=. .venv/bin/python experiments/synthesis_cross_split.py OUT.json MODEL [MODEL ...]
A .json argument in place of a model takes the splits of an earlier run's report (to merge runs).
"""
import argparse
import json
import sys

import numpy as np
import torch

from engine.progress import Feedback
from engine.synthesis.evaluation import SEED, first_per_class, paired_gain, synthetic_patches, top_up_counts
from engine.training.report import write_json
from experiments.synthesis_common import paired, split

COMMAND = "PYTHONPATH=. .venv/bin/python experiments/synthesis_cross_split.py"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="report to write (.json)")
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="synthesis model file, one per split, or an earlier run's report (.json) to merge")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    per_split, commands = {}, []
    for path in args.models:
        if path.endswith(".json"):
            with open(path) as f:
                earlier = json.load(f)
            per_split.update(earlier["splits"])
            commands += earlier["commands"]
            continue
        loaded, classes, xtr, ytr, xv, yv = split(path)
        k, split_seed = len(classes), loaded.card.training["config"]["seed"]
        top = top_up_counts(ytr, k)
        xs, ys, info = synthetic_patches(path, classes, [max(100, t) for t in top], loaded.card.outputs.scaling,
                                         Feedback(), SEED)
        print(path, "seed", split_seed, info, flush=True)
        sets = {"plus": first_per_class(xs, ys, [100] * k), "topup": first_per_class(xs, ys, top)}
        res = paired(xtr, ytr, xv, yv, classes, sets)
        gains = {way: paired_gain(res[way], res["real"]) for way in ("plus", "topup")}
        per_split[str(path)] = {"split_seed": split_seed, "model": info,
                                "held_out": dict(zip(classes, np.bincount(yv, minlength=k).tolist(), strict=True)),
                                "acc_real": float(np.mean(res["real"])), "gain": gains}
    commands.append(f"{COMMAND} " + " ".join(argv))
    summary = {way: float(np.mean([s["gain"][way]["mean"] for s in per_split.values()])) for way in ("plus", "topup")}
    report = {"splits": per_split, "mean_gain_over_splits": summary,
              "goals": {f"real_{way}_synthetic_not_worse": v >= 0 for way, v in summary.items()},
              "commands": commands}
    write_json(args.out, report)
    print(summary, report["goals"])


if __name__ == "__main__":
    main()
