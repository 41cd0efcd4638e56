"""The fixed interpolations under every cloud fill: harmonic (membrane) fill, push-pull,
and the fill from reference dates; checked on cases with known answers."""

import numpy as np
import pytest
import torch

from engine.inpainting.fills import Z80, box_sum, combine_references, harmonic_fill, push_pull


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


def _fill(x, known, ref, ok=None, **kw):
    """combine_references with one reference: (filled, variance)."""
    ok = torch.ones_like(known) if ok is None else ok
    filled, variance, _, _ = combine_references(x * known, known, ref[:, None], ok[:, None], **kw)
    return filled, variance


def test_a_reference_fill_recovers_a_linear_change_between_dates():
    """This date = 1.7 x reference - 0.2 + a smooth drift: the hole is filled exactly (up to the drift's fill)."""
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 2, 64, 64, generator=g, dtype=torch.float64)  # texture no interpolation could guess
    known = _hole()
    x = 1.7 * ref - 0.2
    out, _ = _fill(x, known, ref)
    assert (out - x).abs().max() < 1e-6
    x = 1.7 * ref - 0.2 + _ramp()  # a smooth difference on top: the harmonic residual carries it into the hole
    out, _ = _fill(x, known, ref)
    hole = known.expand_as(x) == 0
    err_ref = (out - x)[hole].abs().mean()
    err_interp = (harmonic_fill(x * known, known) - x)[hole].abs().mean()
    assert err_ref < 0.1 * err_interp


def test_the_fit_is_local_one_gain_per_land_cover_not_per_tile():
    """Left half of the tile (fields) brightened x2, right half (forest) darkened x0.5 since the reference:
    a hole in each half is filled with its own half's gain, where one gain per tile would miss both."""
    g = torch.Generator().manual_seed(1)
    ref = 0.2 + 0.5 * torch.rand(1, 1, 96, 96, generator=g, dtype=torch.float64)
    gain = torch.ones_like(ref)
    gain[..., :48], gain[..., 48:] = 2.0, 0.5
    x = gain * ref
    known = torch.ones(1, 1, 96, 96, dtype=torch.float64)
    known[..., 40:56, 12:28] = 0
    known[..., 40:56, 68:84] = 0
    out, _ = _fill(x, known, ref)
    hole = known.expand_as(x) == 0
    assert (out - x)[hole].abs().max() < 0.05 * x[hole].abs().mean()


def test_the_guard_falls_back_to_the_raw_reference_where_the_fit_is_poor():
    """Unchanged ground (this date = the reference) under and around the cloud, a field that doubled its
    brightness a few pixels away: the fit's windows straddle both and bend the fill, pasting is exact. The
    guard scores both on held-out clear pixels around the cloud and must choose pasting."""
    g = torch.Generator().manual_seed(2)
    ref = 0.2 + 0.3 * torch.rand(1, 2, 64, 64, generator=g, dtype=torch.float64)
    x = ref.clone()
    x[..., 42:] = 2 * ref[..., 42:]  # the changed field, right of column 42
    known = _hole(box=(24, 40, 20, 36))
    guarded, _ = _fill(x, known, ref)
    unguarded, _ = _fill(x, known, ref, guard=False)
    hole = known.expand_as(x) == 0
    assert (unguarded - x)[hole].abs().mean() > 1e-3
    assert (guarded - x)[hole].abs().max() < 1e-9  # pasted: exact


def test_each_pixel_is_filled_from_the_references_clear_there():
    """Two references: the first is clear only on the left, the second only on the right; each half of the
    hole takes its values from the one clear there, and the shares say which."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64)
    known = _hole()
    ok1, ok2 = torch.zeros_like(known), torch.zeros_like(known)
    ok1[..., :32], ok2[..., 32:] = 1, 1
    noise = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64)
    ref1, ref2 = torch.where(ok1 > 0, x, noise), torch.where(ok2 > 0, 2 * x + 0.1, noise)
    refs, oks = torch.stack([ref1, ref2], 1), torch.stack([ok1, ok2], 1)
    for combine in ("weighted", "nearest"):
        filled, variance, shares, any_ok = combine_references(x * known, known, refs, oks, combine=combine)
        hole = known[0, 0] == 0
        assert (filled - x)[0, 0][hole].abs().max() < 1e-6
        assert torch.equal(shares[0, 0][hole] > 0.5, (ok1[0, 0] > 0)[hole])
        assert bool((any_ok > 0).all()) and bool((variance >= 0).all())


def test_nearest_takes_the_first_clear_reference_and_weighted_blends():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64)
    known = _hole()
    noisy = [x + 0.05 * torch.randn(1, 1, 64, 64, generator=g, dtype=torch.float64) for _ in range(3)]
    refs, oks = torch.stack(noisy, 1), torch.ones(1, 3, 1, 64, 64, dtype=torch.float64)
    near, _, s_near, _ = combine_references(x * known, known, refs, oks, combine="nearest")
    mixed, var, s_mix, _ = combine_references(x * known, known, refs, oks)
    hole = known[0, 0] == 0
    assert bool((s_near[0, 0][hole] == 1).all())
    assert (mixed - x)[0, 0][hole].pow(2).mean() < 0.7 * (near - x)[0, 0][hole].pow(2).mean()  # 3 dates average noise
    assert 0.2 < float(s_mix[0, 0][hole].mean()) < 0.5
    # the stated spread is the size of the error: the 80 % interval holds most true values, not all or none
    inside = ((mixed - x).abs() <= Z80 * var.sqrt())[0, 0][hole].double().mean()
    assert 0.6 < float(inside) < 0.97


def test_box_sum_is_the_window_sum():
    t = torch.arange(30.0).reshape(1, 1, 5, 6)
    out = box_sum(t, 1)
    assert out[0, 0, 2, 2] == t[0, 0, 1:4, 1:4].sum()
    assert out[0, 0, 0, 0] == t[0, 0, :2, :2].sum()


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
