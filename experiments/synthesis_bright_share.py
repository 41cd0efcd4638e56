"""Share of patches brighter than mid-grey, real training patches vs synthetic, per class.

The check behind `--wide-noise` (README, Synthesis): run from the repository root,
    .venv/bin/python reports/scripts/synthesis_bright_share.py [MODEL]
Uses the model card to rebuild the training patches; 128 synthetic patches per class
(noise seed 1), Heun sampler with the card's steps, at guidance 1 and 1.5.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from engine.modelfile import load_model  # noqa: E402
from engine.synthesis.datasets import patches_to_model  # noqa: E402
from engine.synthesis.diffusion import heun_sample  # noqa: E402
from engine.synthesis.training import config_from_card, prepare_patches  # noqa: E402

model = sys.argv[1] if len(sys.argv) > 1 else "resources/models/synthesize_s2_osm.satgen"
loaded = load_model(model, tasks=("synthesize",))
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
