"""Augmentation with the synthetic patches capped at the real count of each class (min(100, real)):
real vs real + capped synthetic, 10 paired classifier trainings (README, Synthesis; session-5 note).

Run from the repository root:
    PYTHONPATH=. .venv/bin/python experiments/synthesis_capped_mix.py MODEL.satgen BASELINE.satgen
"""
import argparse

import numpy as np
import torch

from engine.progress import Feedback
from engine.synthesis.evaluation import synthetic_patches
from experiments.synthesis_common import paired, split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="synthesis model file; its card gives the data set and the block split")
    parser.add_argument("baseline", help="cDCGAN baseline model file trained on the same classes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, baseline = args.model, args.baseline
    loaded, classes, xtr, ytr, xv, yv = split(model)
    cap = [int(min(100, h)) for h in np.bincount(ytr, minlength=len(classes))]
    print("cap", dict(zip(classes, cap, strict=True)))
    sets = {f"capped_{name}": synthetic_patches(path, classes, cap, loaded.card.outputs.scaling, Feedback())[:2]
            for name, path in (("model", model), ("cdcgan", baseline))}
    paired(xtr, ytr, xv, yv, classes, sets)


if __name__ == "__main__":
    main()
