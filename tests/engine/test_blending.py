"""The tile arithmetic beside the model (blending.DeviceStage) against the host's (blending.HostBlend):
the same float32 operations in the same order, so on one device the same pixels, bit for bit. Run
here on the CPU (torch's CPU device stands in for the GPU); on a CUDA GPU the same comparison."""

import numpy as np
import pytest
import rasterio
import torch

from engine.blending import DeviceStage, on_device
from engine.errors import InputError
from engine.pipeline import RunStats, TileOptions, apply_model, run_tiles
from engine.progress import Feedback
from engine.scaling import BandScaling, cast_to_dtype
from engine.windows import TileGrid, reflect_indices
from helpers import make_inpaint_model, make_model, smooth_image, write_raster

CUDA = torch.cuda.is_available()


def _tiled(path, data, nodata):
    return write_raster(path, data, nodata=nodata, tiled=True, blockxsize=32, blockysize=32)


def _apply_both(tmp_path, data, nodata, model, device="cpu", **kwargs):
    raster = _tiled(tmp_path / "in.tif", data, nodata)
    found = {}
    for blend in ("host", "device"):
        out = tmp_path / f"out_{blend}.tif"
        apply_model(model, raster, out, TileOptions(device=device, batch_size=3, blend=blend), **kwargs)
        with rasterio.open(out) as dst:
            found[blend] = (dst.read(), dst.read_masks(), dst.profile)
    return found


@pytest.mark.parametrize("in_dtype,out_dtype", [("uint16", "uint8"), ("uint16", "int16"), ("float32", "float32"),
                                                ("uint16", "uint16"), ("int16", "int32"), ("uint32", "uint16")])
def test_device_blending_writes_the_hosts_pixels(tmp_path, in_dtype, out_dtype):
    data = smooth_image(4, 150, 300, dtype=in_dtype if in_dtype != "float32" else "uint16")
    if in_dtype == "float32":
        data = data.astype(np.float32) / 4000
    elif in_dtype == "int16":
        data = (data // 2).astype(np.int16) - 500
    elif in_dtype == "uint32":  # with values past the signed type's range, which travel as negative int32
        data = data.astype(np.uint32)
        data[:, 60:64, 60:64] = 4_000_000_000
    if in_dtype == "uint16":
        data[:, 60:64, 60:64] = 65000  # past int16's range
    data[:, 40:45, 10:200] = 0  # nodata across several tiles
    data[:, 100:150, 0:80] = 0  # whole tiles of nodata: skipped
    model = make_model(tmp_path / "m.satgen", in_bands=4, out_bands=3, tile=64, overlap=16, dtype=in_dtype,
                       out_dtype=out_dtype)
    found = _apply_both(tmp_path, data, 0, model)
    (host, host_mask, host_profile), (dev, dev_mask, dev_profile) = found["host"], found["device"]
    assert host_profile == dev_profile and host.dtype == np.dtype(out_dtype)
    assert (host_mask == dev_mask).all() and (host_mask[:, 40:45, 10:200] == 0).all()
    np.testing.assert_array_equal(dev, host)
    assert len(np.unique(host)) > 10  # a real picture, not a constant


def test_device_blending_hands_model_values_to_a_post_process(tmp_path):
    """A post-process (translate's snapping to the legend) gets the blended values on the host, as ever."""
    data = smooth_image(3, 100, 140)
    model = make_model(tmp_path / "m.satgen", in_bands=3, out_bands=3, tile=32, overlap=8)

    def coarse(card):
        return lambda values: np.floor(values / 64) * 64  # raster units in, raster units out

    found = _apply_both(tmp_path, data, None, model, postprocess=coarse)
    np.testing.assert_array_equal(found["device"][0], found["host"][0])
    assert set(np.unique(found["host"][0])) <= {0, 64, 128, 192}


@pytest.mark.parametrize("scale,width", [(2, 90), (3, 700)])
def test_run_tiles_sums_the_same_on_the_device_at_any_scale(scale, width):
    """run_tiles with a stage that holds no stretch: model-space values, at output scales 2 and 3 (whose
    2048 px column chunks end inside an input pixel: 700 px make 2100), with the valid pixels of a strip
    that lacks some."""
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2, 70, width)).astype(np.float32)
    valid = np.ones((70, width), bool)
    valid[10:20, 5:60] = False
    valid[30:33, 600:690] = False
    grid = TileGrid(70, width, 16, 4)

    def source(r0, r1, c0, c1):
        rows, cols = reflect_indices(r0, r1, 70), reflect_indices(c0, c1, width)
        return data[np.ix_(range(2), rows, cols)], valid[np.ix_(rows, cols)], None

    class Up(torch.nn.Module):
        def forward(self, x):
            return torch.tanh(x).repeat_interleave(scale, 2).repeat_interleave(scale, 3) * 0.9

    found = {}
    for name in ("host", "device"):
        rows = []

        def sink(n, chunks, rows=rows):
            rows.append(np.concatenate([np.where(v, values, np.nan) for values, v, _ in chunks], axis=2))

        module = Up()

        def predict(x, module=module):
            return module(torch.from_numpy(x)).numpy()

        stage = DeviceStage(module, torch.device("cpu")) if name == "device" else None
        if stage is None:  # the host path zeroes invalid pixels in its source; so must this one
            def source_host(r0, r1, c0, c1):
                x, v, needs = source(r0, r1, c0, c1)
                return np.where(v, x, 0).astype(np.float32), v, needs
            run_tiles(grid, scale, 2, source_host, predict, sink, 3, Feedback(), RunStats())
        else:
            run_tiles(grid, scale, 2, source, None, sink, 3, Feedback(), RunStats(), stage=stage)
        found[name] = np.concatenate(rows, axis=1)
    assert found["host"].shape == (2, 70 * scale, width * scale)
    np.testing.assert_array_equal(found["device"], found["host"])
    expected = valid.repeat(scale, 0).repeat(scale, 1)
    assert (np.isnan(found["host"][0]) == ~expected).all()


def test_the_output_cast_rounds_and_clips_as_the_host():
    values = torch.tensor([[[-3.2, -0.5, 0.5, 1.5, 2.5, 254.5, 255.5, 300.0, 65535.7]]], dtype=torch.float32)
    scaling = BandScaling((0.0,), (2.0,))  # model value v -> v + 1: the cast is what is left to compare
    for dtype in ("uint8", "int8", "uint16", "int16", "int32"):
        stage = DeviceStage(torch.nn.Identity(), torch.device("cpu"), out_scaling=scaling, out_dtype=dtype)
        host = cast_to_dtype(scaling.from_model(values.numpy().copy()), dtype)
        got = stage._to_output(values.clone()).numpy()
        np.testing.assert_array_equal(got.astype(dtype) if got.dtype != np.dtype(dtype) else got, host)


def test_blend_choice():
    assert not on_device("auto", torch.device("cpu"))
    assert on_device("auto", torch.device("cuda", 0))
    assert on_device("device", torch.device("cpu")) and not on_device("host", torch.device("cuda", 0))
    with pytest.raises(InputError, match="blend must be one of auto, host, device"):
        on_device("gpu", torch.device("cpu"))


def test_inpainting_refuses_device_blending(tmp_path):
    from engine.inpainting.apply import MaskOptions, inpaint

    raster = _tiled(tmp_path / "in.tif", smooth_image(4, 64, 64), None)
    mask = _tiled(tmp_path / "mask.tif", np.zeros((1, 64, 64), np.uint8), None)
    with pytest.raises(InputError, match="inpainting blends its tiles on the host"):
        inpaint(raster, tmp_path / "out.tif", make_inpaint_model(tmp_path / "m.satgen"), MaskOptions(mask=str(mask)),
                TileOptions(device="cpu", blend="device"))
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_device_blending_on_cuda_matches_the_host_blending_of_the_same_outputs(tmp_path, monkeypatch):
    """Wider than one 2048 px chunk, with skipped tiles, and a forward pass that keeps the GPU busy for a
    while after it returns, so that a pinned buffer refilled before its copy had run would show."""
    from engine.models.unet import UNet

    forward = UNet.forward

    def slow(self, x):
        torch.cuda._sleep(2_000_000)  # about a millisecond of GPU time queued before the network
        return forward(self, x)

    monkeypatch.setattr(UNet, "forward", slow)
    data = smooth_image(4, 200, 2300)
    data[:, 40:45, 10:200] = 0
    data[:, 120:200, 0:300] = 0  # whole tiles of nodata: skipped
    model = make_model(tmp_path / "m.satgen", in_bands=4, out_bands=3, tile=64, overlap=16)
    found = _apply_both(tmp_path, data, 0, model, device="cuda")
    assert (found["host"][1] == found["device"][1]).all()
    # the same network on the same GPU, the stretch and blend in float32 there and here: a rounding step apart
    # at most (the same operations in the same order: most likely none)
    assert np.abs(found["device"][0].astype(int) - found["host"][0].astype(int)).max() <= 1
