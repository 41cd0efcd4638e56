"""Translation end to end in the engine: tiny Pix2Pix training on a real crop,
resume, report, model card, and apply with the trained model."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from engine.errors import InputError, ModelFileError
from engine.modelfile import load_model, read_card
from engine.pipeline import TileOptions
from engine.translation.apply import translate
from engine.translation.config import CLASS_SCORES_WEIGHT
from engine.translation.train import TranslationConfig, config_from_card, prepare_data, train_translation
from helpers import SAMPLES, Lines, make_model, write_raster

LEGEND = {"water": [140, 190, 230], "forest": [100, 165, 90], "farm": [245, 230, 160], "background": [242, 239, 233]}


@pytest.fixture(scope="module")
def real_pair(tmp_path_factory):
    """A 192 x 192 px crop of the real Sentinel-2 Havel scene and a map of it drawn from
    its own NDVI (water / forest / farm, and a band of unmapped background)."""
    path = tmp_path_factory.mktemp("pair")
    with rasterio.open(SAMPLES / "s2_havel_10m.tif") as src:
        window = Window(700, 250, 192, 192)
        x = src.read(window=window)
        transform, crs = src.window_transform(window), src.crs
    red, nir = x[2].astype(float), x[3].astype(float)
    ndvi = (nir - red) / (nir + red + 1e-6)
    classes = np.where(ndvi < 0.05, 0, np.where(ndvi > 0.3, 1, 2))
    colors = np.array(list(LEGEND.values()), np.uint8)
    rgb = colors[classes].transpose(2, 0, 1).copy()
    rgb[:, :, :20] = np.array(LEGEND["background"], np.uint8)[:, None, None]  # unmapped strip
    image = write_raster(path / "s2.tif", x, crs=crs, transform=transform, descriptions=["B02", "B03", "B04", "B08"])
    target = write_raster(path / "map.tif", rgb, crs=crs, transform=transform)
    legend = path / "legend.json"
    legend.write_text(json.dumps(LEGEND))
    return image, target, legend


def tiny_config(real_pair, tmp_path, **kw):
    image, target, legend = real_pair
    fields = dict(input=str(image), target=str(target), legend=str(legend), output_model=str(tmp_path / "m.satgen"),
                  report_dir=str(tmp_path / "report"), epochs=1, patches_per_epoch=8, batch_size=4, patch_size=32,
                  tile_size=32, overlap=8, ngf=4, depth=5, ndf=8, block_size=64, unlabelled_background=True,
                  min_valid=0.3, device="cpu")
    fields.update(kw)
    return TranslationConfig(**fields)


def test_tiny_training_writes_model_card_and_report_and_resumes(real_pair, tmp_path):
    config = tiny_config(real_pair, tmp_path)
    path = train_translation(config)
    card = read_card(path)
    assert card.task == "translate" and card.inputs.names == ["B02", "B03", "B04", "B08"]
    assert card.inputs.dtype == "uint16" and card.outputs.dtype == "uint8"
    assert card.legend == LEGEND and "background" not in card.classes
    assert {"val_acc_delta10", "val_miou", "val_psnr_db"} <= set(card.metrics)
    assert card.training["config"]["unlabelled_background"] is True
    report = tmp_path / "report"
    for name in ("loss_curves.png", "samples.png", "metrics.json", "checkpoint.pt", "index.html"):
        assert (report / name).stat().st_size > 0
    page = (report / "index.html").read_text()  # one page tying curves, samples and metrics together
    assert "<img src='loss_curves.png'" in page and "<img src='samples.png'" in page
    assert "Final metrics" in page and f"{card.metrics['val_miou']:.4g}" in page
    # resuming: one more epoch continues the history instead of starting over
    train_translation(tiny_config(real_pair, tmp_path, epochs=2))
    history = json.loads((report / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["images_per_s"] > 0 for h in history)  # training speed, per epoch
    # a checkpoint of other settings is not silently mixed in
    with pytest.raises(InputError, match="other settings"):
        train_translation(tiny_config(real_pair, tmp_path, epochs=3, lambda_l1=10.0))
    # a damaged checkpoint (a run killed by a full disk, a copy cut short): a message with the way on
    checkpoint = report / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(InputError, match="damaged: delete it"):
        train_translation(tiny_config(real_pair, tmp_path, epochs=3))


@pytest.fixture(scope="module")
def trained(real_pair, tmp_path_factory):
    config = tiny_config(real_pair, tmp_path_factory.mktemp("trained"))
    return config, train_translation(config)


def test_evaluation_rebuilds_the_training_split(trained):
    config, model = trained
    card = read_card(model)
    split_train = prepare_data(config)[0].block_split
    split_eval = prepare_data(config_from_card(card))[0].block_split
    assert split_train is not None and split_eval is not None
    assert split_train.val_blocks == split_eval.val_blocks and split_eval.val_blocks


def test_unlabelled_background_is_left_out_of_the_loss_but_not_the_input(real_pair, tmp_path):
    from engine.translation.data import fit_input_scaling, pair_sample

    pairs, _ = prepare_data(tiny_config(real_pair, tmp_path))
    pair, split = pairs.pairs[0], pairs.block_split
    assert not pair.valid[:, :20].any() and pair.valid[:, 20:].mean() > 0.99
    sample = pair_sample(pair, fit_input_scaling(pair, split), 0, 0, 32)
    # the generator sees the imagery of unmapped land (as at inference); only the loss skips it
    assert (sample["x"][:, :, :20] != 0).mean() > 0.99
    assert not sample["valid"][:, :20].any() and (sample["y"][:, :, :20] == 0).all()
    with pytest.raises(InputError, match="legend"):
        prepare_data(tiny_config(real_pair, tmp_path, legend=None))


def test_translate_with_trained_model_keeps_georeferencing(real_pair, trained, tmp_path):
    image, model = real_pair[0], trained[1]
    out = translate(image, tmp_path / "map_out.tif", model).output
    with rasterio.open(out) as o, rasterio.open(image) as i:
        assert (o.crs, o.transform, o.shape, o.count, o.dtypes[0]) == (i.crs, i.transform, i.shape, 3, "uint8")
        assert o.colorinterp[0].name == "red"
    assert not load_model(model).module.training


def test_translate_refuses_models_of_other_tasks_and_other_bands(real_pair, tmp_path):
    image = real_pair[0]
    with pytest.raises(ModelFileError, match="'image-to-image' model"):
        translate(image, tmp_path / "o.tif", make_model(tmp_path / "generic.satgen", in_bands=4))
    three = make_model(tmp_path / "three.satgen", in_bands=3, task="translate")
    with pytest.raises(InputError, match="takes 3 band"):
        translate(image, tmp_path / "o.tif", three)
    assert not (tmp_path / "o.tif").exists()


def test_bad_training_settings(real_pair, tmp_path):
    with pytest.raises(InputError, match="multiple of 32"):
        train_translation(tiny_config(real_pair, tmp_path, patch_size=48))
    far = write_raster(tmp_path / "far.tif", np.zeros((3, 50, 50), np.uint8), crs="EPSG:32633")
    with pytest.raises(InputError, match="overlap"):
        train_translation(tiny_config(real_pair, tmp_path, target=str(far)))
    assert not (tmp_path / "m.satgen").exists()


def test_translate_draws_in_legend_colours_unless_raw_is_asked(real_pair, trained, tmp_path):
    image, model = real_pair[0], trained[1]
    snapped = translate(image, tmp_path / "snapped.tif", model).output
    raw = translate(image, tmp_path / "raw.tif", model, snap=False).output
    learned = {tuple(c) for k, c in LEGEND.items() if k != "background"}  # background was unlabelled
    with rasterio.open(snapped) as s, rasterio.open(raw) as r:
        colours = {tuple(px) for px in s.read().reshape(3, -1).T}
        raw_colours = {tuple(px) for px in r.read().reshape(3, -1).T}
    assert colours <= learned
    assert not raw_colours <= learned


def test_a_diverging_training_stops_with_a_message_and_writes_no_model(real_pair, tmp_path):
    """A learning rate of 1e30 blows the weights up in the first epoch: the run stops there with
    the way on, instead of training on NaN for every later epoch and writing a useless model."""
    from engine.errors import TrainingError

    config = tiny_config(real_pair, tmp_path, epochs=3, lr=1e30)
    with pytest.raises(TrainingError, match="training diverged in epoch 1: loss_g_l1 = (nan|inf).*lower learning"):
        train_translation(config)
    assert not (tmp_path / "m.satgen").exists()


def test_the_card_records_the_ground_resolution_and_translate_warns_far_from_it(real_pair, trained, tmp_path):
    from rasterio.transform import from_origin

    model = trained[1]
    assert read_card(model).resolution_m == pytest.approx(10.0)
    with rasterio.open(real_pair[0]) as src:
        data, crs, (left, top) = src.read(), src.crs, (src.bounds.left, src.bounds.top)
    for res, warned in ((10.0, False), (15.0, False), (60.0, True), (2.0, True)):
        image = write_raster(tmp_path / f"at{res}.tif", data, crs=crs, transform=from_origin(left, top, res, res))
        lines = Lines()
        translate(image, tmp_path / f"map{res}.tif", model, feedback=lines)
        assert any("learnt from 10 m imagery" in w for w in lines.warnings()) == warned, (res, lines.lines)
    with pytest.raises(InputError, match="ground resolution"):
        train_translation(tiny_config(real_pair, tmp_path, ground_resolution=-1.0))


def test_translate_without_a_model_picks_the_shipped_model_that_suits_the_imagery(tmp_path):
    from rasterio.transform import from_origin

    from engine.modelfile import default_model
    from engine.translation.apply import RGB_MODEL, shipped_model_for

    rgb = np.full((3, 64, 64), 120, np.uint8)
    s2 = np.full((4, 64, 64), 1200, np.uint16)
    cases = [  # (data, pixel size in m or None for no georeferencing, the RGB model expected)
        (rgb, None, True), (rgb, 0.5, True), (rgb, 10.0, False), (s2, 10.0, False), (s2, None, False),
        (s2, 2.0, True)]
    for i, (data, res, want_rgb) in enumerate(cases):
        if res is None:
            path = tmp_path / f"{i}.tif"
            with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=len(data),
                               dtype=data.dtype) as dst:
                dst.write(data)
        else:
            path = write_raster(tmp_path / f"{i}.tif", data, transform=from_origin(500000, 5800000, res, res))
        lines = Lines()
        chosen = shipped_model_for(path, lines)
        assert (chosen.name == RGB_MODEL) == want_rgb and chosen.is_file(), (i, chosen)
        assert (chosen == default_model("translate")) != want_rgb
        assert any("shipped RGB land-cover model" in line for line in lines.lines) == want_rgb


def test_the_class_loss_reads_classes_from_colours():
    import torch

    from engine.training.objectives import colour_class_loss

    colours = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])  # black, white, red
    target = colours[[1, 1, 2, 0]].T.reshape(1, 3, 2, 2)
    right = colour_class_loss(target + 0.05, target, colours)
    # grey is L1's answer between black and white: it decodes to neither and costs more than a near miss
    between = target.clone()
    between[:, :, 0, 0] = 0.0
    assert colour_class_loss(between, target, colours) > right
    valid = torch.tensor([[[False, True], [True, True]]])
    assert torch.isclose(colour_class_loss(between, target, colours, valid), colour_class_loss(target, target, colours,
                                                                                                 valid))
    pred = torch.zeros(1, 3, 2, 2, requires_grad=True)
    colour_class_loss(pred, target, colours).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_training_with_the_class_loss(real_pair, tmp_path):
    path = train_translation(tiny_config(real_pair, tmp_path, epochs=2, lambda_class=1.0))
    history = json.loads((tmp_path / "report" / "metrics.json").read_text())["history"]
    assert all(np.isfinite(h["loss_g_class"]) for h in history)
    assert read_card(path).training["config"]["lambda_class"] == 1.0
    with pytest.raises(InputError, match="needs the map's classes"):
        train_translation(tiny_config(real_pair, tmp_path / "plain", legend=None, unlabelled_background=False,
                                       lambda_class=1.0))
    with pytest.raises(InputError, match="0 or more"):
        train_translation(tiny_config(real_pair, tmp_path / "negative", lambda_class=-1.0))


def test_a_checkpoint_from_before_a_new_setting_resumes_while_the_setting_is_at_its_default(real_pair, tmp_path):
    """A run checkpointed by an older SatGen (its settings lack lambda_class) resumes; with the new setting
    changed from its default it is another run, and refused."""
    from engine.training.checkpoint import load_checkpoint, save_checkpoint

    train_translation(tiny_config(real_pair, tmp_path))
    checkpoint = tmp_path / "report" / "checkpoint.pt"
    state = load_checkpoint(checkpoint)
    del state["config"]["lambda_class"], state["config"]["head"]  # as written before the settings existed
    save_checkpoint(checkpoint, state)
    with pytest.raises(InputError, match="other settings"):  # the class loss's default differs with class scores
        train_translation(tiny_config(real_pair, tmp_path, epochs=2, head="classes"))
    train_translation(tiny_config(real_pair, tmp_path, epochs=2))
    history = json.loads((tmp_path / "report" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    state = load_checkpoint(checkpoint)
    del state["config"]["lambda_class"]
    save_checkpoint(checkpoint, state)
    with pytest.raises(InputError, match="other settings"):
        train_translation(tiny_config(real_pair, tmp_path, epochs=3, lambda_class=1.0))


def test_a_generator_of_class_scores_draws_only_its_legend_colours(real_pair, tmp_path):
    """--head classes: the last layer scores the legend's classes; in training the discriminator judges the
    palette weighted by their probabilities and the class loss is the scores' cross-entropy; the model file
    carries the palette, and its maps (raw, tiled and blended) are in the legend's colours only."""
    import torch

    from engine.models.unet import UNet

    config = tiny_config(real_pair, tmp_path, epochs=2, head="classes", lambda_class=1.0)
    path = train_translation(config)
    history = json.loads((tmp_path / "report" / "metrics.json").read_text())["history"]
    assert all(np.isfinite(h["loss_g_class"]) and np.isfinite(h["loss_g_gan"]) for h in history)
    loaded = load_model(path)
    card = loaded.card
    assert card.params["classes"] == 3 and card.outputs.names == ["red", "green", "blue"]
    net = loaded.module.float().eval()
    assert isinstance(net, UNet)
    wanted = np.array([LEGEND[c] for c in ("water", "forest", "farm")], np.float32)
    np.testing.assert_array_equal(np.rint((net.palette.numpy() + 1) * 127.5), wanted)
    x = torch.randn(2, 4, 32, 32)
    with torch.inference_mode():
        scores, colours = net(x, logits=True), net(x)
    assert scores.shape == (2, 3, 32, 32) and colours.shape == (2, 3, 32, 32)
    # each pixel's colour is its best-scoring class's
    torch.testing.assert_close(colours, net.palette[scores.argmax(1)].permute(0, 3, 1, 2))
    # tiled (32 px tiles, 8 px overlap): the tiles' class probabilities blend, then each pixel takes its best
    # class's colour, on the host or beside the model, snapped or raw alike
    image = real_pair[0]
    maps = []
    for snap, blend in ((True, "host"), (False, "host"), (False, "device")):
        out = translate(image, tmp_path / f"map_{snap}_{blend}.tif", path, TileOptions(blend=blend), snap=snap).output
        with rasterio.open(out) as dst:
            maps.append(dst.read())
    for drawn in maps:
        assert {tuple(c) for c in drawn.reshape(3, -1).T} <= {tuple(c) for c in wanted.astype(np.uint8)}
        np.testing.assert_array_equal(drawn, maps[0])
    assert len({tuple(c) for c in maps[0].reshape(3, -1).T}) > 1  # not one flat colour
    assert config_from_card(card).head == "classes"
    # where the background is a class of its own (not unmapped land), the generator draws it too
    whole = load_model(train_translation(tiny_config(real_pair, tmp_path / "whole", head="classes",
                                                     unlabelled_background=False, min_valid=0.9)))
    assert whole.card.params["classes"] == 4 and whole.card.training["config"]["lambda_class"] == CLASS_SCORES_WEIGHT
    # a map without a legend: its own colours, fitted to the training blocks (k-means), are the classes
    fitted = load_model(train_translation(tiny_config(real_pair, tmp_path / "plain", legend=None, head="classes",
                                                      unlabelled_background=False, min_valid=0.9, palette_size=4)))
    assert sorted(fitted.card.legend.values()) == sorted(LEGEND.values()) and fitted.card.params["classes"] == 4
    with pytest.raises(InputError, match="fewer than the 5 asked"):
        train_translation(tiny_config(real_pair, tmp_path / "five", legend=None, unlabelled_background=False,
                                       head="classes", palette_size=5))
