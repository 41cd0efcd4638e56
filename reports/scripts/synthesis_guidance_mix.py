"""Augmentation gain vs sampling guidance: real vs real + synthetic (100 per class, and top-up) at
each guidance weight, 10 paired classifier trainings (seeds 0-9; REPEATS=n to change).
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_guidance_mix.py MODEL G1 [G2 ...]
"""
import os, sys, numpy as np, torch
from engine.modelfile import load_model
from engine.synthesis.training import config_from_card, prepare_patches
from engine.synthesis.datasets import patches_to_model
from engine.synthesis.evaluation import _first
from engine.synthesis.synthesize import generate
from engine.synthesis.classifier import train_classifier, predict, accuracies
torch.set_num_threads(1)
model, gs = sys.argv[1], [float(g) for g in sys.argv[2:]]
loaded = load_model(model, tasks=("synthesize",)); card = loaded.card
p = prepare_patches(config_from_card(card), warn=lambda m: None)
classes = [c for c in card.classes if c in p.classes]; sc = card.outputs.scaling; k = len(classes)
xtr, ytr = p.part("train"); xv, yv = p.part("val"); xtr, xv = patches_to_model(sc, xtr), patches_to_model(sc, xv)
have = np.bincount(ytr, minlength=k); top = [int(have.max() - h) for h in have]; eq = [100] * k
sets = {}
for g in gs:
    xs = [generate(loaded, card.classes.index(c), max(100, t), seed=1000, guidance=g) for c, t in zip(classes, top)]
    ys = [np.full(len(x), i, np.int64) for i, x in enumerate(xs)]
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    sets[f"plus_g{g:g}"] = _first(xs, ys, eq); sets[f"topup_g{g:g}"] = _first(xs, ys, top)
    print("generated", g, flush=True)
keys = ["real"] + list(sets)
res = {key: [] for key in keys}; rec = {key: [] for key in keys}
for r in range(int(os.environ.get("REPEATS", 10))):
    for key in keys:
        x, y = (xtr, ytr) if key == "real" else (np.concatenate([xtr, sets[key][0]]), np.concatenate([ytr, sets[key][1]]))
        a = accuracies(predict(train_classifier(x, y, k, steps=250, batch_size=32, seed=r), xv)[0], yv, classes)
        res[key].append(a["balanced_accuracy"]); rec[key].append(a["recall"])
    print(r, {k_: round(v[-1], 3) for k_, v in res.items()}, flush=True)
for key in keys[1:]:
    d = np.subtract(res[key], res["real"])
    print(key, "real", round(np.mean(res["real"]), 4), "aug", round(np.mean(res[key]), 4), "gain", round(d.mean() * 100, 2), "+-", round(d.std(ddof=1) / np.sqrt(len(d)) * 100, 2), "points")
for key in keys:
    print(key, {c: round(float(np.mean([r_[c] for r_ in rec[key]])), 3) for c in rec[key][0]})
