"""The evaluation-only FID network loader (engine/devtools/fid.py): TF1 resize semantics, and that only
the pinned file is ever taken out of a wheel or loaded."""

import zipfile

import numpy as np
import pytest
import torch

from engine.devtools import fid


def test_tf_bilinear_samples_as_tf1_resize():
    # TF1 resize_bilinear (no half-pixel centres): output j reads source j * in / out, clamped at the edge
    x = torch.tensor([[0.0, 10.0], [0.0, 10.0]])[None, None]
    out = fid.tf_bilinear(x, size=4)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 5.0, 10.0, 10.0]).expand(4, 4), atol=1e-5)
    y = torch.rand(2, 3, fid.SIZE, fid.SIZE)
    assert torch.allclose(fid.tf_bilinear(y), y, atol=1e-4)  # same size: unchanged (float32 grid)


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
