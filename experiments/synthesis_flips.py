"""Which held-out patches does augmentation lose? Per held-out patch of CLASS, the share of R
classifier trainings (seeds 0..R-1) that recognise it, trained on real patches alone and on real +
100 synthetic patches per class (seed 1000); writes a PNG of the patches recognised less often with
synthetic patches (top row) and of the class's real training patches (bottom row).

Run from the repository root:
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_flips.py MODEL.satgen CLASS OUT.png [R]
"""
import sys

import numpy as np
import torch
from synthesis_common import split

from engine.progress import Feedback
from engine.synthesis.classifier import predict, train_classifier
from engine.synthesis.evaluation import _synthetic
from engine.synthesis.synthesize import mosaic, to_rgb8, write_preview

torch.set_num_threads(2)
path, name, out = sys.argv[1:4]
repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 5
loaded, classes, xtr, ytr, xv, yv = split(path)
k = len(classes)
xs, ys, _ = _synthetic(path, classes, [100] * k, loaded.card.outputs.scaling, Feedback())
i = classes.index(name); target = yv == i
hits = {"real": np.zeros(target.sum()), "real+synthetic": np.zeros(target.sum())}
wrong = {"real": [], "real+synthetic": []}
for r in range(repeats):
    for key, (x, y) in (("real", (xtr, ytr)), ("real+synthetic", (np.concatenate([xtr, xs]), np.concatenate([ytr, ys])))):
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
rows = [to_rgb8(loaded.card, xv[target][order][:16]) if len(order) else to_rgb8(loaded.card, real_tr[:1]), to_rgb8(loaded.card, real_tr)]
write_preview(out, mosaic(rows).repeat(3, 1).repeat(3, 2))
