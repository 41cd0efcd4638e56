"""Augmentation gain vs sampling guidance: real vs real + synthetic (100 per class, and top-up) at
each guidance weight, 10 paired classifier trainings (seeds 0-9; REPEATS=n to change).
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_guidance_mix.py MODEL G1 [G2 ...]
"""
import sys

import numpy as np
import torch
from synthesis_common import paired, split

from engine.synthesis.evaluation import _first, top_up_counts
from engine.synthesis.synthesize import generate

torch.set_num_threads(1)
model, gs = sys.argv[1], [float(g) for g in sys.argv[2:]]
loaded, classes, xtr, ytr, xv, yv = split(model)
card = loaded.card
k = len(classes)
top = top_up_counts(ytr, k)
sets = {}
for g in gs:
    xs = [generate(loaded, card.classes.index(c), max(100, t), seed=1000, guidance=g) for c, t in zip(classes, top)]
    ys = np.concatenate([np.full(len(x), i, np.int64) for i, x in enumerate(xs)])
    xs = np.concatenate(xs)
    sets[f"plus_g{g:g}"], sets[f"topup_g{g:g}"] = _first(xs, ys, [100] * k), _first(xs, ys, top)
    print("generated", g, flush=True)
paired(xtr, ytr, xv, yv, classes, sets)
