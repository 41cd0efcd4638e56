"""Training sets of many pairs: folders of images and of masks matched by name (the layout of most tile
data sets), glob patterns naming several such folders, side-by-side images; split by whole images or
whole folders, the same wherever the data lie; and a tiny Pix2Pix trained from them end to end."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.errors import InputError
from engine.modelfile import read_card
from engine.translation.data import PairPatches, find_pairs, fit_input_scaling, load_pairs, val_tiles
from engine.translation.train import TranslationConfig, prepare_data, train_translation
from helpers import TILE_COLOURS, tile_scene, write_tile_dataset


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """3 tiles of 3 images each, sizes differing, names repeating across tiles (the Dubai layout)."""
    return write_tile_dataset(tmp_path_factory.mktemp("city") / "tiles")


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():  # plain images carry no georeferencing, which is expected here
        warnings.filterwarnings("ignore", message="Dataset has no geotransform")
        yield


def test_folders_pair_images_with_masks_by_name(city):
    found = find_pairs(str(city / "Tile *" / "images"), str(city / "Tile *" / "masks"))
    assert len(found) == 9
    for image, mask, group in found:
        assert mask is not None and image.stem == mask.stem and image.parent.parent == mask.parent.parent
        assert group == str(image.parent)


def test_pairs_that_do_not_match_are_refused_with_their_names(city, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(city / "Tile 1", copy)
    (copy / "masks" / "part_002.png").unlink()
    with pytest.raises(InputError, match="no map of the same name.*part_002"):
        find_pairs(str(copy / "images"), str(copy / "masks"))
    with pytest.raises(InputError, match="names 3 .* but .* names 1"):
        find_pairs(str(city / "Tile *" / "images"), str(copy / "masks"))
    with pytest.raises(InputError, match="matches no file"):
        find_pairs(str(city / "Tile 9*" / "images"), str(city / "Tile 9*" / "masks"))
    with pytest.raises(InputError, match="give the target"):
        find_pairs(str(copy / "images"))
    with pytest.raises(InputError, match="no target with them"):
        find_pairs(str(copy / "images"), str(copy / "masks"), side_by_side=True)


@pytest.mark.parametrize("holdout", ["image", "folder"])
def test_whole_images_or_folders_are_held_out_the_same_wherever_the_data_lie(city, tmp_path, holdout):
    def held(root):
        ps = load_pairs(str(root / "Tile *" / "images"), str(root / "Tile *" / "masks"), holdout=holdout,
                        val_fraction=0.34, seed=3)
        train = {ps.names[i] + ps.groups[i][-9:] for i, _ in ps.train}
        val = {ps.names[i] + ps.groups[i][-9:] for i, _ in ps.val}
        return ps, train, val

    ps, train, val = held(city)
    assert not train & val and len(train | val) == 9
    for i, box in ps.train + ps.val:  # each pair whole in one part
        assert box == (0, 0, ps.pairs[i].height, ps.pairs[i].width)
    if holdout == "folder":
        assert len({ps.groups[i] for i, _ in ps.val}) == 1 and len(val) == 3
        assert not {ps.groups[i] for i, _ in ps.val} & {ps.groups[i] for i, _ in ps.train}
    else:
        assert len(val) == 3 and len({ps.groups[i] for i, _ in ps.val}) > 1  # images from several tiles
    moved = tmp_path / "elsewhere" / "tiles"
    shutil.copytree(city, moved)
    assert held(moved)[1:] == (train, val)
    # another seed holds out other units (of 3 folders, seeds 3 and 5 pick different ones)
    other = load_pairs(str(city / "Tile *" / "images"), str(city / "Tile *" / "masks"), holdout=holdout,
                       val_fraction=0.34, seed=5)
    assert {(other.names[i], other.groups[i]) for i, _ in other.val} != {(ps.names[i], ps.groups[i])
                                                                          for i, _ in ps.val}


def test_patches_and_validation_tiles_stay_on_their_side_of_the_split(city):
    ps = load_pairs(str(city / "Tile *" / "images"), str(city / "Tile *" / "masks"), val_fraction=0.34)
    scaling = fit_input_scaling(ps)
    data = PairPatches(ps, None, scaling, patch=32, length=200, seed=1)
    held = {i for i, _ in ps.val}
    used = {data.window(k)[0] for k in range(len(data))}
    assert used and not used & held and len(used) == 6  # every training image is drawn from
    item = data[0]
    assert item["x"].shape == (3, 32, 32) and item["y"].shape == (3, 32, 32) and item["pair"] in used
    tiles = val_tiles(ps, None, 32)
    assert tiles and {i for i, _, _ in tiles} == held
    # the mask's class colours come through exactly (PNG, nearest): y is one of the colours
    y = np.rint((item["y"].numpy() + 1) * 127.5).astype(int).reshape(3, -1).T
    assert {tuple(c) for c in y} <= {tuple(int(v) for v in c) for c in TILE_COLOURS}


def test_side_by_side_images_split_into_input_and_map(tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    for k in range(4):
        img, mask = tile_scene(k, 48, 40)
        Image.fromarray(np.concatenate([img, mask], axis=1)).save(folder / f"{k}.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "odd.png")
    ps = load_pairs(str(folder), side_by_side=True, val_fraction=0.25)
    assert len(ps.pairs) == 4 and len(ps.val) == 1
    img, mask = tile_scene(0, 48, 40)
    p0 = ps.pairs[ps.names.index("0.png")]
    np.testing.assert_array_equal(p0.x, img.transpose(2, 0, 1))
    np.testing.assert_array_equal(p0.y, mask.transpose(2, 0, 1))
    shutil.copy(tmp_path / "odd.png", folder)
    with pytest.raises(InputError, match="odd.png is 9 px wide, which does not halve"):
        load_pairs(str(folder), side_by_side=True)


def test_pairs_with_other_bands_or_too_many_pixels_are_refused(city, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(city / "Tile 1", mixed)
    grey = np.asarray(Image.open(mixed / "images" / "part_001.jpg").convert("L"))
    (mixed / "images" / "part_001.jpg").unlink()
    Image.fromarray(grey).save(mixed / "images" / "part_001.png")
    with pytest.raises(InputError, match="same bands"):
        load_pairs(str(mixed / "images"), str(mixed / "masks"))
    with pytest.raises(InputError, match="million pixels"):
        load_pairs(str(city / "Tile 1" / "images"), str(city / "Tile 1" / "masks"), max_pixels=10_000)
    with pytest.raises(InputError, match="at least one each"):
        load_pairs(str(city / "Tile 1" / "images"), str(city / "Tile 1" / "masks"), holdout="folder")


def _config(city, tmp_path, **kw):
    fields = dict(input=str(city / "Tile *" / "images"), target=str(city / "Tile *" / "masks"),
                  output_model=str(tmp_path / "m.satgen"), report_dir=str(tmp_path / "report"), epochs=1,
                  patches_per_epoch=8, batch_size=4, patch_size=32, tile_size=32, overlap=8, ngf=4, depth=5, ndf=8,
                  val_fraction=0.34, device="cpu")
    fields.update(kw)
    return TranslationConfig(**fields)


def test_a_tiny_training_from_folders_of_pairs(city, tmp_path):
    config = _config(city, tmp_path, holdout="folder")
    card = read_card(train_translation(config))
    assert "1 of 3 folders held out" in card.training["split"] and "9 image/map pairs" in card.training["data"]
    assert card.inputs.names == ["red", "green", "blue"] and card.inputs.dtype == "uint8"  # the JPEGs' colours
    assert card.metrics["validation"].startswith("1 of 3 folders") and card.metrics["val_l1"] > 0
    held = prepare_data(config)[0].held_out_names()
    assert len(held) == 3  # one whole tile, the same when rebuilt from the configuration


def test_a_model_of_rgb_images_finds_the_colour_bands_of_a_four_band_raster(city, tmp_path):
    """Bands are matched by their colour interpretation where they have no description (JPEG, PNG, most
    RGB(N) GeoTIFFs), so an RGB model runs on an RGB + near-infrared raster without BANDS."""
    import rasterio
    from rasterio.enums import ColorInterp

    from engine.translation.apply import translate

    model = train_translation(_config(city, tmp_path))
    img, _ = tile_scene(5, 64, 64)
    rgbn = np.concatenate([img.transpose(2, 0, 1), img[None, :, :, 0]])
    path = tmp_path / "rgbn.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=4, dtype="uint8") as dst:
        dst.write(rgbn)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined]
    result = translate(path, tmp_path / "map.tif", model)
    assert result.output.exists()
    with rasterio.open(path, "r+") as dst:  # without colours the bands cannot be told apart: a clear error
        dst.colorinterp = [ColorInterp.undefined] * 4
    with pytest.raises(InputError, match="BANDS"):
        translate(path, tmp_path / "map2.tif", model)


def test_training_from_folders_by_the_command_line(city, tmp_path, capsys):
    out = tmp_path / "cli.satgen"
    rc = main(["train", "translation", "--input", str(city / "Tile *" / "images"), "--target",
               str(city / "Tile *" / "masks"), "--output-model", str(out), "--report-dir", str(tmp_path / "r"),
               "--epochs", "1", "--patches-per-epoch", "4", "--batch-size", "2", "--patch-size", "32",
               "--ngf", "4", "--device", "cpu"])
    assert rc == 0 and read_card(out).training["split"].startswith("2 of 9 images held out")
    rc = main(["train", "translation", "--input", str(city / "Tile 1" / "images"), "--output-model", str(out),
               "--report-dir", str(tmp_path / "r2"), "--patch-size", "32", "--device", "cpu"])
    assert rc != 0 and "give the target" in capsys.readouterr().err


def test_maps_without_a_legend_get_a_palette_fitted_to_their_training_maps(city, tmp_path):
    """--head classes with maps that come without a legend (the pix2pix maps, most tile sets): k-means fits
    PALETTE_SIZE flat colours to the training maps' pixels (held-out images unseen), named by hex code, the
    most common first; JPEG noise around the colours does not move them far."""
    from engine.translation.data import fit_palette

    noisy = tmp_path / "noisy"
    shutil.copytree(city, noisy)
    for mask in noisy.glob("Tile */masks/*.png"):  # the maps as lossy JPEGs, as the pix2pix set has them
        Image.open(mask).save(mask.with_suffix(".jpg"), quality=85, subsampling=0)
        mask.unlink()
    pairs = load_pairs(str(noisy / "Tile *" / "images"), str(noisy / "Tile *" / "masks"), val_fraction=0.34)
    legend = fit_palette(pairs, 3)
    found = np.array(sorted(legend.values()), float)
    assert np.abs(found - np.array(sorted(TILE_COLOURS.tolist()), float)).max() <= 8
    assert all(name == "#{:02x}{:02x}{:02x}".format(*c) for name, c in legend.items())
    train = {i for i, _ in pairs.train}
    pixels = np.concatenate([pairs.pairs[i].y.reshape(3, -1).T for i in sorted(train)]).astype(float)
    nearest = ((pixels[:, None] - np.array(list(legend.values()), float)[None]) ** 2).sum(2).argmin(1)
    shares = np.bincount(nearest, minlength=3)
    assert list(shares) == sorted(shares, reverse=True)  # the most common colour first
    assert fit_palette(pairs, 3) == legend  # seeded: the same palette on every run
    # only the training images count: a held-out image's own colour does not enter the palette
    val = {i for i, _ in pairs.val}
    for i in val:
        pairs.pairs[i].y[:] = 7
    assert fit_palette(pairs, 3) == legend
    with pytest.raises(InputError, match="fewer than the 5000 asked"):
        fit_palette(load_pairs(str(city / "Tile *" / "images"), str(city / "Tile *" / "masks")), 5000)


def test_a_generator_of_class_scores_trained_on_maps_without_a_legend(city, tmp_path, capsys):
    out = tmp_path / "scores.satgen"
    rc = main(["train", "translation", "--input", str(city / "Tile *" / "images"), "--target",
               str(city / "Tile *" / "masks"), "--output-model", str(out), "--report-dir", str(tmp_path / "r"),
               "--epochs", "1", "--patches-per-epoch", "4", "--batch-size", "2", "--patch-size", "32",
               "--ngf", "4", "--device", "cpu", "--head", "classes", "--palette-size", "3"])
    assert rc == 0
    card = read_card(out)
    assert sorted(card.legend.values()) == sorted(TILE_COLOURS.tolist()) and card.params["classes"] == 3
    assert card.classes == list(card.legend) and "val_miou" in card.metrics
    assert "3 flat colours fitted to its training maps" in card.description
    rc = main(["train", "translation", "--input", str(city / "Tile *" / "images"), "--target",
               str(city / "Tile *" / "masks"), "--output-model", str(tmp_path / "x.satgen"), "--report-dir",
               str(tmp_path / "r2"), "--patch-size", "32", "--device", "cpu", "--head", "classes",
               "--palette-size", "1"])
    assert rc != 0 and "2 to 64 colours" in capsys.readouterr().err
