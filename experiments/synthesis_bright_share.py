"""Share of patches brighter than mid-grey, real training patches vs synthetic, per class.

The check behind `--wide-noise` (README, Synthesis): run from the repository root,
    PYTHONPATH=. .venv/bin/python experiments/synthesis_bright_share.py [MODEL]
Uses the model card to rebuild the training patches; 128 synthetic patches per class
(noise seed 1), Heun sampler with the card's steps, at guidance 1 and 1.5.
"""

import argparse

import torch

from engine.modelfile import load_model
from engine.synthesis.datasets import patches_to_model
from engine.synthesis.diffusion import heun_sample
from engine.synthesis.training import config_from_card, prepare_patches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="resources/models/synthesize_s2_osm.satgen",
                        help="synthesis model file (default: %(default)s)")
    args = parser.parse_args(argv)
    loaded = load_model(args.model, tasks=("synthesize",))
    card, net = loaded.card, loaded.module.float().eval()
    patches = prepare_patches(config_from_card(card), warn=lambda s: None)
    x, y = patches.part("train")
    scaling = card.outputs.scaling
    print(f"{'class':12s} {'real':>6s} {'g=1':>6s} {'g=1.5':>6s}   (share of patches whose mean is above mid-grey)")
    for i, name in enumerate(card.classes):
        real = patches_to_model(scaling, x[y == i])
        row = [(real.mean((1, 2, 3)) > 0).mean()]
        for guidance in (1.0, 1.5):
            noise = torch.randn(128, *real.shape[1:], generator=torch.Generator().manual_seed(1))
            syn = heun_sample(net, noise, torch.full((128,), i), steps=18, guidance=guidance).clamp(-1, 1).numpy()
            row.append((syn.mean((1, 2, 3)) > 0).mean())
        print(f"{name:12s} " + " ".join(f"{v:6.2f}" for v in row))


if __name__ == "__main__":
    main()
