"""Choosing a diffusion model's default guidance from its training data alone.

Classifier-free guidance trades diversity for class typicality; the weight that
draws patches most like the data is not known before training and differs
between data sets. After training, `choose_guidance` samples `n` patches per
class at each weight of a grid and keeps the one whose patches are closest to
the real *training* patches of their class: mean per-class KID in the features
of a small classifier trained on those patches (engine.synthesis.classifier).
Held-out patches are never looked at, so scores on them stay honest.
"""

from __future__ import annotations

import numpy as np

from ..modelfile import LoadedModel
from ..progress import Feedback
from .classifier import predict, train_classifier
from .scores import kid
from .synthesize import generate

GRID = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
SEED = 2000  # apart from the evaluation's patches (seed 1000) and the seeds users try first


def pick(table: dict[float, float]) -> float:
    """The weight of lowest KID; ties within 1 % (a barely trained model scores all alike) go to the
    weight nearest 1; 1 when no weight could be scored."""
    finite = {g: v for g, v in table.items() if np.isfinite(v)}
    if not finite:
        return 1.0
    low = min(finite.values())
    return min((g for g, v in finite.items() if v <= low + 0.01 * abs(low) + 1e-12), key=lambda g: abs(g - 1.0))


def choose_guidance(loaded: LoadedModel, x: np.ndarray, y: np.ndarray, n: int = 100,
                    grid: tuple[float, ...] = GRID, classifier_steps: int = 250,
                    feedback: Feedback | None = None) -> dict:
    """x: (N, C, P, P) model-space training patches, y: labels -> {"guidance": best, ...} (module docstring)."""
    feedback = feedback or Feedback()
    k = len(loaded.card.classes)
    net = train_classifier(x, y, k, steps=classifier_steps, batch_size=32, seed=0, feedback=feedback)
    real = predict(net, x)[1]
    scored = [i for i in range(k) if (y == i).sum() >= 2]  # KID needs two patches a side
    table, done, jobs = {}, 0, len(grid) * max(1, len(scored))
    for g in grid:
        per = []
        for i in scored:
            span = (done / jobs, (done + 1) / jobs)  # one progress sweep over the whole choice
            patches = generate(loaded, i, n, seed=SEED, guidance=g, feedback=feedback, progress_span=span)
            per.append(kid(predict(net, patches)[1], real[y == i]))
            done += 1
        table[g] = float(np.mean(per)) if per else float("nan")
        feedback.info(f"guidance {g:g}: mean per-class KID to the training patches {table[g]:.4f}")
    return {"guidance": pick(table), "criterion": "lowest mean per-class KID of n patches per class against the real "
            "training patches, features of a classifier trained on them (held-out patches unused)",
            "n_per_class": n, "seed": SEED,
            "kid_by_guidance": {f"{g:g}": (v if np.isfinite(v) else None) for g, v in table.items()}}
