"""Fuzzers for the inputs SatGen takes from strangers: model files, QA expressions, tile grids and
class-folder data sets. Each target makes one random input per case, runs the real engine code on it
and checks the target's invariant; a hostile or broken input must end in a SatGen error (a message
for the user), never in another exception, a hang or unbounded memory.

Cases are deterministic: case N of a target draws everything from numpy's generator seeded with
(seed, target, N). A failure names its seed, case and mutation, and replays alone, with its traceback:

    .venv/bin/python tests/fuzzing.py models --seed 0 --case 17

`tests/engine/test_fuzz.py` runs every target in a subprocess (address space limited, so a case
that allocates without bound fails instead of swapping the machine): `make test` a few cases,
`make fuzz` thousands (SATGEN_FUZZ_CASES, SATGEN_FUZZ_SEED).

    .venv/bin/python tests/fuzzing.py TARGET [--cases N] [--seed S] [--first N] [--memory-gib G]
"""

from __future__ import annotations

import argparse
import builtins
import collections
import json
import math
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
for _p in (str(ROOT), str(TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from engine.errors import InputError, ModelFileError, SatGenError  # noqa: E402

TARGETS = ("models", "qa", "windows", "datasets")
CASE_SECONDS = 60  # the slowest real case takes a second or two; a case past this has hung
DEFAULT_MEMORY_GIB = 3.0  # address space a run may add to what the imports took


class Violation(AssertionError):  # noqa: N818 - reads as what it is: the invariant violated
    """The code under test answered, but wrongly (the invariant does not hold)."""


class CaseTimeout(BaseException):  # noqa: N818 - a BaseException, so `except Exception` in the engine cannot swallow it
    """The case ran longer than CASE_SECONDS."""


@dataclass
class Case:
    number: int
    rng: np.random.Generator
    work: Path  # an empty folder of this case's own
    notes: list[str] = field(default_factory=list)  # the mutation, for the report

    def note(self, text: str) -> None:
        self.notes.append(text[:300])

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def int(self, low: int, high: int) -> int:
        """An integer low..high inclusive."""
        return int(self.rng.integers(low, high + 1))


def expect(ok: bool, message: str) -> None:
    if not ok:
        raise Violation(message)


def expect_message(exc: SatGenError) -> None:
    """A SatGen error the user will read: a non-empty message that any terminal can print."""
    text = str(exc)
    expect(len(text) > 10, f"{type(exc).__name__} with no real message: {text!r}")
    text.encode("utf-8")  # lone surrogates (undecodable file names) would crash a print


# ------------------------------------------------------------------------------------------- values

INTS = [0, 1, 2, 3, 4, 7, 8, 16, 31, 32, 64, 255, 256, 1023, 1024, 1025, 4096, 4097, 10_000, 2 ** 31, 2 ** 31 - 1,
        2 ** 32, 2 ** 63, 2 ** 64, 10 ** 30, -1, -2, -2 ** 31, -2 ** 63]
FLOATS = [0.0, -0.0, 0.5, 1.0, 1.5, -1.0, 3.0, 1e-30, 1e-300, 5e-324, 1e9, 1e12, 1.1e12, 1e13, 1e308, -1e308,
          float("nan"), float("inf"), float("-inf"), 65535.0, 4000.00001]
STRINGS = ["", "x", "unet", "class_unet", "inpaint_unet", "cdcgan", "patchgan", "harmonic", "push_pull", "translate",
           "inpaint", "synthesize", "image-to-image", "uint8", "float64", "complex64", "object", "\x00", "é" * 3,
           "\udcff", "a" * 300, "a" * 5000, "../../etc/passwd", "B1", "red", "os.system", "__class__"]


# the keyword parameters of the architectures in engine.models
PARAMETER_NAMES = ["in_channels", "out_channels", "num_classes", "ngf", "ndf", "base", "depth", "max_mult", "n_layers",
                   "nz", "patch_size", "emb", "blocks", "patchify", "dropout", "sigma_data", "attention", "fill"]


def random_value(c: Case, depth: int = 0) -> Any:
    kind = c.int(0, 9 if depth < 2 else 5)
    if kind <= 1:
        return c.pick(INTS) if c.chance(0.7) else c.int(-5, 5000)
    if kind == 2:
        return c.pick(FLOATS) if c.chance(0.7) else float(c.rng.normal(0, 1000))
    if kind == 3:
        return c.pick(STRINGS)
    if kind == 4:
        return c.pick([True, False, None])
    if kind == 5:
        return c.pick([[], {}])
    if kind in (6, 7):
        return [random_value(c, depth + 1) for _ in range(c.int(0, 4))]
    if kind == 8:
        return {c.pick(STRINGS): random_value(c, depth + 1) for _ in range(c.int(0, 3))}
    return Deep(c.pick([3, 33, 200, 5000, 100_000]))


@dataclass(frozen=True)
class Deep:
    """A value written into JSON text as `levels` nested lists (json.dumps itself would recurse)."""

    levels: int


def dumps(value: Any) -> str:
    """JSON text of `value` with Deep placeholders expanded."""
    deep: list[Deep] = []

    def default(obj):
        if isinstance(obj, Deep):
            deep.append(obj)
            return f"@@deep{len(deep) - 1}@@"
        raise TypeError(type(obj))

    text = json.dumps(value, default=default)
    for i, d in enumerate(deep):
        text = text.replace(f'"@@deep{i}@@"', "[" * d.levels + "]" * d.levels)
    return text


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) into a JSON value, itself included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, prefix + (k,))
    elif isinstance(value, list) and len(value) <= 50:
        for i, v in enumerate(value):
            out += paths(v, prefix + (i,))
    return out


def get_path(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def shown(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "<card>"


# ------------------------------------------------------------------------------------------- model files

def read_safetensors(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_safetensors(header_text: str, payload: bytes, pad: bool = True) -> bytes:
    raw = header_text.encode("utf-8", "surrogatepass")
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + payload


class ModelFiles:
    """Mutated model files: read_card / load_model succeed or raise ModelFileError; a model that
    loads runs on a small raster (or synthesizes a patch) and again raises only SatGen errors."""

    def setup(self, work: Path) -> None:
        import rasterio  # noqa: F401 - imported before the memory limit
        import torch

        torch.set_num_threads(1)  # tiny models: a second thread only spins, the more so on a busy machine
        from engine.card import Bands, ModelCard
        from engine.modelfile import save_model
        from engine.models import build
        from helpers import make_model

        def save(name: str, **card) -> Path:
            module = build(card["architecture"], card["params"])
            return save_model(work / f"{name}.satgen", module, ModelCard(**card))

        bands4 = Bands(names=["B02", "B03", "B04", "B08"], low=[900.0, 600.0, 400.0, 200.0],
                       high=[1500.0, 1300.0, 1400.0, 3500.0], dtype="uint16")
        rgb = Bands(names=["red", "green", "blue"], low=[0.0] * 3, high=[255.0] * 3, dtype="uint8")
        self.bases = {
            "unet": make_model(work / "unet.satgen"),
            "translate": save(
                "translate", task="translate", architecture="unet",
                params=dict(in_channels=4, out_channels=3, ngf=4, depth=3),
                inputs=Bands(**{**bands4.__dict__, "clip": 3.0}), outputs=rgb, tile_size=32, overlap=8,
                classes=["forest", "water"], legend={"forest": [100, 165, 90], "water": [140, 190, 230],
                                                     "background": [242, 239, 233]},
                training={"config": {"unlabelled_background": True}}),
            "inpaint": save(
                "inpaint", task="inpaint", architecture="inpaint_unet",
                params=dict(in_channels=5, out_channels=4, ngf=4, depth=3, fill="harmonic"),
                inputs=Bands(**{**bands4.__dict__, "clip": 3.0}), outputs=bands4, tile_size=32, overlap=8),
            "class_unet": save(
                "class_unet", task="synthesize", architecture="class_unet",
                params=dict(in_channels=4, num_classes=2, base=8, depth=2, emb=16, patchify=2),
                inputs=Bands(names=[], low=[], high=[]), outputs=bands4, tile_size=16, overlap=0,
                classes=["farm", "water"], training={"sampler": {"guidance": 1.5, "steps": 2}}),
            "cdcgan": save(
                "cdcgan", task="synthesize", architecture="cdcgan",
                params=dict(out_channels=4, num_classes=2, patch_size=16, nz=8, ngf=4),
                inputs=Bands(names=[], low=[], high=[]), outputs=bands4, tile_size=16, overlap=0,
                classes=["farm", "water"]),
        }
        self.work = work
        self.rasters: dict[tuple, Path] = {}

    def raster(self, bands: int, dtype: str) -> Path:
        from helpers import smooth_image, write_raster

        key = (bands, dtype)
        if key not in self.rasters:
            path = self.work / f"in_{bands}_{dtype}.tif"
            data = smooth_image(min(bands, 64), 40, 44, dtype, seed=1)
            data = np.concatenate([data] * math.ceil(bands / data.shape[0]))[:bands]
            self.rasters[key] = write_raster(path, data)
        return self.rasters[key]

    def mask(self) -> Path:
        from helpers import write_raster

        path = self.work / "mask.tif"
        if not path.exists():
            m = np.zeros((1, 40, 44), np.uint8)
            m[0, 10:25, 12:30] = 1
            write_raster(path, m)
        return path

    # --- mutations

    def mutate_card(self, c: Case, card: dict) -> None:
        for _ in range(c.int(1, 3)):
            op = c.pick(["set", "set", "set", "delete", "add", "number", "number", "list", "legend", "arch",
                         "param", "param", "names", "span"])
            candidates = paths(card)[1:]
            if op == "set":
                path = c.pick(candidates)
                value = random_value(c)
                self._set(card, path, value)
                c.note(f"card {shown(path)} = {value!r}"[:200])
            elif op == "delete":
                path = c.pick(candidates)
                del get_path(card, path[:-1])[path[-1]]
                c.note(f"card del {shown(path)}")
            elif op == "add":
                dicts = [p for p in paths(card) if isinstance(get_path(card, p), dict)]
                path = c.pick(dicts)
                key, value = c.pick(STRINGS + ["depth", "ngf", "tile"]), random_value(c)
                get_path(card, path)[key] = value
                c.note(f"card {shown(path + (key,))} added = {value!r}"[:200])
            elif op == "number":
                numbers = [p for p in candidates if isinstance(get_path(card, p), (int, float))
                           and not isinstance(get_path(card, p), bool)]
                if numbers:
                    path = c.pick(numbers)
                    old = get_path(card, path)
                    how = c.pick(["+1", "-1", "*2", "*1000", "*-1", "**2", "*1e300", "/3", "2**k"])
                    new = {"+1": lambda v: v + 1, "-1": lambda v: v - 1, "*2": lambda v: v * 2,
                           "*1000": lambda v: v * 1000, "*-1": lambda v: -v, "**2": lambda v: v * v,
                           "*1e300": lambda v: v * 1e300, "/3": lambda v: v / 3,
                           "2**k": lambda v: 2 ** c.int(0, 70)}[how](old)
                    self._set(card, path, new)
                    c.note(f"card {shown(path)} {old!r} -> {new!r}"[:200])
            elif op == "list":
                lists = [p for p in candidates if isinstance(get_path(card, p), list) and get_path(card, p)]
                if lists:
                    path = c.pick(lists)
                    items = get_path(card, path)
                    n = c.pick([0, 1, 2, 5, 300, 5000])
                    self._set(card, path, (items * (n // len(items) + 1))[:n])
                    c.note(f"card {shown(path)} resized to {n}")
            elif op == "legend":
                n = c.pick([0, 1, 255, 256, 257, 1000, 200_000])
                card["legend"] = {f"c{i}": [i % 256, (i // 256) % 256, (i // 65536) % 256] for i in range(n)}
                c.note(f"card legend of {n} colours")
            elif op == "arch":
                card["architecture"] = c.pick(["unet", "inpaint_unet", "class_unet", "cdcgan", "patchgan"])
                c.note(f"card architecture = {card['architecture']}")
            elif op == "param":
                params = card.get("params")
                if isinstance(params, dict):
                    key = c.pick(PARAMETER_NAMES)
                    value = c.pick([c.pick(INTS), c.pick(FLOATS), c.int(0, 20), c.pick([True, None, "x", [1]])])
                    params[key] = value
                    c.note(f"card params.{key} = {value!r}")
            elif op == "names":
                side = c.pick(["inputs", "outputs"])
                if isinstance(card.get(side), dict):
                    n = c.pick([0, 1, 3, 5, 300, 1025])
                    card[side].update(names=[f"B{i}" for i in range(n)], low=[0.0] * n, high=[100.0] * n)
                    c.note(f"card {side} has {n} bands")
            else:  # span
                side = c.pick(["inputs", "outputs"])
                if isinstance(card.get(side), dict) and isinstance(card[side].get("names"), list):
                    n = len(card[side]["names"])
                    low, high = c.pick([(0.0, 1e-30), (1e9, 1e9 + 1), (-1e308, 1e308), (5.0, 5.0), (1e12, -1e12),
                                        (0.0, 1e-6), (3.0, 3.0000001)])
                    card[side].update(low=[low] * n, high=[high] * n)
                    c.note(f"card {side} low {low} high {high}")

    @staticmethod
    def _set(card: dict, path: tuple, value: Any) -> None:
        get_path(card, path[:-1])[path[-1]] = value

    def mutate_header(self, c: Case, header: dict) -> None:
        for _ in range(c.int(1, 2)):
            tensors = [k for k in header if k != "__metadata__"]
            op = c.pick(["dtype", "shape", "offsets", "offsets", "delete", "add", "rename", "metadata", "deep"])
            key = c.pick(tensors) if tensors else None
            entry = header.get(key) if key else None
            if op == "dtype" and isinstance(entry, dict):
                entry["dtype"] = c.pick(["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "U16", "BOOL",
                                         "F8_E4M3", "F8_E5M2", "C64", "XX", "", 3])
                c.note(f"header {key}.dtype = {entry['dtype']!r}")
            elif op == "shape" and isinstance(entry, dict):
                shape = list(entry.get("shape", []))
                how = c.pick(["+1", "0", "-1", "huge", "add", "drop", "scalar", "str", "swap"])
                if how == "+1" and shape:
                    shape[c.int(0, len(shape) - 1)] += 1
                elif how == "0" and shape:
                    shape[c.int(0, len(shape) - 1)] = 0
                elif how == "-1" and shape:
                    shape[c.int(0, len(shape) - 1)] = -1
                elif how == "huge" and shape:
                    shape[c.int(0, len(shape) - 1)] = c.pick([2 ** 31, 2 ** 40, 2 ** 63, 2 ** 64])
                elif how == "add":
                    shape.append(c.pick([1, 2]))
                elif how == "drop" and shape:
                    shape.pop()
                elif how == "scalar":
                    shape = []
                elif how == "str":
                    shape = ["a"]
                elif how == "swap" and len(shape) > 1:
                    shape[0], shape[1] = shape[1], shape[0]
                entry["shape"] = shape
                c.note(f"header {key}.shape {how} = {shape}")
            elif op == "offsets" and isinstance(entry, dict):
                a, b = entry.get("data_offsets", [0, 0])
                a, b = c.pick([(b, a), (a, b + 1), (a - 1, b), (a, b - 4), (0, 0), (a, 2 ** 63), (-1, b),
                               (a + 4, b + 4), (0, b - a), (a, 2 ** 64 + 5)])
                entry["data_offsets"] = [a, b]
                c.note(f"header {key}.data_offsets = {[a, b]}")
            elif op == "delete" and key:
                del header[key]
                c.note(f"header del {key}")
            elif op == "add":
                name = c.pick(["extra", "down.0.0.weight", "__metadata__x"])
                header[name] = {"dtype": "F32", "shape": [c.pick([1, 2, 10 ** 6])], "data_offsets": [0, 4]}
                c.note(f"header add {name}")
            elif op == "rename" and key:
                header[key + ".x"] = header.pop(key)
                c.note(f"header rename {key}")
            elif op == "metadata":
                how = c.pick(["drop", "not-dict", "number", "huge", "not-json", "empty"])
                meta = header.setdefault("__metadata__", {})
                if how == "drop":
                    header.pop("__metadata__")
                elif how == "not-dict":
                    header["__metadata__"] = c.pick([[1], "x", 3, None])
                elif how == "number" and isinstance(meta, dict):
                    meta["satgen.card"] = 3
                elif how == "huge" and isinstance(meta, dict):
                    meta["other"] = "x" * 2_000_000
                elif how == "not-json" and isinstance(meta, dict):
                    meta["satgen.card"] = c.pick(["{", "[]", "null", "{\"format\": 1", "\ud800", "1e999"])
                elif isinstance(meta, dict):
                    meta["satgen.card"] = ""
                c.note(f"header metadata {how}")
            elif op == "deep" and isinstance(entry, dict):
                entry[c.pick(["shape", "dtype", "x"])] = Deep(c.pick([100, 200, 100_000]))
                c.note(f"header {key} deep nesting")

    def mutate_bytes(self, c: Case, data: bytes) -> bytes:
        n = struct.unpack("<Q", data[:8])[0]
        op = c.pick(["truncate", "truncate-header", "flip", "flip-header", "length", "insert", "append", "nan",
                     "zero"])
        b = bytearray(data)
        if op == "truncate":
            cut = c.int(0, len(b) - 1)
            b = b[:cut]
        elif op == "truncate-header":
            cut = c.int(0, 8 + n)
            b = b[:cut]
        elif op in ("flip", "flip-header"):
            end = 8 + n if op == "flip-header" else len(b)
            for _ in range(c.int(1, 8)):
                i = c.int(0, end - 1)
                b[i] ^= 1 << c.int(0, 7)
        elif op == "length":
            value = c.pick([0, 1, 2, n - 1, n + 1, n + 8, len(b), len(b) - 8, 2 ** 63, 2 ** 64 - 1, 128, 2 ** 24 + 1])
            b[:8] = struct.pack("<Q", value % 2 ** 64)
        elif op == "insert":
            i = c.int(8, 8 + n)
            b[i:i] = c.pick([b" ", b"{", b"\x00", b"]]]]", b"\xff\xfe"])
        elif op == "append":
            b += bytes(c.rng.integers(0, 256, c.pick([1, 7, 1000]), dtype=np.uint8))
        elif op == "nan":
            start = 8 + n + c.int(0, max(0, len(b) - 9 - n))
            b[start:start + 64] = b"\xff" * len(b[start:start + 64])
        else:
            start = 8 + n
            b[start:] = bytes(len(b) - start)
        c.note(f"bytes {op}")
        return bytes(b)

    def case(self, c: Case) -> str:
        name = c.pick(sorted(self.bases))
        c.note(f"base {name}")
        data = self.bases[name].read_bytes()
        header, payload = read_safetensors(data)
        kind = c.pick(["card", "card", "card", "header", "bytes", "card+bytes"])
        if kind.startswith("card"):
            card = json.loads(header["__metadata__"]["satgen.card"])
            self.mutate_card(c, card)
            header["__metadata__"]["satgen.card"] = dumps(card)
            data = write_safetensors(dumps(header), payload)
        elif kind == "header":
            self.mutate_header(c, header)
            data = write_safetensors(dumps(header), payload, pad=c.chance(0.8))
        if kind.endswith("bytes"):
            data = self.mutate_bytes(c, data)
        path = c.work / "m.satgen"
        path.write_bytes(data)
        return self.check(c, path)

    def check(self, c: Case, path: Path) -> str:
        from engine.modelfile import load_model, read_card

        try:
            card = read_card(path)
        except ModelFileError as exc:
            expect_message(exc)
            return "card refused"
        try:
            loaded = load_model(path)
        except ModelFileError as exc:
            expect_message(exc)
            return "model refused"
        expect(next(loaded.module.parameters()).device.type == "cpu", "load_model did not return a CPU module")
        expect(loaded.card == card, "load_model's card differs from read_card's")
        try:
            self.run(c, path, loaded)
        except SatGenError as exc:
            expect_message(exc)
            return f"run refused ({type(exc).__name__})"
        return "ran"

    def run(self, c: Case, path: Path, loaded) -> None:
        from engine.pipeline import TileOptions, apply_model

        card = loaded.card
        multiple = getattr(loaded.module, "multiple", 1)
        options = TileOptions(device="cpu", batch_size=2)
        if card.tile_size > 64:  # a small tile: the case is about the card, not about speed
            options.tile_size = multiple * math.ceil(16 / multiple)
            options.overlap = options.tile_size // 4
        out = c.work / "out.tif"
        if card.task == "synthesize":
            from engine.synthesis.synthesize import synthesize

            synthesize(c.work / "synth", model=path, classes=[card.classes[0]], count=1, steps=2,
                       fmt=c.pick(["tif", "png"]), device="cpu")
            expect((c.work / "synth" / "manifest.csv").exists(), "synthesize wrote no manifest")
            return
        raster = self.raster(card.inputs.count, card.inputs.dtype or "uint16")
        if card.task == "inpaint":
            from engine.inpainting.apply import MaskOptions, inpaint

            inpaint(raster, out, loaded, MaskOptions(mask=str(self.mask())), options, normalize="model")
        elif card.task == "translate":
            from engine.translation.apply import translate

            translate(raster, out, loaded, options)
        else:
            apply_model(loaded, raster, out, options)
        expect(out.exists(), "the tool returned without writing its output")


# ------------------------------------------------------------------------------------------- QA expressions

QA_TOKENS = ["qa", "qa", "qa", "bit", "bits", "(", ")", "(", ")", ",", "0", "1", "3", "8", "14", "15", "62", "63",
             "64", "0x0C", "0b11", "1_0", "01", "1.5", "1e3", "2**63", "9223372036854775808", "&", "|", "^", "~",
             ">>", "<<", "==", "!=", "<", "<=", ">", ">=", "in", "not", "and", "or", "is", "=", "+", "-", "*", "/",
             "//", "%", "**", "@", ":=", "[", "]", "{", "}", "'a'", "b'x'", "f'{qa}'", "x", "__import__", "os",
             "lambda", "if", "else", "for", "True", "None", "...", "é", "\uff10", "\x00", " ", "\n", "\t", "#",
             "\\", ";", ":", ".", "qa.real", "eval", "print", "open"]


def qa_expression(c: Case, depth: int = 0) -> tuple[str, bool, int]:
    """A random expression of the QA language: (text, whether it is a test (bool), bits its integer
    value may need). Left shifts stay within 62 bits, so int64 and Python's ints agree on it."""
    if depth > 4 or c.chance(0.25):
        leaf = c.int(0, 4)
        if leaf == 0:
            return "qa", False, 16
        if leaf == 1:
            return f"bit({c.int(0, 15)})", False, 1
        if leaf == 2:
            lo = c.int(0, 15)
            return f"bits({lo}, {c.int(lo, 15)})", False, 16
        return c.pick([str(c.int(0, 70000)), hex(c.int(0, 65535)), bin(c.int(0, 255))]), False, 17
    kind = c.int(0, 6)
    a, a_test, a_bits = qa_expression(c, depth + 1)
    if kind == 0:
        b, b_test, b_bits = qa_expression(c, depth + 1)
        return f"({a} {c.pick(['&', '|', '^'])} {b})", a_test and b_test, max(a_bits, b_bits, 1)
    if kind == 1:
        if c.chance(0.5) and a_bits + 16 <= 62:
            k = c.int(0, 16)
            return f"({a} << {k})", False, a_bits + k
        return f"({a} >> {c.int(0, 16)})", False, max(a_bits, 1)
    if kind == 2:
        ops = " ".join(f"{c.pick(['==', '!=', '<', '<=', '>', '>='])} {qa_expression(c, depth + 1)[0]}"
                       for _ in range(c.int(1, 2)))
        return f"({a} {ops})", True, 1
    if kind == 3:
        members = ", ".join(str(c.int(0, 70000)) for _ in range(c.int(1, 4)))
        return f"({a} {c.pick(['in', 'not in'])} ({members},))", True, 1
    if kind == 4:
        return f"({a} {c.pick(['and', 'or'])} {qa_expression(c, depth + 1)[0]})", True, 1
    if kind == 5 or a_test:  # ~ flips the bits of integers only; a test is negated with not
        return f"(not {a})", True, 1
    return f"(~{a})", False, a_bits + 1


def qa_reference(text: str, value: int) -> bool:
    """What a generated expression means for one QA value, by Python's own arithmetic (the
    expressions keep to shifts <= 16 and values < 2**17, where int64 and Python ints agree)."""
    import ast

    def ev(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return value
        if isinstance(node, ast.Call):
            lo, hi = node.args[0].value, node.args[-1].value
            return (value >> lo) & ((1 << (hi - lo + 1)) - 1)
        if isinstance(node, ast.BinOp):
            a, b = int(ev(node.left)), int(ev(node.right))
            return {ast.BitAnd: a & b, ast.BitOr: a | b, ast.BitXor: a ^ b}.get(type(node.op)) \
                if not isinstance(node.op, (ast.LShift, ast.RShift)) else (a << b if isinstance(node.op, ast.LShift)
                                                                           else a >> b)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return (not v) if isinstance(node.op, ast.Not) else ~int(v)
        if isinstance(node, ast.BoolOp):
            values = [bool(ev(v)) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare):
            left, ok = int(ev(node.left)), True
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, (ast.In, ast.NotIn)):
                    members = {e.value for e in right_node.elts}
                    ok = ok and ((left in members) != isinstance(op, ast.NotIn))
                    left = None
                    continue
                right = int(ev(right_node))
                ok = ok and {ast.Eq: left == right, ast.NotEq: left != right, ast.Lt: left < right,
                             ast.LtE: left <= right, ast.Gt: left > right, ast.GtE: left >= right}[type(op)]
                left = right
            return ok
        raise AssertionError(node)

    return bool(ev(ast.parse(text, mode="eval").body))


class QAExpressions:
    """Token soups, random text and generated expressions: QAExpression parses or raises InputError,
    nothing is ever evaluated as Python, and a parsed expression evaluates on a uint16 array
    (generated ones to what Python's arithmetic says)."""

    def setup(self, work: Path) -> None:
        from engine.inpainting.qa import QAExpression

        self.parse = QAExpression
        values = np.concatenate([np.arange(0, 256), [0x3FFF, 0x4000, 0x8000, 0xC000, 0xFFFF],
                                 np.random.default_rng(0).integers(0, 65536, 200)])
        self.qa = values.astype(np.uint16).reshape(1, -1)
        self.marker = work / "evaluated"

        def refuse(*args, **kwargs):
            raise Violation("eval/exec/compile was called: the QA language must never run Python")

        builtins.eval = builtins.exec = refuse  # the parser must never need them

    def case(self, c: Case) -> str:
        kind = c.pick(["soup", "soup", "text", "generated", "generated", "mutated", "payload"])
        if kind == "soup":
            text = "".join(c.pick(QA_TOKENS) + c.pick(["", " ", " "]) for _ in range(c.int(0, 25)))
        elif kind == "text":
            alphabet = "qabit()0123456789x,&|^~<>=!not and or in.[]{}'\"+-*/% \n\\"
            text = "".join(c.pick(alphabet) for _ in range(c.int(0, 60)))
            if c.chance(0.1):
                text = c.pick(["(" * 300 + "qa" + ")" * 300, "~" * 990 + "qa", "not " * 240 + "qa",
                               "qa" + " | qa" * 300, "x" * 1001, "qa == 1" + " " * 2000])
        elif kind == "payload":
            text = c.pick([f"__import__('pathlib').Path({str(self.marker)!r}).touch()",
                           f"open({str(self.marker)!r}, 'w')", "qa.__class__.__bases__", "[x for x in ()]",
                           "(lambda: qa)()", "qa if qa else 1", "bits(qa, 3)", "bit(-1)", "bits(3, 1)",
                           "qa in ()", "qa in (qa,)", "qa in (1, 2) < 3", "qa < 3 in (1, 2)", "~(qa == 1)",
                           "1 << qa", "qa >> 64", "~((qa == 1) & (qa == 2))", "~(bit(3) | (qa > 2))",
                           "qa << (1 << 62)", "bit(62) | bit(0)", "qa is 1"])
        elif kind == "generated":
            text = ""
            while not any(word in text for word in ("qa", "bit")):  # an expression must read the QA value
                text = qa_expression(c)[0]
        else:
            text = qa_expression(c)[0]
            for _ in range(c.int(1, 3)):
                i = c.int(0, len(text))
                text = text[:i] + c.pick(QA_TOKENS) + text[i + c.int(0, 2):]
        c.note(f"{kind}: {text[:200]!r}")
        try:
            expression = self.parse(text)
        except InputError as exc:
            expect_message(exc)
            expect(not self.marker.exists(), "the expression ran code")
            expect(kind != "generated", "a generated (valid) expression was refused")
            return f"{kind} refused"
        result = expression.evaluate(self.qa)
        expect(result.shape == self.qa.shape and result.dtype == bool,
               f"evaluate returned {result.dtype} {result.shape}, not bool {self.qa.shape}")
        expect(not self.marker.exists(), "the expression ran code")
        if kind == "generated":
            want = np.array([qa_reference(text, int(v)) for v in self.qa[0]])
            wrong = np.flatnonzero(want != result[0])
            expect(not len(wrong), f"evaluates wrongly: qa={int(self.qa[0, wrong[0]]) if len(wrong) else 0}: got "
                                   f"{bool(result[0, wrong[0]]) if len(wrong) else ''}")
        return f"{kind} parsed"


# ------------------------------------------------------------------------------------------- tile grids

class TileGrids:
    """Random rasters, tiles and overlaps: every pixel covered, blended weights sum to one everywhere
    (as run_tiles weights them, at output scales 1..3); bad parameters raise InputError."""

    def setup(self, work: Path) -> None:
        pass

    def case(self, c: Case) -> str:
        from engine.windows import TileGrid, tile_weights

        tile = c.pick([1, 2, 3, 4, 5, 8, 16, 17, 32, 64, c.int(1, 100)])
        overlap = c.int(0, tile // 2)
        most = 400 if tile >= 8 else 60  # at most a few thousand tiles to blend
        height = c.pick([1, 2, tile - 1, tile, tile + 1, 2 * tile - overlap, c.int(1, most), c.int(1, 50)])
        width = c.pick([1, 2, tile - 1, tile, tile + 1, 3 * tile - 2 * overlap, c.int(1, most), c.int(1, 50)])
        bad = c.chance(0.3)
        if bad:
            what = c.pick(["height", "width", "tile", "overlap"])
            value = c.pick([0, -1, -tile, tile // 2 + 1, tile + 1, 1.5, float("nan"), True, None, "8",
                            np.float32(3), 2 ** 70 if what == "overlap" else -2 ** 70])
            args = dict(height=height, width=width, tile=tile, overlap=overlap)
            args[what] = value
            height, width, tile, overlap = args["height"], args["width"], args["tile"], args["overlap"]
        c.note(f"TileGrid({height!r}, {width!r}, {tile!r}, {overlap!r})")
        args4 = (height, width, tile, overlap)
        whole = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in args4)
        valid = whole and height >= 1 and width >= 1 and tile >= 1 and 0 <= 2 * overlap <= tile
        try:
            grid = TileGrid(height, width, tile, overlap)
        except InputError as exc:
            expect_message(exc)
            expect(not valid, f"valid parameters refused: {exc}")
            return "refused"
        expect(valid, "bad parameters accepted")
        for size, offsets in ((height, grid.row_offsets), (width, grid.col_offsets)):
            expect(offsets[0] == 0, f"first tile at {offsets[0]}")
            expect(all(b - a == grid.stride for a, b in zip(offsets, offsets[1:], strict=False)), "uneven strides")
            expect(offsets[-1] + tile >= size, f"pixels {offsets[-1] + tile}..{size - 1} are not covered")
            expect(len(offsets) == 1 or offsets[-1] + overlap < size, "a tile lies wholly in the previous overlap")
        expect(grid.padded_width == grid.col_offsets[-1] + tile, "padded_width")
        expect(len(grid) == len(grid.row_offsets) * len(grid.col_offsets), "len(grid)")
        scale = c.pick([1, 1, 2, 3])
        rows, cols = grid.row_offsets, grid.col_offsets
        wsum = np.zeros(((rows[-1] + tile) * scale, grid.padded_width * scale), np.float64)
        for ri, r in enumerate(rows):
            for ci, col in enumerate(cols):
                w = tile_weights(tile * scale, overlap * scale, ri > 0, ri < len(rows) - 1, ci > 0,
                                 ci != len(cols) - 1)
                expect(w.shape == (tile * scale,) * 2 and np.isfinite(w).all() and (w >= 0).all(),
                       f"bad weights at tile {ri},{ci}")
                wsum[r * scale:(r + tile) * scale, col * scale:(col + tile) * scale] += w
        inside = wsum[:height * scale, :width * scale]
        worst = float(np.abs(inside - 1).max())
        expect(worst < 1e-5, f"blended weights sum to {1 + worst if inside.max() > 1 else 1 - worst:.6f} "
                             f"somewhere (scale {scale})")
        return "checked"


# ------------------------------------------------------------------------------------------- class folders

def png_bytes(width: int, height: int, data: bytes, colour: int = 2, depth: int = 8) -> bytes:
    """A PNG with the given IHDR (any declared size) and one IDAT of `data` (zlib-compressed)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


def tiff_bytes(width: int, height: int, samples: int = 1, bits: int = 8, offset: int = 8, fmt: int = 1) -> bytes:
    """A little-endian baseline TIFF whose header declares any size and band count, with one strip
    pointing at `offset` and little or no pixel data behind it."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 1), (262, 3, 1), (273, 4, offset),
               (277, 3, samples), (278, 4, height), (279, 4, min(width * height * samples * bits // 8, 2 ** 32 - 1)),
               (284, 3, 1), (339, 3, fmt)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        for tag, kind, value in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + ifd + b"\x00" * 64


class ClassFolders:
    """Folders of random images, junk, empty, cut and lying files under odd names: load_class_folders
    returns a consistent PatchSet (bad files skipped and listed) or raises InputError."""

    def setup(self, work: Path) -> None:
        import rasterio  # noqa: F401
        from PIL import Image  # noqa: F401

        from engine.synthesis.datasets import load_class_folders

        self.load = load_class_folders

    def good_png(self, c: Case, path: Path, bands: int) -> None:
        from PIL import Image

        size = c.int(1, 70), c.int(1, 70)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[bands]
        pixels = c.rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
        Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode).save(path)

    def good_tif(self, c: Case, path: Path, bands: int) -> None:
        from helpers import write_raster

        dtype = c.pick(["uint8", "uint16", "int16", "float32"])
        data = (c.rng.random((bands, c.int(1, 70), c.int(1, 70))) * 200).astype(dtype)
        write_raster(path, data)

    def huge_sparse_tif(self, c: Case, path: Path, bands: int) -> None:
        import rasterio

        side = c.pick([1100, 5000, 20_000])
        with rasterio.open(path, "w", driver="GTiff", width=side, height=c.pick([side, 7]), count=bands,
                           dtype="uint8", tiled=True, sparse_ok=True) as dst:
            h, w = min(16, dst.height), min(16, dst.width)
            dst.write_band(1, np.full((h, w), 9, np.uint8), window=rasterio.windows.Window(0, 0, w, h))

    def junk(self, c: Case, path: Path, bands: int) -> str:
        """Write one file of a random kind at `path` (made under a plain name, then renamed: GDAL
        cannot create a file whose name is not UTF-8, yet it must cope with reading one)."""
        if str(path).encode("utf-8", "surrogateescape").decode("utf-8", "ignore") != str(path) or c.chance(0.5):
            tmp = c.work / f"new{path.suffix}"
            kind = self._junk(c, tmp, bands)
            if tmp.exists() or tmp.is_symlink():
                tmp.rename(path)
            return kind
        return self._junk(c, path, bands)

    def _junk(self, c: Case, path: Path, bands: int) -> str:
        kind = c.pick(["good"] * 10 + ["empty", "random", "cut-png", "cut-tif", "huge-png", "huge-tif",
                       "many-bands", "float-tif", "nan-tif", "huge-sparse", "folder", "link", "text", "complex"])
        png = path.suffix.lower() == ".png" and bands <= 4
        if kind == "good":
            (self.good_png if png else self.good_tif)(c, path, bands)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "random":
            path.write_bytes(bytes(c.rng.integers(0, 256, c.int(1, 3000), dtype=np.uint8)))
        elif kind in ("cut-png", "cut-tif"):
            png = kind == "cut-png" and bands <= 4
            full = c.work / ("full.png" if png else "full.tif")
            (self.good_png if png else self.good_tif)(c, full, bands)
            raw = full.read_bytes()
            path.write_bytes(raw[:c.int(0, len(raw) - 1)])
        elif kind == "huge-png":
            side = c.pick([100_000, 2 ** 31 - 1, 40_000])
            path.write_bytes(png_bytes(side, c.pick([side, 1]), b"\x00" * c.int(0, 100)))
        elif kind == "huge-tif":
            path.write_bytes(tiff_bytes(c.pick([100_000, 2 ** 31 - 1, 70_000]), c.pick([100_000, 1, 3]),
                                        samples=c.pick([1, 3])))
        elif kind == "many-bands":
            path.write_bytes(tiff_bytes(c.pick([1, 64, 1024]), c.pick([1, 64, 1024]),
                                        samples=c.pick([2000, 20_000, 65_535]), bits=c.pick([8, 16])))
        elif kind == "float-tif":
            path.write_bytes(tiff_bytes(8, 8, samples=1, bits=c.pick([16, 32, 64]), fmt=3))
        elif kind == "nan-tif":
            from helpers import write_raster

            data = np.ones((bands, c.int(1, 20), c.int(1, 20)), np.float32)
            data.flat[c.int(0, data.size - 1)] = c.pick([np.nan, np.inf, -np.inf])
            write_raster(path, data)
        elif kind == "complex":
            path.write_bytes(tiff_bytes(8, 8, samples=1, bits=64, fmt=6))
        elif kind == "huge-sparse":
            self.huge_sparse_tif(c, path, bands)
        elif kind == "folder":
            path.mkdir()
        elif kind == "link":
            path.symlink_to(c.pick([c.work / "nowhere", path.parent, Path("/dev/zero")]))
        else:
            path.write_text("not an image, just text\n" * c.int(0, 50))
        return kind

    def case(self, c: Case) -> str:
        root = c.work / "data"
        root.mkdir()
        bands = c.pick([1, 3, 3, 4])
        names = ["forest", "Water body", "é-class", "x" * 200, ".hidden", "\udcffbad", "a\nb", " ", "...",
                 "class.png", "CON"]
        kinds = []
        for _ in range(c.int(1, 4) if c.chance(0.95) else 0):
            folder = root / c.pick(names)
            if folder.exists():
                continue
            folder.mkdir()
            for i in range(c.int(0, 6)):
                suffix = c.pick([".png", ".tif", ".PNG", ".jpg", ".tiff", ".txt", ".gif", ""])
                stem = c.pick(["img", "a b", "\udcfe", "x" * 100, ".dot", "-", "0"])
                path = folder / f"{stem}{i}{suffix}"
                kinds.append(self.junk(c, path, bands if c.chance(0.9) else c.pick([1, 2, 5])))
        if c.chance(0.1):
            (root / "loose.png").write_bytes(b"")
        patch = c.pick([8, 16, 33, 64]) if c.chance(0.95) else c.pick([0, 7, 513, -1])
        val = c.pick([0.2, 0.5, 0.01, 0.99]) if c.chance(0.95) else c.pick([0.0, 1.0, -0.5, float("nan")])
        per_class = c.pick([None, None, 1, 2, 0]) if c.chance(0.95) else -1
        c.note(f"{len(kinds)} files ({', '.join(kinds)}), patch {patch}, val {val}, max_per_class {per_class}")
        messages: list[str] = []
        try:
            ps = self.load(root, patch_size=patch, val_fraction=val, seed=c.number, max_per_class=per_class,
                           warn=messages.append)
        except InputError as exc:
            expect_message(exc)
            reasons = ("mixed band counts", "no readable image", "no class sub-folders", "patch size", "validation",
                       "most images", "no class has a training patch")
            return "refused: " + next((r for r in reasons if r in str(exc)), str(exc)[:40])
        for m in messages:
            m.encode("utf-8")  # warnings are printed: they must be printable
        n = len(ps.labels)
        expect(ps.x.shape[0] == n == len(ps.held_out) == len(ps.sources) and n > 0, "inconsistent lengths")
        expect(ps.x.shape[2:] == (patch, patch) and ps.x.dtype == np.float32, f"patches are {ps.x.shape} {ps.x.dtype}")
        expect(ps.x.shape[1] == len(ps.band_names) >= 1, "band names do not match the bands")
        expect(np.isfinite(ps.x).all(), "patches hold NaN or infinite values")
        expect(ps.labels.min() >= 0 and ps.labels.max() < len(ps.classes), "labels out of range")
        expect(all(not name.startswith(".") for name in ps.classes), "a hidden folder became a class")
        for line in ps.skipped:
            line.encode("utf-8")
        return f"loaded {len(ps.classes)} classes"


FUZZERS: dict[str, Callable[[], Any]] = {"models": ModelFiles, "qa": QAExpressions, "windows": TileGrids,
                                         "datasets": ClassFolders}


# ------------------------------------------------------------------------------------------- runner

@dataclass
class Failure:
    target: str
    seed: int
    case: int
    notes: list[str]
    error: str
    where: str

    def __str__(self) -> str:
        return (f"FAIL {self.target} seed {self.seed} case {self.case}: {'; '.join(self.notes)}\n"
                f"  -> {self.error}\n  at {self.where}\n"
                f"  replay: .venv/bin/python tests/fuzzing.py {self.target} --seed {self.seed} --case {self.case}")


def limit_memory(gib: float) -> int:
    """Cap the address space at what the process has mapped now plus `gib`; returns the cap in bytes."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = vm + int(gib * 2 ** 30)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


def _timeout(signum, frame):
    raise CaseTimeout(f"the case ran longer than {CASE_SECONDS} s")


def run(target: str, seed: int, cases: int, first: int = 0, memory_gib: float | None = DEFAULT_MEMORY_GIB,
        trace: Callable[[str], None] | None = None, replay: bool = False) -> tuple[collections.Counter, list[Failure]]:
    fuzzer = FUZZERS[target]()
    outcomes: collections.Counter = collections.Counter()
    failures: list[Failure] = []
    with tempfile.TemporaryDirectory(prefix=f"satgen-fuzz-{target}-") as tmp:
        fuzzer.setup(Path(tmp))
        if memory_gib:
            limit_memory(memory_gib)
        signal.signal(signal.SIGALRM, _timeout)
        for number in range(first, first + cases):
            if trace:
                trace(f"case {number}")
            work = Path(tmp) / f"case{number}"
            work.mkdir()
            case = Case(number, np.random.default_rng([seed, TARGETS.index(target), number]), work)
            signal.alarm(CASE_SECONDS)
            try:
                outcomes[fuzzer.case(case)] += 1
            except (Exception, CaseTimeout) as exc:
                if replay:
                    traceback.print_exc()
                frames = traceback.extract_tb(exc.__traceback__)
                ours = [f for f in frames if "/engine/" in f.filename] or frames
                where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours[-3:]))
                message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400]
                failures.append(Failure(target, seed, number, case.notes, message, where))
                print(failures[-1], flush=True)  # at once: a later case may hang or crash the process
                outcomes["FAILED"] += 1
            finally:
                signal.alarm(0)
                shutil.rmtree(work, ignore_errors=True)
    return outcomes, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=0, help="number of the first case")
    parser.add_argument("--case", type=int, help="replay this one case, with its traceback")
    parser.add_argument("--memory-gib", type=float, default=DEFAULT_MEMORY_GIB,
                        help="address space the cases may add (0: no limit)")
    parser.add_argument("--trace", action="store_true", help="print each case number to stderr before it runs")
    args = parser.parse_args(argv)
    first, cases = (args.case, 1) if args.case is not None else (args.first, args.cases)

    def trace(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    outcomes, failures = run(args.target, args.seed, cases, first, args.memory_gib or None,
                             trace if args.trace else None, replay=args.case is not None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    print(f"{args.target}: {cases} cases (seed {args.seed}, from {first}) in {time.perf_counter() - started:.1f} s, "
          f"peak RSS {peak:.0f} MB: {summary}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
