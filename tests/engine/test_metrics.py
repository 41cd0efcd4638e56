"""Map metrics on known cases: pixel accuracy within a threshold, legend decoding
and mIoU, PSNR, SSIM (checked against a direct implementation) and the trivial baseline."""

import math

import numpy as np
import pytest

from engine import metrics
from engine.metrics import (
    acc_delta,
    decode_legend,
    gaussian_window,
    legend_colors,
    map_metrics,
    miou,
    psnr,
    ssim,
    trivial_prediction,
)


def _image(h=32, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8)


def test_acc_delta_known_cases():
    a = np.full((3, 10, 12), 100, np.uint8)
    assert acc_delta(a, a, 5) == 1.0
    b = a.copy()
    b[1] += 7  # one channel off by 7
    assert acc_delta(b, a, 5) == 0.0 and acc_delta(b, a, 10) == 1.0
    assert acc_delta(a - 7, a, 5) == 0.0  # symmetric in the sign, no uint8 wrap-around
    b[:, :, :3] = a[:, :, :3]
    assert acc_delta(b, a, 5) == pytest.approx(3 / 12)
    valid = np.zeros((10, 12), bool)
    valid[:, :6] = True
    assert acc_delta(b, a, 5, valid) == pytest.approx(0.5)
    assert math.isnan(acc_delta(b, a, 5, np.zeros((10, 12), bool)))


def test_decode_legend_picks_the_nearest_colour_in_chunks():
    colors = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    rgb = np.zeros((3, 600, 520), np.uint8)  # more pixels than one decoding chunk
    assert rgb[0].size > metrics.DECODE_CHUNK
    rgb[0, 100:] = 200  # near red
    rgb[1, 400:, 300:] = 140  # (200, 140, 0): dist^2 to red 22625, to green 53225, to black 59600
    rgb[:, 500:, :] = np.array([10, 250, 20], np.uint8)[:, None, None]  # near green
    idx = decode_legend(rgb, colors)
    assert idx.shape == (600, 520)
    assert (idx[:100] == 0).all() and (idx[100:500] == 1).all() and (idx[500:] == 2).all()


def test_miou_known_cases():
    legend = {"forest": [0, 100, 0], "water": [0, 0, 255], "urban": [200, 0, 0]}
    target = np.zeros((3, 4, 4), np.uint8)
    target[:] = np.array([0, 100, 0], np.uint8)[:, None, None]
    target[:, :, 2:] = np.array([0, 0, 255], np.uint8)[:, None, None]  # left forest, right water
    assert miou(target, target, legend) == (1.0, {"forest": 1.0, "water": 1.0})
    pred = target.copy()
    pred[:, :, 1] = np.array([0, 0, 250], np.uint8)[:, None]  # one forest column predicted (near) water
    pred[:, 0, 0] = np.array([190, 5, 0], np.uint8)  # one pixel urban, which the target lacks
    mean, per = miou(pred, target, legend)
    # forest: inter 3 (col 0 minus the urban pixel), union 8; water: inter 8, union 12; urban: 0 / 1
    assert per == pytest.approx({"forest": 3 / 8, "water": 8 / 12, "urban": 0.0})
    assert mean == pytest.approx((3 / 8 + 8 / 12) / 2)  # urban is not in the target: not in the mean
    valid = np.ones((4, 4), bool)
    valid[:, 1] = False
    valid[0, 0] = False
    assert miou(pred, target, legend, valid)[0] == 1.0
    mean_list, per_list = miou(target, target, list(legend.values()))
    assert mean_list == 1.0 and set(per_list) == {"0", "1"}


def test_legend_json_from_render_map_target_is_understood():
    legend = {"categories": [{"label": "forest", "color": [0, 100, 0]}, {"label": "water", "color": [0, 0, 255]}],
              "background": [240, 240, 240]}
    labels, table = legend_colors(legend)
    assert labels == ["forest", "water", "background"] and table.tolist()[2] == [240, 240, 240]


def test_psnr_known_cases():
    a = _image()
    assert psnr(a, a) == float("inf")
    b = a.astype(np.int16) + 1
    b[b > 255] = 254
    b = b.astype(np.uint8)
    assert psnr(b, a) == pytest.approx(20 * math.log10(255), abs=1e-9)  # MSE 1
    c = a.copy()
    c[:, :, 20:] = 255 - c[:, :, 20:]
    valid = np.zeros(a.shape[1:], bool)
    valid[:, :20] = True
    assert psnr(c, a, valid=valid) == float("inf")
    assert psnr(c, a) < 20


def _ssim_direct(x, y, data_range=255.0):
    """Textbook SSIM: for every 11 x 11 window inside the image, the Gaussian-weighted
    local statistics, no separability; mean over windows and channels."""
    w2 = np.outer(gaussian_window(), gaussian_window())
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for ch in range(x.shape[0]):
        a, b = x[ch].astype(np.float64), y[ch].astype(np.float64)
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
                ma, mb = (w2 * pa).sum(), (w2 * pb).sum()
                va, vb = (w2 * (pa - ma) ** 2).sum(), (w2 * (pb - mb) ** 2).sum()
                cov = (w2 * (pa - ma) * (pb - mb)).sum()
                vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_a_direct_implementation():
    a, b = _image(24, 20, 1), _image(24, 20, 2)
    smooth = ((a.astype(np.int32) + np.roll(a, 1, axis=2)) // 2).astype(np.uint8)
    for x, y in ((a, b), (a, smooth)):
        assert ssim(x, y) == pytest.approx(_ssim_direct(x, y), abs=1e-6)


def test_ssim_properties():
    a = _image(48, 48, 3)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (2, 10, 40):
        noisy = np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(noisy, a))
        assert ssim(noisy, a) == pytest.approx(ssim(a, noisy), abs=1e-12)  # symmetric
    assert 1.0 > scores[0] > scores[1] > scores[2]
    # constant images: SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1), by hand
    x = np.full((3, 16, 16), 100, np.uint8)
    y = np.full((3, 16, 16), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(x, y) == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1), abs=1e-9)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(x[:, :8], y[:, :8])


def test_trivial_prediction_is_the_most_frequent_valid_colour():
    target = np.zeros((3, 6, 6), np.uint8)
    target[:, :, :4] = np.array([10, 20, 30], np.uint8)[:, None, None]  # 24 px
    target[:, :, 4:] = np.array([200, 100, 0], np.uint8)[:, None, None]  # 12 px
    pred = trivial_prediction(target)
    assert pred.shape == target.shape and pred.dtype == np.uint8
    assert (pred == np.array([10, 20, 30], np.uint8)[:, None, None]).all()
    valid = np.zeros((6, 6), bool)
    valid[:, 3:] = True  # 6 px of the first colour, 12 of the second
    assert tuple(trivial_prediction(target, valid)[:, 0, 0]) == (200, 100, 0)
    assert acc_delta(trivial_prediction(target), target, 5) == pytest.approx(24 / 36)


def test_map_metrics_bundle():
    a = _image(32, 32, 4)
    out = map_metrics(a, a, legend={"x": [0, 0, 0], "y": [255, 255, 255]})
    assert out == {"acc_delta5": 1.0, "acc_delta10": 1.0, "psnr_db": float("inf"), "ssim": pytest.approx(1.0),
                   "miou": 1.0}


def test_checkerboard_measures_a_periodic_pattern_against_the_spectrum_around_it():
    from engine.metrics import checkerboard, grid_contrast

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:192] / 40.0
    smooth = np.stack([np.sin(xx + k) * np.cos(yy) for k in range(3)]) * 80 + 128 + rng.normal(0, 2, (3, 128, 192))
    checker = smooth + 15 * ((np.indices((128, 192)).sum(0) % 2) - 0.5)
    assert checkerboard(smooth, smooth) == pytest.approx(1.0) and 0.5 < grid_contrast(smooth) < 2
    assert checkerboard(checker, smooth) > 10 and grid_contrast(checker) > 10
    with pytest.raises(ValueError, match="smaller than one"):
        grid_contrast(smooth[:, :32], block=64)


def test_resize_upsampling_leaves_no_checkerboard_where_transposed_convolutions_do():
    import torch

    from engine.metrics import grid_contrast
    from engine.models.unet import UNet

    yy, xx = np.mgrid[0:128, 0:128] / 30.0
    x = torch.from_numpy(np.stack([np.sin(xx + k) * np.cos(yy) for k in range(3)]).astype(np.float32))[None]
    shares = {}
    for upsample in ("transpose", "resize"):
        torch.manual_seed(0)
        net = UNet(3, 3, ngf=8, depth=5, upsample=upsample).eval()
        with torch.inference_mode():
            shares[upsample] = grid_contrast(net(x)[0].numpy())
    assert shares["transpose"] > 5 * shares["resize"]
