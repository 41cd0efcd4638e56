"""Do two synthesis models draw the same patch from the same noise? Per class, the RMS distance
(model space [-1, 1]) between the patches two models make from the same seed, next to the
distance between patches one model makes from different noise (the typical spread of its
patches). A ratio far below 1 means the patch is set by the noise and the data, not by the net.

Run from the repository root:
    PYTHONPATH=. .venv/bin/python reports/scripts/synthesis_same_noise.py A.satgen B.satgen [N]
"""
import sys

import numpy as np
import torch

from engine.modelfile import load_model
from engine.synthesis.synthesize import generate

torch.set_num_threads(1)
a, b = (load_model(p, tasks=("synthesize",)) for p in sys.argv[1:3])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 32
rms = lambda u, v: float(np.sqrt(((u - v) ** 2).mean(axis=(1, 2, 3))).mean())  # noqa: E731
for c in a.card.classes:
    xa = generate(a, a.card.classes.index(c), n, seed=1000, guidance=1.0)
    xb = generate(b, b.card.classes.index(c), n, seed=1000, guidance=1.0)
    same, spread = rms(xa, xb), rms(xa, np.roll(xa, 1, axis=0))
    print(f"{c:12s} same noise, two models {same:.3f}   one model, other noise {spread:.3f}   ratio {same / spread:.2f}",
          flush=True)
