"""Augmentation with synthetic patches filtered by a critic: a classifier trained on the real
training patches only (seed 999, apart from the judges' seeds 0-9) keeps a synthetic patch when it
assigns it to the requested class with probability >= THRESH. real vs real + filtered (100 per
class and top-up), 10 paired classifier trainings (REPEATS=n to change; ACCEPT_ONLY=1: acceptance
shares only).
    PYTHONPATH=. .venv/bin/python experiments/synthesis_filter_mix.py MODEL BASELINE [THRESH]
"""
import argparse
import os

import numpy as np
import torch

from engine.progress import Feedback
from engine.synthesis.classifier import train_classifier
from engine.synthesis.evaluation import first_per_class, synthetic_patches, top_up_counts
from experiments.synthesis_common import paired, split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="synthesis model file; its card gives the data set and the block split")
    parser.add_argument("baseline", help="cDCGAN baseline model file trained on the same classes")
    parser.add_argument("thresh", nargs="?", type=float, default=0.5,
                        help="smallest critic probability of the requested class to keep a patch (default 0.5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, baseline, thresh = args.model, args.baseline, args.thresh
    loaded, classes, xtr, ytr, xv, yv = split(model)
    k = len(classes)
    top = top_up_counts(ytr, k)
    want = [max(100, t) for t in top]
    critic = train_classifier(xtr, ytr, k, steps=250, batch_size=32, seed=999)
    sets = {}
    for name, path in (("model", model), ("cdcgan", baseline)):
        xs, ys, _ = synthetic_patches(path, classes, [3 * w for w in want], loaded.card.outputs.scaling, Feedback())
        with torch.no_grad():
            pr = torch.softmax(critic(torch.from_numpy(xs).float()), 1).numpy()[np.arange(len(ys)), ys]
        keep = pr >= thresh
        print(name, "accepted share per class",
              {c: round(float(keep[ys == i].mean()), 3) for i, c in enumerate(classes)}, flush=True)
        xs, ys = xs[keep], ys[keep]
        got = np.bincount(ys, minlength=k)
        eq, tu = [int(min(100, g)) for g in got], [int(min(t, g)) for t, g in zip(top, got, strict=True)]
        print(name, "kept", dict(zip(classes, got.tolist(), strict=True)), "equal", eq, "topup", tu, flush=True)
        sets[f"plus_{name}"], sets[f"topup_{name}"] = first_per_class(xs, ys, eq), first_per_class(xs, ys, tu)
    if not os.environ.get("ACCEPT_ONLY"):
        paired(xtr, ytr, xv, yv, classes, sets)


if __name__ == "__main__":
    main()
