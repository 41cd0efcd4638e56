"""Augmentation gain vs sampling guidance: real vs real + synthetic (100 per class, and top-up) at
each guidance weight, 10 paired classifier trainings (seeds 0-9; REPEATS=n to change).
    PYTHONPATH=. .venv/bin/python experiments/synthesis_guidance_mix.py MODEL G1 [G2 ...]
"""
import argparse

import numpy as np
import torch

from engine.synthesis.evaluation import first_per_class, top_up_counts
from engine.synthesis.synthesize import generate
from experiments.synthesis_common import paired, split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="synthesis model file; its card gives the data set and the block split")
    parser.add_argument("guidance", nargs="+", type=float, metavar="G", help="guidance weight(s) to sample with")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, gs = args.model, args.guidance
    loaded, classes, xtr, ytr, xv, yv = split(model)
    card = loaded.card
    k = len(classes)
    top = top_up_counts(ytr, k)
    sets = {}
    for g in gs:
        xs = [generate(loaded, card.classes.index(c), max(100, t), seed=1000, guidance=g)
              for c, t in zip(classes, top, strict=True)]
        ys = np.concatenate([np.full(len(x), i, np.int64) for i, x in enumerate(xs)])
        x_all = np.concatenate(xs)
        sets[f"plus_g{g:g}"] = first_per_class(x_all, ys, [100] * k)
        sets[f"topup_g{g:g}"] = first_per_class(x_all, ys, top)
        print("generated", g, flush=True)
    paired(xtr, ytr, xv, yv, classes, sets)


if __name__ == "__main__":
    main()
