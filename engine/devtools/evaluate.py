"""Measured quality (`make evaluate`): held-out scores of the default models
and their baselines, written as sections of reports/quality.json.

Translation: the model runs through the real tile pipeline over the whole
scene; scores are taken on the blocks its training held out (rebuilt from the
configuration in its model card), against the trivial baseline (every pixel
the most frequent target colour) and the same U-Net trained with L1 only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from .. import metrics
from ..bands import display_bands
from ..errors import InputError
from ..modelfile import read_card
from ..pipeline import TileOptions
from ..preview import read_rgb, side_by_side
from ..progress import ConsoleFeedback
from ..training.report import update_report
from ..translation.apply import translate
from ..translation.train import config_from_card, prepare_data
from ..windows import TileGrid

REPORT = Path("reports") / "quality.json"


def _scores(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, colors) -> dict:
    return {
        "acc_delta5": metrics.acc_delta(pred, target, 5, valid),
        "acc_delta10": metrics.acc_delta(pred, target, 10, valid),
        "miou": metrics.miou(pred, target, colors, valid)[0],
        "psnr_db": metrics.psnr(pred, target, valid=valid),
        "ssim": metrics.ssim(pred, target, valid=valid),
    }


def _tile_seam_ratio(image: np.ndarray, tile: int, overlap: int) -> float:
    """Mean |gradient| across the lines where tiles meet (centre of each overlap)
    over the mean |gradient| elsewhere; 1.0 means no visible seam."""
    grid = TileGrid(image.shape[1], image.shape[2], tile, overlap)
    return metrics.seam_ratio(image, metrics.cut_lines(grid.row_offsets, overlap, size=grid.height),
                              metrics.cut_lines(grid.col_offsets, overlap, size=grid.width))


def evaluate_translation(model: str, baseline: str, work: Path, batch_size: int = 4) -> dict:
    card = read_card(model)
    config = config_from_card(card)
    pairs, legend = prepare_data(config)
    pair, split = pairs.pairs[0], pairs.block_split
    if split is None:
        raise InputError("make evaluate scores a model trained on one raster and its map; this one learnt from "
                         f"many pairs ({card.training.get('data', '')})")
    valid = split.mask("val") & pair.valid
    colors = [c for k, c in legend.items() if not (config.unlabelled_background and k == "background")]
    r0, c0, r1, c1 = pair.window
    window = Window(c0, r0, c1 - c0, r1 - r0)
    out = {"data": card.training.get("data", ""), "held_out": {
        "blocks": len(split.val_blocks), "block_px": config.block_size, "pixels_scored": int(valid.sum()),
        "note": "scores on labelled pixels of the validation blocks the training never saw; 'model' and 'l1' "
                "as translate draws by default (nearest legend colour), '*_raw' the networks' raw colours"}}
    predictions = {}
    for name, path in (("model", model), ("l1", baseline)):
        for snap in (True, False):  # as `translate` draws by default (legend colours), and raw
            output = work / f"translate_{name}{'' if snap else '_raw'}.tif"
            result = translate(config.input, output, path, TileOptions(batch_size=batch_size), ConsoleFeedback(),
                               snap=snap)
            with rasterio.open(output) as src:
                pred = src.read(window=window)
            key = name if snap else f"{name}_raw"
            predictions[key] = pred
            out[key] = _scores(pred, pair.y, valid, colors)
            out[key]["seconds"] = round(result.stats.seconds, 1)
    tiling = read_card(model)
    with rasterio.open(work / "translate_model_raw.tif") as src:  # the whole raster: the grid starts at (0, 0)
        out["model"]["seam_boundary_ratio"] = _tile_seam_ratio(src.read(), tiling.tile_size, tiling.overlap)
    for key in ("model_raw", "l1_raw"):  # the period-2 pattern of the raw output on the held-out blocks
        out[key]["checkerboard"] = _checkerboard(predictions[key], pair.y, split.val_blocks)
    trivial = metrics.trivial_prediction(pair.y, valid)
    out["trivial"] = _scores(trivial, pair.y, valid, colors)
    _preview(config, pair, split, predictions, work)
    flat = {f"translate.{k}": v for k, v in out["model"].items()}
    flat.update({f"translate.{m}_{b}": out[b][m] for b in ("trivial", "l1", "model_raw", "l1_raw")
                 for m in ("miou", "acc_delta10", "acc_delta5", "psnr_db", "ssim")})
    flat.update({f"translate.checkerboard_{b}": out[f"{b}_raw"]["checkerboard"] for b in ("model", "l1")})
    out["summary"] = flat
    out["goals"] = {
        "miou_beats_baselines": out["model"]["miou"] > max(out["trivial"]["miou"], out["l1"]["miou"]),
        "acc_delta10_beats_baselines":
            out["model"]["acc_delta10"] > max(out["trivial"]["acc_delta10"], out["l1"]["acc_delta10"]),
        "no_seams": out["model"]["seam_boundary_ratio"] <= 1.05,
    }
    return out


def _checkerboard(pred: np.ndarray, target: np.ndarray, blocks) -> float:
    """`metrics.checkerboard` over the held-out blocks, pooled."""
    crops = [(r0, c0, r1, c1) for r0, c0, r1, c1 in blocks if min(r1 - r0, c1 - c0) >= 64]
    return metrics.checkerboard([pred[:, r0:r1, c0:c1] for r0, c0, r1, c1 in crops],
                                [target[:, r0:r1, c0:c1] for r0, c0, r1, c1 in crops])


def _preview(config, pair, split, predictions, work: Path) -> None:
    """reports/translate_preview.png: a held-out block, input | model | L1 | target."""
    b = max(split.val_blocks, key=lambda blk: pair.valid[blk[0]:blk[2], blk[1]:blk[3]].mean())
    r0, c0 = pair.window[0] + b[0], pair.window[1] + b[1]
    window = Window(c0, r0, b[3] - b[1], b[2] - b[0])
    bands = [pair.bands[i] for i in display_bands(pair.band_names)]  # natural colour when the names say
    pictures = [read_rgb(config.input, bands, 512, window)]
    for name in ("model", "l1"):
        pictures.append(predictions[name][:, b[0]:b[2], b[1]:b[3]].transpose(1, 2, 0).copy())
    pictures.append(pair.y[:, b[0]:b[2], b[1]:b[3]].transpose(1, 2, 0).copy())
    side_by_side(pictures, ["Sentinel-2 (held out)", "SatGen Pix2Pix", "L1-only baseline", "OSM target"],
                 Path("reports") / "translate_preview.png")


def main(args) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if "translate" in args.only:
        section = evaluate_translation(args.translate_model, args.translate_baseline, work)
        update_report("translate", section, REPORT)
        _print(section, "reports/translate_preview.png")
    if "inpaint" in args.only:
        from .evaluate_inpainting import evaluate_inpainting

        section = evaluate_inpainting(args.inpaint_model, work / "inpaint")
        update_report("inpaint", section, REPORT)
        _print(section, "reports/inpaint_preview.png")
    if "synthesize" in args.only:
        section = evaluate_synthesis_section(args.synthesize_model, args.synthesize_baseline, n=100, repeats=10,
                                             inception_weights=args.inception_weights)
        _print(section, "reports/train_synthesize/samples.png")
    return 0


def _show(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    return str(value if value is None or isinstance(value, str) else round(float(value), 4))


def _print(section: dict, preview: str) -> None:
    for key, value in section["summary"].items():
        print(f"{key:40s} {_show(value)}")
    print("goals:", json.dumps(section["goals"]))
    print(f"wrote {REPORT} and {preview}")


def evaluate_synthesis_section(model: str, baseline: str, n: int = 100, repeats: int = 2,
                               report: Path = REPORT, inception_weights=None, device: str = "auto",
                               **seeds) -> dict:
    """The `synthesize` section of quality.json on its own (see engine.synthesis.evaluation)."""
    from ..synthesis.evaluation import evaluate_synthesis

    section = evaluate_synthesis(model, baseline, n=n, repeats=repeats, feedback=ConsoleFeedback(),
                                 inception_weights=inception_weights, device=device, **seeds)
    update_report("synthesize", section, report)
    return section


def main_synthesis(args) -> int:
    section = evaluate_synthesis_section(args.model, args.baseline, args.n, args.repeats, Path(args.report),
                                         args.inception_weights, args.device, seed=args.seed,
                                         classifier_seed=args.classifier_seed)
    for key, value in section["summary"].items():
        print(f"{key:40s} {_show(value)}")
    print("goals:", json.dumps(section["goals"]))
    print(f"wrote the synthesize section of {args.report}")
    return 0
