"""Cloud inpainting in the engine: cloud shapes, tiny training on a real crop
(resume, report, card), and apply: outside-mask identity bit for bit, cloud-free
tiles copied, nodata kept, mask output, bad input, atomic outputs."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.errors import InputError
from engine.inpainting.apply import MaskOptions, inpaint
from engine.inpainting.data import RealMasks, cloud_mask, synthetic_mask
from engine.inpainting.train import InpaintingConfig, train_inpainting
from engine.modelfile import read_card
from engine.pipeline import TileOptions
from helpers import SAMPLES, Lines, crop_raster, smooth_image, write_raster

needs_samples = pytest.mark.skipif(not (SAMPLES / "s2_virginia_10m.tif").exists(), reason="run `make data` first")


@pytest.mark.parametrize("coverage", [0.1, 0.3, 0.5])
def test_synthetic_masks_hit_the_coverage(coverage):
    rng = np.random.default_rng(0)
    masks = [synthetic_mask(64, coverage, rng) for _ in range(5)]
    for m in masks:
        assert m.shape == (64, 64) and m.dtype == bool
        assert abs(m.mean() - coverage) < 0.02
    assert not all((m == masks[0]).all() for m in masks[1:])  # shapes vary


def test_real_masks_give_windows_of_the_real_shapes(tmp_path):
    cloud = np.zeros((1, 100, 100), np.uint8)
    cloud[0, 20:60, 30:90] = 1
    real = RealMasks([write_raster(tmp_path / "m.tif", cloud)], 50)
    rng = np.random.default_rng(0)
    window = real.sample(0.3, rng)
    assert window is not None and window.shape == (50, 50) and 0.1 < window.mean() < 0.5
    for _ in range(10):
        m = cloud_mask(50, (0.2, 0.4), rng, real, real_share=1.0)
        assert m.shape == (50, 50)
    with pytest.raises(InputError, match="has any cloud"):
        RealMasks([write_raster(tmp_path / "empty.tif", np.zeros((1, 60, 60), np.uint8))], 50)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for two epochs on a real 192 px Sentinel-2 crop."""
    if not (SAMPLES / "s2_virginia_10m.tif").exists():
        pytest.skip("run `make data` first")
    path = tmp_path_factory.mktemp("inpaint")
    crop = crop_raster(SAMPLES / "s2_virginia_10m.tif", path / "clear.tif", 600, 600, 192, 192)
    config = InpaintingConfig(inputs=[str(crop)], output_model=str(path / "m.satgen"), report_dir=str(path / "report"),
                              epochs=2, patches_per_epoch=8, batch_size=4, patch_size=32, tile_size=64, overlap=16,
                              ngf=4, depth=3, ndf=4, block_size=64)
    model = train_inpainting(config)
    return path, crop, model, config


@needs_samples
def test_training_writes_model_card_and_report(trained):
    path, crop, model, config = trained
    card = read_card(model)
    assert card.task == "inpaint" and card.inputs.names == ["B02", "B03", "B04", "B08"]
    assert card.inputs.dtype == card.outputs.dtype == "uint16" and card.params["in_channels"] == 5
    assert "val_psnr_mask_db" in card.metrics
    report = path / "report"
    for name in ("loss_curves.png", "samples.png", "metrics.json", "checkpoint.pt"):
        assert (report / name).is_file()
    history = json.loads((report / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(h["images_per_s"] > 0 for h in history)


@needs_samples
def test_training_resumes_and_refuses_other_settings(trained):
    path, crop, model, config = trained
    config.epochs = 3
    train_inpainting(config)
    history = json.loads((path / "report" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # epochs 1-2 came from the checkpoint
    config.ngf = 8
    with pytest.raises(InputError, match="other settings"):
        train_inpainting(config)


def _mask_raster(path, shape, boxes, **kw):
    m = np.zeros((1,) + shape, np.uint8)
    for r0, r1, c0, c1 in boxes:
        m[0, r0:r1, c0:c1] = 1
    return write_raster(path, m, **kw)


@needs_samples
def test_outside_the_mask_the_output_is_the_input_bit_for_bit(trained, tmp_path):
    _, crop, model, _ = trained
    with rasterio.open(crop) as src:
        mask = _mask_raster(tmp_path / "mask.tif", (192, 192), [(10, 50, 20, 90), (120, 170, 130, 180)],
                            crs=src.crs, transform=src.transform)
        data = src.read()
    out, out_mask = tmp_path / "filled.tif", tmp_path / "used.tif"
    result = inpaint(crop, out, model, MaskOptions(mask=str(mask)), TileOptions(batch_size=2), output_mask=out_mask)
    with rasterio.open(out) as dst, rasterio.open(crop) as src, rasterio.open(out_mask) as m:
        filled = dst.read()
        assert dst.crs == src.crs and dst.transform == src.transform and dst.dtypes == src.dtypes
        used = m.read(1)
    cloud = used == 1
    assert cloud.sum() == 40 * 70 + 50 * 50
    assert np.array_equal(filled[:, ~cloud], data[:, ~cloud])
    assert not np.array_equal(filled[:, cloud], data[:, cloud])  # the model wrote something there
    assert result.stats.tiles_skipped > 0  # cloud-free tiles were copied, not run
    assert 0.1 < result.cloud_fraction < 0.2


@needs_samples
def test_nodata_is_kept_and_dilation_grows_the_mask(trained, tmp_path):
    _, crop, model, _ = trained
    with rasterio.open(crop) as src:
        data, crs, transform = src.read(), src.crs, src.transform
    data[:, :5, :] = 0
    noisy = write_raster(tmp_path / "nd.tif", data, crs=crs, transform=transform, nodata=0,
                         descriptions=["B02", "B03", "B04", "B08"])
    mask = _mask_raster(tmp_path / "mask.tif", (192, 192), [(0, 40, 0, 40)], crs=crs, transform=transform)
    out, used = tmp_path / "f.tif", tmp_path / "m.tif"
    inpaint(noisy, out, model, MaskOptions(mask=str(mask), dilate=3), output_mask=used)
    with rasterio.open(out) as dst, rasterio.open(used) as m:
        filled, mask_used = dst.read(), m.read(1)
        assert dst.nodata == 0
    assert (filled[:, :5] == 0).all() and (mask_used[:5] == 255).all()
    # a disk of radius 3 grows the square's sides by 3 px and rounds its corner
    assert (mask_used[5:43, :40] == 1).all() and (mask_used[5:40, :43] == 1).all()
    assert mask_used[42, 42] == 0 and mask_used[44:, :].max() <= 1 and mask_used[44:, 44:].max() == 0


@needs_samples
def test_bad_input_is_refused_and_nothing_is_left(trained, tmp_path):
    _, crop, model, _ = trained
    out = tmp_path / "out.tif"
    with rasterio.open(crop) as src:
        everything = _mask_raster(tmp_path / "all.tif", (192, 192), [(0, 192, 0, 192)], crs=src.crs,
                                  transform=src.transform)
    with pytest.raises(InputError, match="no clear ground"):
        inpaint(crop, out, model, MaskOptions(mask=str(everything)))
    with pytest.raises(InputError, match="does not overlap"):
        far = _mask_raster(tmp_path / "far.tif", (50, 50), [(0, 50, 0, 50)], crs="EPSG:32633",
                           transform=from_origin(100000.0, 1000000.0, 10.0, 10.0))
        inpaint(crop, out, model, MaskOptions(mask=str(far)))
    with pytest.raises(InputError, match="mask layer|QA band|detection"):
        inpaint(crop, out, model, MaskOptions())
    with pytest.raises(InputError, match="expression"):
        inpaint(crop, out, model, MaskOptions(qa=str(crop), qa_band=1, qa_expression="bits(14, 15) = = 3"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.tif", "far.tif"]


@needs_samples
def test_a_mask_in_another_crs_is_reprojected(trained, tmp_path):
    """The same cloud given in the input's UTM zone and in WGS84 covers the same pixels."""
    _, crop, model, _ = trained
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(crop) as src:
        utm = _mask_raster(tmp_path / "utm.tif", (192, 192), [(60, 120, 60, 140)], crs=src.crs, transform=src.transform)
        transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", 192, 192, *src.bounds, resolution=2e-5)
    with rasterio.open(utm) as m:
        geo = np.zeros((1, h, w), np.uint8)
        reproject(m.read(), geo, src_transform=m.transform, src_crs=m.crs, dst_transform=transform,
                  dst_crs="EPSG:4326", resampling=Resampling.nearest)
    geo_path = write_raster(tmp_path / "geo.tif", geo, crs="EPSG:4326", transform=transform)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    inpaint(crop, tmp_path / "fa.tif", model, MaskOptions(mask=str(utm)), output_mask=a)
    inpaint(crop, tmp_path / "fb.tif", model, MaskOptions(mask=str(geo_path)), output_mask=b)
    with rasterio.open(a) as ma, rasterio.open(b) as mb:
        ua, ub = ma.read(1) == 1, mb.read(1) == 1
    assert abs(int(ua.sum()) - int(ub.sum())) < 0.05 * ua.sum()
    assert (ua & ub).sum() / (ua | ub).sum() > 0.9


@needs_samples
def test_qa_band_and_scene_normalisation_on_other_imagery(trained, tmp_path):
    """An int16 raster with a QA band: the uint16 model refuses it with model scaling and
    says what to do; with scene scaling it fills the QA-flagged pixels only. (Not uint8:
    GDAL reads a 4-band uint8 GeoTIFF's last band as alpha.)"""
    _, crop, model, _ = trained
    image = smooth_image(4, 96, 96, dtype="int16", seed=3)
    qa = np.zeros((1, 96, 96), np.uint16)
    qa[0, 30:60, 30:60] = 3 << 14  # Landsat-8 BQA high-confidence cloud
    qa[0, 0:10, 0:10] = 1 << 14  # low confidence: not cloud
    img = write_raster(tmp_path / "img.tif", image)
    qa_path = write_raster(tmp_path / "qa.tif", qa)
    masks = MaskOptions(qa=str(qa_path), qa_band=1, qa_expression="bits(14, 15) == 3")
    with pytest.raises(InputError, match="scene"):
        inpaint(img, tmp_path / "o.tif", model, masks)
    result = inpaint(img, tmp_path / "o.tif", model, masks, normalize="scene")
    with rasterio.open(result.output) as dst:
        out = dst.read()
        assert dst.dtypes[0] == "int16"
    cloud = np.zeros((96, 96), bool)
    cloud[30:60, 30:60] = True
    assert np.array_equal(out[:, ~cloud], image[:, ~cloud])
    assert abs(result.cloud_fraction - cloud.mean()) < 1e-9


@needs_samples
def test_a_reference_date_fills_from_its_texture_on_any_grid(trained, tmp_path):
    """Reference = this scene under a different radiometry (0.8 x + 150, float32), once on the
    same grid and once in WGS84: the cloud is filled from it, close to the truth; where the
    reference has no value the model fills; outside the cloud the input is kept bit for bit."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    _, crop, model, _ = trained
    with rasterio.open(crop) as src:
        data, crs, transform = src.read(), src.crs, src.transform
        wgs_transform, w, h = calculate_default_transform(crs, "EPSG:4326", 192, 192, *src.bounds, resolution=5e-5)
    mask = _mask_raster(tmp_path / "mask.tif", (192, 192), [(40, 100, 50, 130)], crs=crs, transform=transform)
    other = (0.8 * data + 150).astype(np.float32)
    other[:, 40:100, 110:130] = -1  # the reference's own gap, under part of the cloud
    ref = write_raster(tmp_path / "ref.tif", other, crs=crs, transform=transform, nodata=-1)
    cloud = np.zeros((192, 192), bool)
    cloud[40:100, 50:130] = True
    gap = np.zeros_like(cloud)
    gap[40:100, 110:130] = True

    def run(name, **kw):
        out = tmp_path / name
        inpaint(crop, out, model, MaskOptions(mask=str(mask)), TileOptions(batch_size=2), **kw)
        with rasterio.open(out) as dst:
            return dst.read().astype(np.float64)

    plain, with_ref = run("plain.tif"), run("with_ref.tif", reference=str(ref))
    truth = data.astype(np.float64)
    for filled in (plain, with_ref):
        assert np.array_equal(filled[:, ~cloud], truth[:, ~cloud])
    from_ref = cloud & ~gap
    assert np.abs(with_ref - truth)[:, from_ref].max() <= 2  # linear change, recovered up to rounding
    assert np.abs(plain - truth)[:, from_ref].mean() > 20 * max(1.0, np.abs(with_ref - truth)[:, from_ref].mean())
    # where the reference is empty the model fills, from the clear pixels and the reference's fill around: no
    # worse than from the clear pixels alone
    gap_cloud = gap & cloud
    assert np.abs(with_ref - truth)[:, gap_cloud].mean() <= np.abs(plain - truth)[:, gap_cloud].mean()

    geo = np.full((4, h, w), -1, np.float32)
    reproject(other, geo, src_transform=transform, src_crs=crs, src_nodata=-1, dst_transform=wgs_transform,
              dst_crs="EPSG:4326", dst_nodata=-1, resampling=Resampling.bilinear)
    geo_ref = write_raster(tmp_path / "geo_ref.tif", geo, crs="EPSG:4326", transform=wgs_transform, nodata=-1)
    warped = run("geo.tif", reference=str(geo_ref), reference_bands=[1, 2, 3, 4])
    assert np.array_equal(warped[:, ~cloud], truth[:, ~cloud])
    inner = np.zeros_like(cloud)
    inner[45:95, 55:105] = True  # away from the gap's edge, which the two warps blur
    # two bilinear warps smooth 10 m texture: far better than no reference, not exact
    assert np.abs(warped - truth)[:, inner].mean() < 0.5 * np.abs(plain - truth)[:, inner].mean()


@needs_samples
def test_a_bad_reference_is_refused_and_nothing_is_left(trained, tmp_path):
    _, crop, model, _ = trained
    with rasterio.open(crop) as src:
        mask = _mask_raster(tmp_path / "mask.tif", (192, 192), [(0, 40, 0, 40)], crs=src.crs, transform=src.transform)
        data, crs, transform = src.read(), src.crs, src.transform
    far = write_raster(tmp_path / "far.tif", data, crs=crs, transform=from_origin(0, 0, 10, 10))
    two = write_raster(tmp_path / "two.tif", data[:2], crs=crs, transform=transform)
    out = tmp_path / "out.tif"
    with pytest.raises(InputError, match="reference raster .* does not overlap"):
        inpaint(crop, out, model, MaskOptions(mask=str(mask)), reference=str(far))
    with pytest.raises(InputError, match="match the input bands"):
        inpaint(crop, out, model, MaskOptions(mask=str(mask)), reference=str(crop), reference_bands=[1, 2])
    with pytest.raises(InputError, match="band 3 of reference raster"):
        inpaint(crop, out, model, MaskOptions(mask=str(mask)), reference=str(two))
    with pytest.raises(InputError, match="does not exist"):
        inpaint(crop, out, model, MaskOptions(mask=str(mask)), reference=str(tmp_path / "missing.tif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.tif", "mask.tif", "two.tif"]


def test_values_unlike_the_training_data_are_warned(trained, tmp_path):
    """The scene the model was trained on passes quietly; the same scene at ten times the
    brightness and 8,000 more (Landsat-8 DN against Sentinel-2) is warned about, with the fix."""
    _, crop, model, _ = trained
    with rasterio.open(crop) as src:
        data, crs, transform = src.read(), src.crs, src.transform
    mask = _mask_raster(tmp_path / "mask.tif", data.shape[1:], [(10, 50, 20, 90)], crs=crs, transform=transform)
    bright = write_raster(tmp_path / "bright.tif", np.minimum(data.astype(np.uint32) * 10 + 8000, 65535)
                          .astype(np.uint16), crs=crs, transform=transform)
    for image, warned in ((crop, False), (bright, True)):
        fb = Lines()
        inpaint(image, tmp_path / "o.tif", model, MaskOptions(mask=str(mask)), feedback=fb)
        warnings = [line for line in fb.warnings() if "trained on" in line]
        assert bool(warnings) == warned, fb.lines
    assert "NORMALIZE=1" in warnings[0] and "band 1 (the model's B02)" in warnings[0]
