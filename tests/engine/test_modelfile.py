"""Model files: round trip, and files that must be refused without running anything."""

import json
import pickle
import struct

import pytest
import torch

from engine.card import ModelCard
from engine.errors import ModelFileError
from engine.modelfile import CARD_KEY, load_model, read_card, save_model
from helpers import make_model


def write_safetensors(path, tensors, card_json):
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata=None if card_json is None else {CARD_KEY: card_json})
    return path


def test_round_trip_keeps_weights_and_card(tmp_path):
    path = make_model(tmp_path / "m.satgen")
    loaded = load_model(path)
    again = save_model(tmp_path / "again.satgen", loaded.module, loaded.card)
    reloaded = load_model(again)
    assert reloaded.card == loaded.card
    for (k, a), (_, b) in zip(loaded.module.state_dict().items(), reloaded.module.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not loaded.module.training  # loaded models are in eval mode


def test_half_precision_storage_is_smaller_and_close(tmp_path):
    loaded = load_model(make_model(tmp_path / "m.satgen", ngf=8))
    full = save_model(tmp_path / "full.satgen", loaded.module, loaded.card)
    half = save_model(tmp_path / "half.satgen", loaded.module, loaded.card, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    a, b = load_model(full).module.state_dict(), load_model(half).module.state_dict()
    for k in a:
        assert b[k].dtype == a[k].dtype
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=1e-3)


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_checkpoint_with_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.satgen"
    torch.save({"state_dict": Payload(marker)}, zipped)  # the modern torch.save zip format
    raw = tmp_path / "evil2.satgen"
    raw.write_bytes(pickle.dumps(Payload(marker), protocol=2))  # a bare pickle
    for path in (zipped, raw):
        with pytest.raises(ModelFileError, match="pickle"):
            load_model(path)
    assert not marker.exists()


def test_card_cannot_name_arbitrary_callables(tmp_path):
    good = json.loads(read_card(make_model(tmp_path / "m.satgen")).to_json())
    for arch, params, match in [
        ("os.system", {"command": "touch pwned"}, "unknown architecture"),
        ("unet", {"in_channels": 3, "out_channels": 3, "__class__": "x"}, "takes no parameter"),
        ("unet", {"in_channels": {"eval": "1"}, "out_channels": 3}, "must be a number"),
    ]:
        card = dict(good, architecture=arch, params=params)
        path = write_safetensors(tmp_path / f"{arch}.satgen", {"w": torch.zeros(1)}, json.dumps(card))
        with pytest.raises(ModelFileError, match=match):
            load_model(path)


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c.pop("task"), "missing field 'task'"),
    (lambda c: c.update(task="mine_bitcoin"), "unknown task"),
    (lambda c: c.update(format_version=99), "newer than this SatGen"),
    (lambda c: c.update(tile_size=True), "tile_size"),
    (lambda c: c["inputs"].update(low=[0.0]), "inputs.low"),
    (lambda c: c["outputs"].update(dtype="object"), "outputs.dtype"),
])
def test_malformed_cards_name_the_field(tmp_path, mutate, match):
    card = json.loads(read_card(make_model(tmp_path / "m.satgen")).to_json())
    mutate(card)
    with pytest.raises(ModelFileError, match=match):
        ModelCard.from_dict(card)


def test_files_that_are_not_model_files(tmp_path):
    cases = {
        "missing.satgen": None,
        "empty.satgen": b"",
        "text.satgen": b"hello, this is not a model",
        "huge_header.satgen": struct.pack("<Q", 2 ** 40) + b"{}",
        "truncated.satgen": make_model(tmp_path / "m.satgen").read_bytes()[:300],
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ModelFileError):
            load_model(path)
    no_card = write_safetensors(tmp_path / "nocard.satgen", {"w": torch.zeros(2)}, None)
    with pytest.raises(ModelFileError, match="without a SatGen model card"):
        load_model(no_card)


def test_weights_that_do_not_match_the_card(tmp_path):
    good = read_card(make_model(tmp_path / "m.satgen"))
    path = write_safetensors(tmp_path / "bad.satgen", {"w": torch.zeros(2)}, good.to_json())
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(path)


def test_safetensors_header_length_ending_in_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    # the 8-byte header length comes first; a length like 0x...80 starts the file with byte 0x80
    loaded = load_model(make_model(tmp_path / "m.satgen"))
    for pad in range(256):
        loaded.card.description = "x" * pad
        path = save_model(tmp_path / "p.satgen", loaded.module, loaded.card)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert load_model(path).card.description == loaded.card.description


# --- every card field is bounded before anything is built (issue 15 item 8)

def rewrite_card(tmp_path, mutate, name="m.satgen", base=None):
    """A copy of a tiny real model file whose card JSON `mutate` changed (in place) first."""
    from safetensors.torch import load_file

    base = base or make_model(tmp_path / "base.satgen")
    card = json.loads(read_card(base).to_json())
    mutate(card)
    return write_safetensors(tmp_path / name, load_file(str(base)), json.dumps(card))


def refused(path, *words):
    """load_model refuses `path` with a ModelFileError whose message holds every word, in well under a second."""
    import time

    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert time.perf_counter() - start < 5
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    return str(info.value)


@pytest.mark.parametrize("params,words", [
    ({"depth": 10000}, ["'depth'", "2..12", "10000"]),  # allocated until the memory cap
    ({"ngf": -2}, ["'ngf'", "1..1024"]),  # raw RuntimeError: negative dimension
    ({"in_channels": 2 ** 31}, ["'in_channels'", "1..1024"]),  # raw RuntimeError
    ({"out_channels": 0}, ["'out_channels'"]),
    ({"max_mult": 10 ** 30}, ["'max_mult'", "1..64"]),
    ({"dropout": 1.5}, ["'dropout'", "0..1"]),
    ({"dropout": float("nan")}, ["'dropout'"]),
    ({"depth": 3.0}, ["'depth'", "an integer"]),
    ({"depth": True}, ["'depth'"]),
    ({"ngf": None}, ["'ngf'"]),
])
def test_architecture_parameters_are_bounded(tmp_path, params, words):
    path = rewrite_card(tmp_path, lambda c: c["params"].update(params))
    refused(path, "parameter", *words)


def test_every_parameter_of_every_architecture_has_bounds():
    import inspect

    from engine.models import ARCHITECTURES, PARAMETERS

    for name, cls in ARCHITECTURES.items():
        assert set(PARAMETERS[name]) == set(inspect.signature(cls).parameters), name


def test_a_model_too_large_is_refused_before_it_is_built(tmp_path):
    from engine.models import MAX_PARAMETERS, build

    huge = dict(in_channels=3, out_channels=3, ngf=1024, depth=12, max_mult=64)  # 10^12 weights
    with pytest.raises(ModelFileError, match="weights, more than"):
        build("unet", huge)
    path = rewrite_card(tmp_path, lambda c: c.update(tile_size=4096, overlap=0) or c["params"].update(huge))
    refused(path, f"{MAX_PARAMETERS:,}")
    # few weights, but one 4096 px tile would make 4 billion values in the first layer alone
    wide = rewrite_card(tmp_path, lambda c: c.update(tile_size=4096) or c["params"].update(ngf=1024, depth=2),
                        name="wide.satgen")
    refused(wide, "one 4096 px tile", "GiB")


def test_build_returns_a_real_cpu_module_wherever_torch_puts_new_tensors():
    from engine.models import build

    with torch.device("meta"):
        module = build("unet", dict(in_channels=3, out_channels=3, ngf=4, depth=3))
    assert {p.device.type for p in module.parameters()} == {"cpu"}
    assert module(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("mutate,words", [
    (lambda c: c.update(legend={f"c{i}": [i % 256, i // 256 % 256, 0] for i in range(200_000)}),
     ["legend", "at most 256 colours"]),  # decoding asked for 50 GiB
    (lambda c: c["inputs"].update(low=[-1e308] * 3, high=[1e308] * 3), ["inputs.low", "1e+12"]),  # one colour, exit 0
    (lambda c: c["outputs"].update(low=[1e9] * 3, high=[1e9 + 1] * 3), ["outputs.low and outputs.high must differ"]),
    (lambda c: c["inputs"].update(low=[0.0] * 3, high=[1e-40] * 3), ["inputs.low and inputs.high must differ"]),
    (lambda c: c["inputs"].update(clip=1e308), ["inputs.clip", "1000"]),
    (lambda c: c["inputs"].update(clip=float("inf")), ["inputs.clip"]),
    (lambda c: c.update(tile_size=10 ** 6), ["'tile_size'", "8..4096"]),
    (lambda c: c.update(tile_size=4), ["'tile_size'", "8..4096"]),
    (lambda c: c.update(overlap=17), ["'overlap'", "0..16"]),  # more than half the 32 px tile
    (lambda c: c.update(overlap=-1), ["'overlap'"]),
    (lambda c: c.update(scale=200), ["'scale'", "1..16"]),
    (lambda c: c.update(tile_size=2048, scale=4), ["tile_size x scale", "4096"]),
    (lambda c: c.update(classes=["c"] * 1025), ["classes", "at most 1024"]),
    (lambda c: c.update(classes=["x" * 300]), ["classes", "256 characters"]),
    (lambda c: c["inputs"].update(names=["B"] * 2000, low=[0] * 2000, high=[1] * 2000), ["inputs.names", "1024"]),
    (lambda c: c["outputs"].update(names=[], low=[], high=[]), ["outputs.names", "at least one band"]),
    (lambda c: c.update(name="n" * 2000), ["name", "at most 1000 characters"]),
    (lambda c: c.update(format_version=0), ["format_version"]),
    (lambda c: c.update(format_version=True), ["format_version"]),
    (lambda c: c.update(training={"sampler": []}), ["training.sampler"]),
    (lambda c: c.update(training={"sampler": {"guidance": [], "steps": 2}}), ["training.sampler.guidance"]),
    (lambda c: c.update(training={"sampler": {"steps": 10 ** 12}}), ["training.sampler.steps", "1..10000"]),
    (lambda c: c.update(training={"config": [1]}), ["training.config"]),
    (lambda c: c.update(metrics={"a": json.loads("[" * 40 + "]" * 40)}), ["metrics", "nested more than 32"]),
])
def test_card_fields_are_bounded_with_a_message_naming_the_field(tmp_path, mutate, words):
    path = rewrite_card(tmp_path, mutate)
    with pytest.raises(ModelFileError) as info:
        read_card(path)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_deeply_nested_json_is_a_message_not_a_recursion_error(tmp_path):
    base = make_model(tmp_path / "base.satgen")
    card = read_card(base).to_json()
    deep = card.replace('"training": {}', '"training": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert deep != card
    path = write_safetensors(tmp_path / "deep_card.satgen", {"w": torch.zeros(1)}, deep)
    with pytest.raises(ModelFileError, match="nested"):
        load_model(path)
    # the safetensors header itself (tensor index), nested as deep
    header = b'{"w": {"dtype": "F32", "shape": ' + b"[" * 100_000 + b"]" * 100_000 + b', "data_offsets": [0, 4]}}'
    raw = tmp_path / "deep_header.satgen"
    raw.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(ModelFileError, match="nested too deeply"):
        load_model(raw)


@pytest.mark.parametrize("mutate,words", [
    (lambda c: c["params"].update(in_channels=5), ["in_channels is 5", "inputs.names has 3"]),
    (lambda c: c["params"].update(out_channels=1), ["out_channels is 1"]),
    (lambda c: c.update(tile_size=36), ["tile_size 36 is not a multiple of 8"]),
    (lambda c: c.update(architecture="class_unet", params={"in_channels": 3, "num_classes": 2}),
     ["'image-to-image' must have architecture unet"]),
    (lambda c: c.update(architecture="patchgan", params={"in_channels": 6}), ["must have architecture unet"]),
    (lambda c: c["params"].update(classes=2), ["U-Net of 2 class scores", "task is 'image-to-image'"]),
])
def test_a_card_must_fit_its_architecture(tmp_path, mutate, words):
    """Bands, classes and tile size the tools feed and expect must be what the network takes and makes:
    a mismatch was a raw RuntimeError (or IndexError) in the middle of a run."""
    refused(rewrite_card(tmp_path, mutate), *words)


def test_a_synthesis_card_must_fit_its_classes(tmp_path):
    from engine.card import Bands, ModelCard
    from engine.models.cdcgan import CDCGANGenerator

    params = dict(out_channels=2, num_classes=2, patch_size=16, nz=8, ngf=4)
    card = ModelCard(task="synthesize", architecture="cdcgan", params=params, inputs=Bands([], [], []),
                     outputs=Bands(["a", "b"], [0.0, 0.0], [1.0, 1.0]), tile_size=16, overlap=0,
                     classes=["farm", "water"])
    base = save_model(tmp_path / "g.satgen", CDCGANGenerator(**params), card)
    assert load_model(base).card.classes == ["farm", "water"]
    for mutate, words in [(lambda c: c.update(classes=["farm"]), ["num_classes is 2", "classes list 1"]),
                          (lambda c: c.update(classes=[]), ["num_classes is 2"]),
                          (lambda c: c.update(tile_size=32), ["16 px patches", "tile_size is 32"])]:
        refused(rewrite_card(tmp_path, mutate, base=base), *words)


def test_weights_are_checked_before_they_are_read(tmp_path):
    from safetensors.torch import load_file

    base = make_model(tmp_path / "base.satgen")
    tensors, card = load_file(str(base)), read_card(base).to_json()
    nan = dict(tensors)
    nan["down.0.0.weight"] = torch.full_like(nan["down.0.0.weight"], float("nan"))
    refused(write_safetensors(tmp_path / "nan.satgen", nan, card), "NaN or infinite", "down.0.0.weight")
    extra = dict(tensors, big=torch.zeros(1000))
    refused(write_safetensors(tmp_path / "extra.satgen", extra, card), "unexpected big")
    ints = dict(tensors)
    ints["down.0.0.weight"] = ints["down.0.0.weight"].to(torch.int32)
    refused(write_safetensors(tmp_path / "ints.satgen", ints, card), "down.0.0.weight is I32")


def test_a_card_out_of_bounds_is_never_written(tmp_path):
    loaded = load_model(make_model(tmp_path / "m.satgen"))
    loaded.card.tile_size = 5
    with pytest.raises(ModelFileError, match="tile_size"):
        save_model(tmp_path / "bad.satgen", loaded.module, loaded.card)
    assert not (tmp_path / "bad.satgen").exists()


def test_the_shipped_models_are_within_every_bound():
    from engine.modelfile import DEFAULT_MODELS, default_model
    from engine.models import check_fits

    for task in DEFAULT_MODELS:
        check_fits(read_card(default_model(task)))
