"""Augmentation with the synthetic patches capped at the real count of each class (min(100, real)):
real vs real + capped synthetic, 10 paired classifier trainings (README, Synthesis; session-5 note).

Run from the repository root:
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_capped_mix.py MODEL.satgen BASELINE.satgen
"""
import sys

import numpy as np
import torch
from synthesis_common import paired, split

from engine.progress import Feedback
from engine.synthesis.evaluation import _synthetic

torch.set_num_threads(1)
model, baseline = sys.argv[1], sys.argv[2]
loaded, classes, xtr, ytr, xv, yv = split(model)
cap = [int(min(100, h)) for h in np.bincount(ytr, minlength=len(classes))]
print("cap", dict(zip(classes, cap)))
sets = {f"capped_{name}": _synthetic(path, classes, cap, loaded.card.outputs.scaling, Feedback())[:2]
        for name, path in (("model", model), ("cdcgan", baseline))}
paired(xtr, ytr, xv, yv, classes, sets)
