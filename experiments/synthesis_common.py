"""Shared parts of the synthesis experiment scripts: a model's block split in its model space,
and paired classifier trainings (the same seed on real and on real + synthetic patches)."""
import os

import numpy as np

from engine.modelfile import load_model
from engine.synthesis.classifier import accuracies, predict, train_classifier
from engine.synthesis.datasets import patches_to_model
from engine.synthesis.evaluation import paired_gain
from engine.synthesis.training import config_from_card, prepare_patches


def split(path):
    """-> (loaded model, classes, x_train, y_train, x_val, y_val) of the data set a model was trained on."""
    loaded = load_model(path, tasks=("synthesize",))
    card = loaded.card
    p = prepare_patches(config_from_card(card), warn=lambda m: None)
    classes = [c for c in card.classes if c in p.classes]
    sc = card.outputs.scaling
    (xtr, ytr), (xv, yv) = p.part("train"), p.part("val")
    return loaded, classes, patches_to_model(sc, xtr), ytr, patches_to_model(sc, xv), yv


def paired(xtr, ytr, xv, yv, classes, sets: dict) -> dict:
    """Print balanced accuracy of real alone and of real + each synthetic set, REPEATS (default 10) paired
    trainings, then the mean gains +- standard error in points and the mean recall per class.
    Returns {key: balanced accuracy per repeat}, "real" included."""
    k, keys = len(classes), ["real"] + list(sets)
    res: dict[str, list[float]] = {key: [] for key in keys}
    rec: dict[str, list[dict]] = {key: [] for key in keys}
    for r in range(int(os.environ.get("REPEATS", 10))):
        for key in keys:
            if key == "real":
                x, y = xtr, ytr
            else:
                x, y = np.concatenate([xtr, sets[key][0]]), np.concatenate([ytr, sets[key][1]])
            a = accuracies(predict(train_classifier(x, y, k, steps=250, batch_size=32, seed=r), xv)[0], yv, classes)
            res[key].append(a["balanced_accuracy"])
            rec[key].append(a["recall"])
        print(r, {k_: round(v[-1], 3) for k_, v in res.items()}, flush=True)
    for key in keys[1:]:
        g = paired_gain(res[key], res["real"])
        print(key, "real", round(np.mean(res["real"]), 4), "aug", round(np.mean(res[key]), 4), "gain",
              round(g["mean"] * 100, 2), "+-", "?" if g["se"] is None else round(g["se"] * 100, 2), "points")
    for key in keys:
        print(key, {c: round(float(np.mean([r_[c] for r_ in rec[key]])), 3) for c in rec[key][0]})
    return res
