"""Augmentation with synthetic patches filtered by a critic: a classifier trained on the real
training patches only (seed 999, apart from the judges' seeds 0-9) keeps a synthetic patch when it
assigns it to the requested class with probability >= THRESH. real vs real + filtered (100 per
class and top-up), 10 paired classifier trainings (REPEATS=n to change; ACCEPT_ONLY=1: acceptance
shares only).
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_filter_mix.py MODEL BASELINE [THRESH]
"""
import os
import sys

import numpy as np
import torch
from synthesis_common import paired, split

from engine.progress import Feedback
from engine.synthesis.classifier import train_classifier
from engine.synthesis.evaluation import _first, _synthetic, top_up_counts

torch.set_num_threads(1)
model, baseline = sys.argv[1], sys.argv[2]
thresh = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
loaded, classes, xtr, ytr, xv, yv = split(model)
k = len(classes)
top = top_up_counts(ytr, k)
want = [max(100, t) for t in top]
critic = train_classifier(xtr, ytr, k, steps=250, batch_size=32, seed=999)
sets = {}
for name, path in (("model", model), ("cdcgan", baseline)):
    xs, ys, _ = _synthetic(path, classes, [3 * w for w in want], loaded.card.outputs.scaling, Feedback())
    with torch.no_grad():
        pr = torch.softmax(critic(torch.from_numpy(xs).float()), 1).numpy()[np.arange(len(ys)), ys]
    keep = pr >= thresh
    print(name, "accepted share per class", {c: round(float(keep[ys == i].mean()), 3) for i, c in enumerate(classes)},
          flush=True)
    xs, ys = xs[keep], ys[keep]
    got = np.bincount(ys, minlength=k)
    eq, tu = [int(min(100, g)) for g in got], [int(min(t, g)) for t, g in zip(top, got)]
    print(name, "kept", dict(zip(classes, got.tolist())), "equal", eq, "topup", tu, flush=True)
    sets[f"plus_{name}"], sets[f"topup_{name}"] = _first(xs, ys, eq), _first(xs, ys, tu)
if not os.environ.get("ACCEPT_ONLY"):
    paired(xtr, ytr, xv, yv, classes, sets)
