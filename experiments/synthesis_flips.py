"""Which held-out patches does augmentation lose? Per held-out patch of CLASS, the share of R
classifier trainings (seeds 0..R-1) that recognise it, trained on real patches alone and on real +
100 synthetic patches per class (seed 1000); writes a PNG of the patches recognised less often with
synthetic patches (top row) and of the class's real training patches (bottom row).

Run from the repository root:
    PYTHONPATH=. .venv/bin/python experiments/synthesis_flips.py MODEL.satgen CLASS OUT.png [R]
"""
import argparse

import numpy as np
import torch

from engine.progress import Feedback
from engine.synthesis.classifier import predict, train_classifier
from engine.synthesis.evaluation import synthetic_patches
from engine.synthesis.synthesize import mosaic, to_rgb8, write_preview
from experiments.synthesis_common import split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="synthesis model file; its card gives the data set and the block split")
    parser.add_argument("name", metavar="CLASS", help="the class whose held-out patches are followed")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("repeats", nargs="?", type=int, default=5, metavar="R",
                        help="classifier trainings per training set (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    path, name, out, repeats = args.model, args.name, args.out, args.repeats
    loaded, classes, xtr, ytr, xv, yv = split(path)
    k = len(classes)
    xs, ys, _ = synthetic_patches(path, classes, [100] * k, loaded.card.outputs.scaling, Feedback())
    i = classes.index(name)
    target = yv == i
    hits = {"real": np.zeros(target.sum()), "real+synthetic": np.zeros(target.sum())}
    wrong: dict[str, list[str]] = {"real": [], "real+synthetic": []}
    training_sets = (("real", (xtr, ytr)), ("real+synthetic", (np.concatenate([xtr, xs]), np.concatenate([ytr, ys]))))
    for r in range(repeats):
        for key, (x, y) in training_sets:
            pred = predict(train_classifier(x, y, k, steps=250, batch_size=32, seed=r), xv[target])[0]
            hits[key] += pred == i
            wrong[key] += [classes[j] for j in pred[pred != i]]
    for key in hits:
        print(f"{key:15s} recall {hits[key].sum() / hits[key].size / repeats:.3f}; taken for: "
              + ", ".join(f"{c} {wrong[key].count(c)}" for c in classes if wrong[key].count(c)))
    lost = np.flatnonzero(hits["real+synthetic"] < hits["real"])
    order = lost[np.argsort(hits["real+synthetic"][lost] - hits["real"][lost])]
    print(f"{len(lost)} of {target.sum()} held-out {name} patches recognised less often with synthetic patches:",
          ", ".join(f"#{j} {int(hits['real'][j])}->{int(hits['real+synthetic'][j])}/{repeats}" for j in order))
    real_tr = xtr[ytr == i][:: max(1, (ytr == i).sum() // 16)][:16]
    top_row = to_rgb8(loaded.card, xv[target][order][:16]) if len(order) else to_rgb8(loaded.card, real_tr[:1])
    rows = [top_row, to_rgb8(loaded.card, real_tr)]
    write_preview(out, mosaic(rows).repeat(3, 1).repeat(3, 2))


if __name__ == "__main__":
    main()
