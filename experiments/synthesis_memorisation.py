"""Does the synthesis model copy its training patches? Per class, the median RMS distance
(model space [-1, 1], over the 8 flips and quarter turns) from each patch to its nearest real
training patch: synthetic patches (seed 1000, the model's default guidance) vs real held-out ones.
Synthetic patches much nearer than held-out ones would mean memorisation (README, Synthesis).

Run from the repository root:
    PYTHONPATH=. .venv/bin/python experiments/synthesis_memorisation.py resources/models/synthesize_s2_osm.satgen
"""
import argparse

import numpy as np
import torch

from engine.modelfile import load_model
from engine.synthesis.datasets import patches_to_model
from engine.synthesis.synthesize import generate
from engine.synthesis.training import config_from_card, prepare_patches


def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS distance of each patch of a to its nearest patch of b in any of the 8 orientations."""
    b8 = np.concatenate([np.rot90(b, k, (2, 3)) for k in range(4)]
                        + [np.rot90(b[..., ::-1], k, (2, 3)) for k in range(4)])
    flat_a = torch.from_numpy(a.reshape(len(a), -1)).float()
    flat_b = torch.from_numpy(np.ascontiguousarray(b8).reshape(len(b8), -1)).float()
    return (torch.cdist(flat_a, flat_b).min(1).values / np.sqrt(flat_a.shape[1])).numpy()


def main(path: str) -> None:
    model = load_model(path, tasks=("synthesize",))
    patches = prepare_patches(config_from_card(model.card), warn=lambda s: None)
    scaling = model.card.outputs.scaling
    (x_tr, y_tr), (x_val, y_val) = patches.part("train"), patches.part("val")
    x_tr, x_val = patches_to_model(scaling, x_tr), patches_to_model(scaling, x_val)
    for i, c in enumerate(patches.classes):
        train = x_tr[y_tr == i]
        synthetic = generate(model, model.card.classes.index(c), 100, seed=1000)
        print(f"{c:12s} synthetic -> train {np.median(nearest(synthetic, train)):.3f}   "
              f"held-out -> train {np.median(nearest(x_val[y_val == i], train)):.3f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="resources/models/synthesize_s2_osm.satgen",
                        help="synthesis model file (default: %(default)s)")
    main(parser.parse_args().model)
