"""Do two synthesis models draw the same patch from the same noise? Per class, the RMS distance
(model space [-1, 1]) between the patches two models make from the same seed, next to the
distance between patches one model makes from different noise (the typical spread of its
patches). A ratio far below 1 means the patch is set by the noise and the data, not by the net.

Run from the repository root:
    PYTHONPATH=. .venv/bin/python experiments/synthesis_same_noise.py A.satgen B.satgen [N]
"""
import argparse

import numpy as np
import torch

from engine.modelfile import load_model
from engine.synthesis.synthesize import generate


def rms(u: np.ndarray, v: np.ndarray) -> float:
    """Mean over patches of the RMS distance between patch i of u and patch i of v."""
    return float(np.sqrt(((u - v) ** 2).mean(axis=(1, 2, 3))).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", metavar="A", help="synthesis model file")
    parser.add_argument("b", metavar="B", help="synthesis model file with the same classes")
    parser.add_argument("n", nargs="?", type=int, default=32, metavar="N", help="patches per class (default 32)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    a, b = (load_model(p, tasks=("synthesize",)) for p in (args.a, args.b))
    n = args.n
    for c in a.card.classes:
        xa = generate(a, a.card.classes.index(c), n, seed=1000, guidance=1.0)
        xb = generate(b, b.card.classes.index(c), n, seed=1000, guidance=1.0)
        same, spread = rms(xa, xb), rms(xa, np.roll(xa, 1, axis=0))
        print(f"{c:12s} same noise, two models {same:.3f}   one model, other noise {spread:.3f}   "
              f"ratio {same / spread:.2f}", flush=True)


if __name__ == "__main__":
    main()
