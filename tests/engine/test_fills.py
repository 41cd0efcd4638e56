"""The fixed interpolations under every cloud fill: harmonic (membrane) fill, push-pull,
and the fill from a reference date; checked on cases with known answers."""

import numpy as np
import pytest
import torch

from engine.inpainting.fills import MIN_FIT_PIXELS, harmonic_fill, push_pull, reference_fill


def _hole(size=64, box=(16, 48, 20, 52)):
    known = torch.ones(1, 1, size, size, dtype=torch.float64)
    r0, r1, c0, c1 = box
    known[..., r0:r1, c0:c1] = 0
    return known


def _ramp(size=64):
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    return torch.stack([0.02 * xx + 0.01 * yy, -0.015 * yy + 0.3])[None]  # (1, 2, H, W)


def test_harmonic_fill_keeps_known_pixels_and_reproduces_a_plane():
    """A plane is harmonic: filling a hole in it must give the plane back."""
    x, known = _ramp(), _hole()
    out = harmonic_fill(x * known, known)
    assert torch.equal(out[known.expand_as(x) > 0], x[known.expand_as(x) > 0])
    assert (out - x).abs().max() < 0.02  # 32 px hole, values span 1.9: within 1 %
    assert (push_pull(x, known) - x).abs().max() > 2 * (out - x).abs().max()  # the pyramid blends, less exact


def test_harmonic_fill_of_a_tile_without_known_pixels_is_zero():
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(harmonic_fill(x, torch.zeros(2, 1, 32, 32)), torch.zeros_like(x))


def test_reference_fill_recovers_a_linear_change_between_dates():
    """This date = 1.7 x reference - 0.2 + a smooth drift: the hole is filled exactly (up to the drift's fill)."""
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 2, 64, 64, generator=g, dtype=torch.float64)  # texture no interpolation could guess
    known = _hole()
    x = 1.7 * ref - 0.2
    ok = torch.ones_like(known)
    out = reference_fill(x * known, known, ref, ok)
    assert (out - x).abs().max() < 1e-6
    x = 1.7 * ref - 0.2 + _ramp()  # a smooth difference on top: the harmonic residual carries it into the hole
    out = reference_fill(x * known, known, ref, ok)
    hole = known.expand_as(x) == 0
    err_ref = (out - x)[hole].abs().mean()
    err_interp = (harmonic_fill(x * known, known) - x)[hole].abs().mean()
    assert err_ref < 0.1 * err_interp


def test_reference_fill_with_few_common_pixels_uses_the_mean_difference():
    ref = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    x = 3.0 * ref + 1.0
    known = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    known[..., :4, :4] = 1  # 16 < MIN_FIT_PIXELS pixels: no gain is fitted
    assert 16 < MIN_FIT_PIXELS
    out = reference_fill(x * known, known, ref, torch.ones_like(known))
    # gain 1: the fill is the reference plus a smooth difference, none of the 3x texture a fit would give
    difference = (out - ref)[..., 8:, 8:]
    assert difference.std() < 0.1 * (2 * ref[..., 8:, 8:]).std()
    assert abs(difference.mean() - (x - ref)[..., :4, :4].mean()) < 0.2


@pytest.mark.parametrize("fill", ["harmonic", "push_pull"])
def test_an_untrained_harmonic_model_is_the_fill_itself(fill):
    from engine.models.inpaint_unet import InpaintUNet

    torch.manual_seed(0)
    model = InpaintUNet(3, 2, ngf=4, depth=3, fill=fill).eval()
    x, known = _ramp(32).float(), _hole(32, (8, 24, 8, 24)).float()
    with torch.no_grad():
        out = model(torch.cat([x * known, 1 - known], dim=1))
    same = torch.allclose(out, harmonic_fill(x * known, known), atol=1e-6)
    assert same == (fill == "harmonic")  # new models start at the fill; push-pull ones (older) did not
    assert np.isfinite(out.numpy()).all()
