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
