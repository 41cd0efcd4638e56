"""`synthesize`: N labelled patches of chosen classes from a synthesis model file.

Output, a labelled data set as class-folder tools read it::

    OUTPUT_FOLDER/
      <class>/<class>_s<seed>_<index>.tif|png
      manifest.csv   file, class, index, seed, model, architecture, guidance, steps

plus an optional preview mosaic (one row per class; GeoTIFF loads as a layer,
.png for viewing). GeoTIFF patches hold values in the band units and dtype the
model was trained on; PNG patches are 8-bit natural-colour views.

Same seed, same patches: patch i of class c starts from noise drawn from a
generator seeded with (seed, c), one patch after another, so asking for more
patches only appends new ones.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..bands import display_bands
from ..card import ModelCard
from ..device import resolve_device
from ..errors import InputError
from ..fileio import atomic_folder, atomic_path, check_not_same_file, check_output_folder
from ..modelfile import LoadedModel, default_model, load_model
from ..progress import Feedback
from ..raster import verify_geotiff
from ..scaling import cast_to_dtype
from .diffusion import heun_sample

FORMATS = ("tif", "png")
DEFAULT_GUIDANCE, DEFAULT_STEPS = 1.5, 18


def load_synthesis_model(path: str | os.PathLike | None, device="cpu") -> LoadedModel:
    return load_model(path or default_model("synthesize"), device=device, tasks=("synthesize",))


def sampler_defaults(card: ModelCard) -> tuple[float, int]:
    sampler = card.training.get("sampler", {})
    guidance, steps = sampler.get("guidance"), sampler.get("steps")  # None while training chooses the guidance
    return (DEFAULT_GUIDANCE if guidance is None else float(guidance)), (DEFAULT_STEPS if steps is None else int(steps))


def resolve_classes(card: ModelCard, classes) -> list[int]:
    """Class names (a list, or text separated by commas; empty: all) -> indexes into card.classes."""
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if not classes:
        return list(range(len(card.classes)))
    exact = {c: i for i, c in enumerate(card.classes)}
    lower: dict[str, list[int]] = {}
    for i, c in enumerate(card.classes):
        lower.setdefault(c.lower(), []).append(i)

    def index(name) -> int | None:
        """The exact name first; else the one class equal to it but for case."""
        name = str(name)
        if name in exact:
            return exact[name]
        found = lower.get(name.lower(), [])
        if len(found) > 1:
            raise InputError(f"class {name!r} matches {', '.join(repr(card.classes[i]) for i in found)}, which "
                             f"differ only in case; give one of them exactly")
        return found[0] if found else None

    indexes = [index(c) for c in classes]
    unknown = [c for c, i in zip(classes, indexes, strict=True) if i is None]
    if unknown:
        raise InputError(f"the model knows no class {', '.join(repr(c) for c in unknown)}; its classes are: "
                         f"{', '.join(card.classes)}")
    return [i for i in indexes if i is not None]


def _noise(card: ModelCard, class_index: int, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, class_index])
                                          .generate_state(1)[0]))
    shape: tuple[int, ...]
    if card.architecture == "cdcgan":
        shape = (int(card.params.get("nz", 100)),)
    else:
        shape = (card.outputs.count, card.tile_size, card.tile_size)
    return torch.stack([torch.randn(shape, generator=g) for _ in range(count)]) if count else torch.zeros((0,) + shape)


def generate(loaded: LoadedModel, class_index: int, count: int, seed: int = 0, guidance: float | None = None,
             steps: int | None = None, batch_size: int = 32, feedback: Feedback | None = None,
             progress_span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(count, C, P, P) float32 patches in model space [-1, 1] for one class."""
    feedback = feedback or Feedback()
    card, net = loaded.card, loaded.module
    default_g, default_s = sampler_defaults(card)
    guidance = default_g if guidance is None else float(guidance)
    steps = default_s if steps is None else int(steps)
    if count < 1:
        raise InputError(f"COUNT must be at least 1, got {count}")
    if steps < 1:
        raise InputError(f"STEPS must be at least 1, got {steps}")
    if guidance < 0:
        raise InputError(f"GUIDANCE must be 0 or more (1: plain conditional sampling), got {guidance}")
    device = next(net.parameters()).device
    noise = _noise(card, class_index, count, seed)
    out = []
    lo, hi = progress_span
    for start in range(0, count, batch_size):
        feedback.check_cancelled()
        z = noise[start:start + batch_size].to(device)
        labels = torch.full((z.shape[0],), class_index, dtype=torch.long, device=device)
        with torch.inference_mode():
            if card.architecture == "cdcgan":
                x = net(z, labels)
            else:
                x = heun_sample(net, z, labels, steps=steps, guidance=guidance)
        out.append(x.clamp(-1, 1).float().cpu().numpy())
        feedback.progress(lo + (hi - lo) * min(count, start + batch_size) / count)
    return np.concatenate(out)


def to_values(card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Model-space patches (N, C, P, P) -> band values in the card's dtype."""
    values = card.outputs.scaling.from_model(np.moveaxis(x, 1, 0))
    return np.moveaxis(cast_to_dtype(values, card.outputs.dtype or "float32"), 0, 1)


def to_rgb8(card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Model-space patches (N, C, P, P) -> (N, 3, P, P) uint8 natural-colour views."""
    rgb = x[:, display_bands(card.outputs.names)]
    return np.clip(np.rint((rgb + 1) * 127.5), 0, 255).astype(np.uint8)


def _write_tif(path: Path, data: np.ndarray, names: list[str]) -> None:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with atomic_path(path, verify=verify_geotiff) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                           dtype=data.dtype, compress="deflate") as dst:
            dst.write(data)
            for i, n in enumerate(names, start=1):
                dst.set_band_description(i, n)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(rgb.transpose(1, 2, 0)).save(tmp, format="PNG")


def mosaic(rows: list[np.ndarray], gap: int = 2, fill: int = 255) -> np.ndarray:
    """Rows of (n, 3, P, P) uint8 patches -> one (3, H, W) uint8 image."""
    p = rows[0].shape[-1]
    cols = max(len(r) for r in rows)
    out = np.full((3, len(rows) * (p + gap) - gap, cols * (p + gap) - gap), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, patch in enumerate(row):
            out[:, i * (p + gap):i * (p + gap) + p, j * (p + gap):j * (p + gap) + p] = patch
    return out


def write_preview(path: str | os.PathLike, image: np.ndarray) -> Path:
    """The mosaic as PNG (by suffix) or as an RGB GeoTIFF that loads as a layer."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        _write_png(path, image)
    else:
        _write_tif(path, image, ["red", "green", "blue"])
    return path


@dataclass
class SynthesisResult:
    folder: Path
    manifest: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    preview: Path | None = None
    # natural-colour patches per class, for callers in this process (not passed back over a pipe)
    previews: list[np.ndarray] = field(default_factory=list, repr=False, metadata={"local": True})


def synthesize(output_folder: str | os.PathLike, model: str | os.PathLike | None = None, classes=None,
               count: int = 16, seed: int = 0, guidance: float | None = None, steps: int | None = None,
               fmt: str = "tif", output_preview: str | os.PathLike | None = None, device: str = "auto",
               batch_size: int = 32, feedback: Feedback | None = None) -> SynthesisResult:
    """Write `count` patches of each class in `classes` (empty: all) as a labelled data set."""
    feedback = feedback or Feedback()
    if count < 1:
        raise InputError(f"COUNT must be at least 1, got {count}")
    if fmt not in FORMATS:
        raise InputError(f"unknown patch format {fmt!r}; use {' or '.join(FORMATS)}")
    loaded = load_synthesis_model(model, resolve_device(device))
    card = loaded.card
    indexes = resolve_classes(card, classes)
    default_g, default_s = sampler_defaults(card)
    guidance = default_g if guidance is None else guidance
    steps = default_s if steps is None else steps
    if steps < 1:
        raise InputError(f"the sampler needs at least 1 step, got {steps}")
    if not math.isfinite(guidance) or guidance < 0:
        raise InputError(f"guidance must be a finite number of 0 or more (1: plain conditional sampling), "
                         f"got {guidance}")
    folder = Path(output_folder)
    check_not_same_file([loaded.path], [output_preview])
    if output_preview is not None and folder.resolve() not in Path(output_preview).resolve().parents:
        check_output_folder(output_preview)  # now, not after the patches (inside the data set: made with it)
    with atomic_folder(folder) as work:  # the data set appears whole, or not at all (error, cancel)
        result = _write_dataset(work, loaded, indexes, count, seed, guidance, steps, fmt, batch_size, feedback)
    result.folder, result.manifest = folder, folder / "manifest.csv"
    result.files = {name: [folder / p.relative_to(work) for p in files] for name, files in result.files.items()}
    if output_preview:
        result.preview = write_preview(output_preview, mosaic(result.previews))
    feedback.progress(1.0)
    return result


def _write_dataset(folder: Path, loaded: LoadedModel, indexes: list[int], count: int, seed: int, guidance: float,
                   steps: int, fmt: str, batch_size: int, feedback: Feedback) -> SynthesisResult:
    """The class folders, patches and manifest in `folder`."""
    card = loaded.card
    result = SynthesisResult(folder=folder, manifest=folder / "manifest.csv")
    rows: list[dict] = []
    diffusion = card.architecture != "cdcgan"
    stems = _folder_names(card.classes)  # over all classes: the same folder for a class in every run
    for k, ci in enumerate(indexes):
        name = card.classes[ci]
        span = (k / len(indexes), (k + 1) / len(indexes))
        x = generate(loaded, ci, count, seed, guidance, steps, batch_size, feedback, span)
        sub = folder / stems[ci]
        sub.mkdir(exist_ok=True)
        values, rgb = to_values(card, x), to_rgb8(card, x)
        files = []
        for i in range(count):
            path = sub / f"{stems[ci]}_s{seed}_{i:04d}.{fmt}"
            if fmt == "tif":
                _write_tif(path, values[i], card.outputs.names)
            else:
                _write_png(path, rgb[i])
            files.append(path)
            rows.append({"file": str(path.relative_to(folder)), "class": name, "class_index": ci, "index": i,
                         "seed": seed, "model": str(loaded.path.name), "architecture": card.architecture,
                         "guidance": guidance if diffusion else "", "steps": steps if diffusion else "",
                         "patch_size": card.tile_size, "bands": " ".join(card.outputs.names)})
        result.files[name] = files
        result.previews.append(rgb)
        feedback.info(f"{name}: {count} patch(es)")
    with atomic_path(result.manifest) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return result


def _folder_names(names: list[str]) -> list[str]:
    """A file-system-safe folder name per class; classes whose names sanitise alike get a number each,
    so no class writes into another's folder (names are compared without case: some file systems do)."""
    safe = [_safe(n) for n in names]
    clash = {s.lower() for s in safe if sum(t.lower() == s.lower() for t in safe) > 1}
    return [f"{s}_{i + 1}" if s.lower() in clash else s for i, s in enumerate(safe)]


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return keep or "class"
