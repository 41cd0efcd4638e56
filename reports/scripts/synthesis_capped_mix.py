"""Augmentation with the synthetic patches capped at the real count of each class (min(100, real)):
real vs real + capped synthetic, 10 paired classifier trainings (README, Synthesis; session-5 note).

Run from the repository root:
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_capped_mix.py MODEL.satgen BASELINE.satgen
"""
import sys, numpy as np, torch
from engine.modelfile import load_model
from engine.synthesis.training import config_from_card, prepare_patches
from engine.synthesis.datasets import patches_to_model
from engine.synthesis.evaluation import _synthetic
from engine.synthesis.classifier import train_classifier, predict, accuracies
torch.set_num_threads(1)
model, baseline = sys.argv[1], sys.argv[2]
card = load_model(model, tasks=("synthesize",)).card
p = prepare_patches(config_from_card(card), warn=lambda m: None)
classes = [c for c in card.classes if c in p.classes]; sc = card.outputs.scaling; k = len(classes)
xtr, ytr = p.part("train"); xv, yv = p.part("val"); xtr, xv = patches_to_model(sc, xtr), patches_to_model(sc, xv)
have = np.bincount(ytr, minlength=k); cap = [int(min(100, h)) for h in have]
F = type("F", (), {"info": staticmethod(lambda m: None), "check_cancelled": staticmethod(lambda: None)})()
sets = {}
for name, path in (("model", model), ("cdcgan", baseline)):
    xs, ys, _ = _synthetic(path, classes, cap, sc, F)
    sets[name] = (xs, ys)
res = {"real": [], "model": [], "cdcgan": []}
for r in range(10):
    for name in res:
        x, y = (xtr, ytr) if name == "real" else (np.concatenate([xtr, sets[name][0]]), np.concatenate([ytr, sets[name][1]]))
        res[name].append(accuracies(predict(train_classifier(x, y, k, steps=250, batch_size=32, seed=r), xv)[0], yv, classes)["balanced_accuracy"])
    print(r, {k_: round(v[-1], 3) for k_, v in res.items()}, flush=True)
print("cap", dict(zip(classes, cap)))
for name in ("model", "cdcgan"):
    d = np.subtract(res[name], res["real"])
    print(name, "real", round(np.mean(res["real"]), 4), "plus_capped", round(np.mean(res[name]), 4), "gain", round(d.mean(), 4), "+-", round(d.std(ddof=1) / np.sqrt(len(d)), 4))
