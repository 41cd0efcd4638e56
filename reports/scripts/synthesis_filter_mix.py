"""Augmentation with synthetic patches filtered by a critic: a classifier trained on the real
training patches only (seed 999, apart from the judges' seeds 0-9) keeps a synthetic patch when it
assigns it to the requested class with probability >= THRESH. real vs real + filtered (100 per
class and top-up), 10 paired classifier trainings (REPEATS=n to change; ACCEPT_ONLY=1: acceptance
shares only).
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_filter_mix.py MODEL BASELINE [THRESH]
"""
import os, sys, numpy as np, torch
from engine.modelfile import load_model
from engine.synthesis.training import config_from_card, prepare_patches
from engine.synthesis.datasets import patches_to_model
from engine.synthesis.evaluation import _synthetic, _first
from engine.synthesis.classifier import train_classifier, predict, accuracies
torch.set_num_threads(1)
model, baseline = sys.argv[1], sys.argv[2]
thresh = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
card = load_model(model, tasks=("synthesize",)).card
p = prepare_patches(config_from_card(card), warn=lambda m: None)
classes = [c for c in card.classes if c in p.classes]; sc = card.outputs.scaling; k = len(classes)
xtr, ytr = p.part("train"); xv, yv = p.part("val"); xtr, xv = patches_to_model(sc, xtr), patches_to_model(sc, xv)
have = np.bincount(ytr, minlength=k); top = [int(have.max() - h) for h in have]
want = [max(100, t) for t in top]
F = type("F", (), {"info": staticmethod(lambda m: None), "check_cancelled": staticmethod(lambda: None)})()
critic = train_classifier(xtr, ytr, k, steps=250, batch_size=32, seed=999)
def probs(x):
    with torch.no_grad():
        return torch.softmax(critic(torch.from_numpy(x).float()), 1).numpy()
sets = {}
for name, path in (("model", model), ("cdcgan", baseline)):
    xs, ys, _ = _synthetic(path, classes, [3 * w for w in want], sc, F)
    pr = probs(xs)[np.arange(len(ys)), ys]
    keep = pr >= thresh
    print(name, "accepted share per class", {c: round(float(keep[ys == i].mean()), 3) for i, c in enumerate(classes)}, flush=True)
    xs, ys = xs[keep], ys[keep]
    got = np.bincount(ys, minlength=k)
    eq = [int(min(100, g)) for g in got]; tu = [int(min(t, g)) for t, g in zip(top, got)]
    print(name, "kept", dict(zip(classes, got.tolist())), "equal", eq, "topup", tu, flush=True)
    sets[name] = {"plus": _first(xs, ys, eq), "topup": _first(xs, ys, tu)}
if os.environ.get("ACCEPT_ONLY"):
    sys.exit(0)
keys = ["real"] + [f"{w}_{n}" for n in ("model", "cdcgan") for w in ("plus", "topup")]
res = {key: [] for key in keys}
rec = {key: [] for key in keys}
for r in range(int(os.environ.get("REPEATS", 10))):
    for key in keys:
        if key == "real":
            x, y = xtr, ytr
        else:
            w, n = key.split("_"); xs, ys = sets[n][w]; x, y = np.concatenate([xtr, xs]), np.concatenate([ytr, ys])
        a = accuracies(predict(train_classifier(x, y, k, steps=250, batch_size=32, seed=r), xv)[0], yv, classes)
        res[key].append(a["balanced_accuracy"]); rec[key].append(a["recall"])
    print(r, {k_: round(v[-1], 3) for k_, v in res.items()}, flush=True)
for key in keys[1:]:
    d = np.subtract(res[key], res["real"])
    print(key, "real", round(np.mean(res["real"]), 4), "aug", round(np.mean(res[key]), 4), "gain", round(d.mean() * 100, 2), "+-", round(d.std(ddof=1) / np.sqrt(len(d)) * 100, 2), "points")
for key in keys:
    print(key, {c: round(float(np.mean([r_[c] for r_ in rec[key]])), 3) for c in rec[key][0]})
