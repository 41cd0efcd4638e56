"""Measured quality of cloud inpainting (`make evaluate`, section `inpaint`).

1. Held-out blocks of the clear Sentinel-2 scene the default model trained on
   (the blocks its training held out, rebuilt from the configuration in its card),
   each covered by real cloud shapes at 10-50 % cover: windows of the Landsat-8
   BQA cloud mask of the Pensacola scene, rows training never lent shapes from
   (the training used the top half), unioned and enlarged until they reach the
   wanted cover. Every case runs through the real tool (`inpaint`, GeoTIFF in and
   out); scores are taken inside the mask against the true clear pixels, on the
   model's 2-98 % band range scaled to 0..1. Baselines in the same run: GDAL
   FillNodata (QGIS's "Fill nodata"; search distance large enough to fill every
   hole, no smoothing) and the mean of the clear pixels of the block.
2. The real cloudy/clear Landsat TM series (Fmask): each date with 10-50 % cloud +
   cloud shadow is filled and compared with the nearest clear date. A 3-band model
   (b3 b4 b5) is trained for this on the other clear dates (never the dates scored
   against), then model vs FillNodata; and with a reference (the next-nearest clear
   date, `inpaint(reference=...)`).
3. Reference-date fill on the goal's protocol: every clear date of the series under
   the real Fmask cloud + shadow shape of a cloudy date, the nearest other clear date
   as reference, truth the date itself; vs FillNodata and the harmonic fill alone.
4. Several reference dates (`evaluate_multidate`, docs/protocol-multidate-inpainting.md).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from .. import metrics
from ..bands import display_bands
from ..inpainting.apply import MaskOptions, inpaint
from ..inpainting.data import load_clear
from ..inpainting.train import InpaintingConfig, train_inpainting
from ..modelfile import read_card
from ..pipeline import TileOptions
from ..preview import side_by_side
from ..progress import ConsoleFeedback, Feedback
from .baselines import fill_nodata, write_case

EVAL_MASK = "data/samples/l8_pensacola_cloudmask.tif"
EVAL_MASK_ROW0 = 301  # the training lent shapes from rows 0..300 only
COVERAGES = (0.1, 0.2, 0.3, 0.4, 0.5)
SERIES = "data/samples/lsts"


def real_cloud(pool: np.ndarray, size: int, coverage: float, rng: np.random.Generator) -> np.ndarray:
    """A size x size mask of real cloud shapes with about `coverage` cloud: windows of the
    real mask at 1-3x enlargement (nearest), the closest of many, unioned with more until
    the cover is reached."""
    out = np.zeros((size, size), bool)
    for _ in range(8):
        best, best_err = None, None
        for _ in range(60):
            scale = int(rng.integers(1, 4))
            win = -(-size // scale)
            r = int(rng.integers(0, pool.shape[0] - win + 1))
            c = int(rng.integers(0, pool.shape[1] - win + 1))
            cand = pool[r:r + win, c:c + win].repeat(scale, 0).repeat(scale, 1)[:size, :size]
            cand = np.rot90(cand, int(rng.integers(4)))
            err = abs((out | cand).mean() - coverage)
            if best_err is None or err < best_err:
                best, best_err = cand, err
        out |= best
        if out.mean() >= 0.9 * coverage:
            break
    return out


def _to_unit(values: np.ndarray, low, high) -> np.ndarray:
    low = np.asarray(low, np.float64)[:, None, None]
    high = np.asarray(high, np.float64)[:, None, None]
    return (values.astype(np.float64) - low) / (high - low)


def _scores(pred, truth, cloud, low, high) -> dict:
    p, t = _to_unit(pred, low, high), _to_unit(truth, low, high)
    diff = (p - t)[:, cloud]
    return {"psnr_mask_db": metrics.psnr(p, t, data_range=1.0, valid=cloud),
            "ssim_mask": metrics.ssim(p, t, data_range=1.0, valid=cloud),
            "mae_mask": float(np.abs(diff).mean())}


def mean_fill(image: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    out = image.copy()
    for b in range(image.shape[0]):
        out[b][cloud] = np.round(image[b][~cloud].mean()).astype(image.dtype)
    return out


def _run_case(model, image, cloud, profile, work: Path, name: str, batch_size: int, feedback,
              reference: str | None = None) -> tuple[np.ndarray, bool]:
    src = write_case(work / f"{name}.tif", image, profile)
    mask = write_case(work / f"{name}_mask.tif", cloud[None].astype(np.uint8), dict(profile, nodata=None))
    out = work / f"{name}_filled.tif"
    inpaint(src, out, model, MaskOptions(mask=mask), TileOptions(batch_size=batch_size), feedback,
            reference=reference)
    with rasterio.open(out) as dst:
        filled = dst.read()
    for p in (src, mask, out):
        os.remove(p)
    return filled, bool(np.array_equal(filled[:, ~cloud], image[:, ~cloud]))


def _day(date: str) -> np.datetime64:
    return np.datetime64(date)


def _read_scene(path) -> tuple[np.ndarray, dict]:
    """(bands, profile for writing a case like it) of a series image."""
    with rasterio.open(path) as src:
        return src.read(), dict(driver="GTiff", crs=src.crs, transform=src.transform, width=src.width,
                                height=src.height, nodata=src.nodata)


def _mean(rows: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def evaluate_heldout(model: str, work: Path, seed: int = 7, batch_size: int = 4, feedback: Feedback | None = None):
    feedback = feedback or Feedback()
    card = read_card(model)
    cfg = card.training["config"]
    scene = load_clear(cfg["inputs"], cfg.get("bands"), cfg["block_size"], cfg["val_fraction"], cfg["seed"],
                       cfg["patch_size"])[0]
    low, high = card.inputs.low, card.inputs.high
    with rasterio.open(EVAL_MASK) as m:
        pool = m.read(1)[EVAL_MASK_ROW0:] != 0
    with rasterio.open(scene.path) as src:
        base = dict(driver="GTiff", crs=src.crs, nodata=None)
        transform = src.transform
    rng = np.random.default_rng(seed)
    blocks = [b for b in scene.split.val_blocks if (b[2] - b[0], b[3] - b[1]) == (card.tile_size,) * 2
              and scene.valid[b[0]:b[2], b[1]:b[3]].all()]
    rows, identical, picture = [], True, None
    for i, (r0, c0, r1, c1) in enumerate(blocks):
        image = np.ascontiguousarray(scene.x[:, r0:r1, c0:c1])
        profile = dict(base, width=c1 - c0, height=r1 - r0, transform=transform * transform.translation(c0, r0))
        for cov in COVERAGES:
            cloud = real_cloud(pool, r1 - r0, cov, rng)
            filled, same = _run_case(model, image, cloud, profile, work, f"case{i}", batch_size, feedback)
            identical &= same
            row = {"block": [int(r0), int(c0)], "coverage": float(cloud.mean())}
            for name, pred in (("model", filled), ("fillnodata", fill_nodata(image, cloud)),
                               ("meanfill", mean_fill(image, cloud))):
                row.update({f"{k}_{name}": v for k, v in _scores(pred, image, cloud, low, high).items()})
            rows.append(row)
            if picture is None and cov == 0.3:
                picture = (image, cloud, filled, row)
    out = {
        "data": card.training.get("data", ""),
        "held_out": f"{len(blocks)} held-out {card.tile_size} px blocks x {len(COVERAGES)} cover levels "
                    f"({', '.join(f'{c:.0%}' for c in COVERAGES)}) = {len(rows)} cases",
        "masks": "real cloud shapes: Landsat-8 BQA high-confidence cloud (bits 14-15 == 3) of l8_pensacola, rows "
                 f"{EVAL_MASK_ROW0}+ (never used in training), windows enlarged 1-3x and unioned to the cover",
        "scale": "inside the mask, bands scaled by the model's 2-98 % training range to 0..1",
        "coverage_mean": _mean(rows, "coverage"),
        "outside_identical": identical,
        "cases": rows,
    }
    for method in ("model", "fillnodata", "meanfill"):
        for metric in ("psnr_mask_db", "ssim_mask", "mae_mask"):
            out[f"{metric}_{method}"] = _mean(rows, f"{metric}_{method}")
    return out, picture, card


def _series(path_glob: str):
    """[(date, image path, fmask array)] of the Landsat series, sorted by date."""
    items = []
    for fmask in sorted(glob.glob(os.path.join(path_glob, "*_fmask.tif"))):
        with rasterio.open(fmask) as m:
            items.append((os.path.basename(fmask)[:10], fmask.replace("_fmask.tif", ".tif"), m.read(1)))
    return items


def evaluate_series(work: Path, feedback: Feedback | None = None, epochs: int = 8, batch_size: int = 4):
    """Cloudy dates of the Fmask series filled, vs the nearest clear date."""
    feedback = feedback or Feedback()
    items = _series(SERIES)
    if not items:
        return {"skipped": f"no Landsat series in {SERIES}; run make data"}
    stats = []
    for date, path, fm in items:
        valid = fm != 255
        n = max(1, valid.sum())
        cloud, shadow = (float(((fm == code) & valid).sum() / n) for code in (4, 2))
        stats.append((date, path, fm, valid.mean(), cloud + shadow))
    clear = [s for s in stats if s[3] > 0.99 and s[4] < 0.01]
    cloudy = [s for s in stats if s[3] > 0.99 and 0.1 <= s[4] <= 0.5]
    pairs = [(c, min(clear, key=lambda s: abs(_day(s[0]) - _day(c[0])))) for c in cloudy]
    truth_dates = {t[0] for _, t in pairs}
    train = [s[1] for s in clear if s[0] not in truth_dates]
    model = work / "series_model.satgen"
    config = InpaintingConfig(inputs=train, output_model=str(model), report_dir=str(work / "series_train"),
                              epochs=epochs, patches_per_epoch=400, batch_size=8, patch_size=32, tile_size=64,
                              overlap=16, ngf=16, depth=5, ndf=16, block_size=32, val_fraction=0.2, seed=0,
                              name="Landsat TM b3 b4 b5 inpainting (evaluation)")
    train_inpainting(config, feedback)  # resumes from its checkpoint: a no-op when done, refused if settings changed
    card = read_card(model)
    low, high = card.inputs.low, card.inputs.high
    rows = []
    for (date, path, fm, _, cover), (tdate, tpath, _, _, _) in pairs:
        image, profile = _read_scene(path)
        truth, _ = _read_scene(tpath)
        cloud = (fm == 4) | (fm == 2)
        filled, same = _run_case(str(model), image, cloud, profile, work, f"series_{date}", batch_size, feedback)
        # the reference: the nearest clear date other than the one scored against
        rdate, rpath = min(((s[0], s[1]) for s in clear if s[0] != tdate), key=lambda s: abs(_day(s[0]) - _day(date)))
        with_ref, same_ref = _run_case(str(model), image, cloud, profile, work, f"series_{date}_ref", batch_size,
                                       feedback, reference=rpath)
        row = {"date": date, "clear_date": tdate, "reference_date": rdate, "cloud_and_shadow": cover,
               "outside_identical": same and same_ref}
        for name, pred in (("model", filled), ("reference", with_ref), ("fillnodata", fill_nodata(image, cloud))):
            row.update({f"{k}_{name}": v for k, v in _scores(pred, truth, cloud, low, high).items()})
        rows.append(row)
    out: dict[str, Any] = {
        "data": "Landsat TM/ETM+ surface reflectance series (b3 b4 b5, 30 m, 61 x 61 px) with Fmask; "
                "cloud (4) + cloud shadow (2) filled, compared with the nearest clear date",
        "model": f"trained for this on {len(train)} clear dates (never a date scored against), "
                 f"{epochs} epochs x 400 patches of 32 px",
        "reference": "with a reference: the nearest clear date other than the one scored against",
        "cases": rows}
    for method in ("model", "reference", "fillnodata"):
        for metric in ("psnr_mask_db", "ssim_mask", "mae_mask"):
            out[f"{metric}_{method}"] = _mean(rows, f"{metric}_{method}")
    out["clear_dates_with_real_clouds"] = _reference_cases(str(model), clear, [c[2] for c in cloudy], work,
                                                           batch_size, feedback)
    return out


def _reference_cases(model: str, clear, cloud_fmasks, work: Path, batch_size: int, feedback) -> dict:
    """Every clear date of the series under the real cloud + shadow shape of a cloudy date, filled
    with the nearest other clear date as reference, vs FillNodata and the harmonic fill alone;
    truth: the clear date itself. (No model-only column: the series model trained on these dates.)"""
    from ..inpainting.fills import harmonic_fill

    images = {date: (path, *_read_scene(path)) for date, path, *_ in clear}
    inputs = read_card(model).inputs
    low, high = inputs.low, inputs.high
    rows = []
    for i, (date, (_path, image, profile)) in enumerate(images.items()):
        fm = cloud_fmasks[i % len(cloud_fmasks)]
        cloud = (fm == 4) | (fm == 2)
        rdate = min((d for d in images if d != date), key=lambda d: abs(_day(d) - _day(date)))
        filled, same = _run_case(model, image, cloud, profile, work, f"clear_{date}", batch_size, feedback,
                                 reference=images[rdate][0])
        known = torch.from_numpy(~cloud)[None, None].double()
        harmonic = harmonic_fill(torch.from_numpy(image.astype(np.float64))[None], known)[0].numpy()
        row = {"date": date, "reference_date": rdate, "gap_days": int(abs((_day(rdate) - _day(date)).astype(int))),
               "cloud_and_shadow": float(cloud.mean()), "outside_identical": same}
        for name, pred in (("reference", filled), ("fillnodata", fill_nodata(image, cloud)),
                           ("harmonic", np.where(cloud, harmonic, image))):
            row.update({f"{k}_{name}": v for k, v in _scores(pred, image, cloud, low, high).items()})
        rows.append(row)
    out = {"protocol": f"{len(rows)} clear dates, each under the real Fmask cloud + shadow shape of one of the "
                       f"{len(cloud_fmasks)} cloudy dates (in turn); reference: the nearest other clear date; "
                       "truth: the clear date itself",
           "gap_days_mean": _mean(rows, "gap_days"), "coverage_mean": _mean(rows, "cloud_and_shadow"),
           "outside_identical": all(r["outside_identical"] for r in rows), "cases": rows}
    for method in ("reference", "fillnodata", "harmonic"):
        for metric in ("psnr_mask_db", "ssim_mask", "mae_mask"):
            out[f"{metric}_{method}"] = _mean(rows, f"{metric}_{method}")
    return out


def evaluate_inpainting(model: str, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    feedback = ConsoleFeedback()
    held, picture, card = evaluate_heldout(model, work, feedback=Feedback())
    series = evaluate_series(work, feedback)
    from .detector import detection_accuracy
    from .evaluate_multidate import evaluate_multidate
    from .evaluate_multidate import summary as multidate_summary

    multidate = evaluate_multidate(work / "multidate", feedback=feedback)
    out = {"held_out": held, "landsat_series": series, "multidate": multidate, "detection": detection_accuracy()}
    summary = {f"inpaint.{k}": held[k] for k in held if k.endswith(("_model", "_fillnodata", "_meanfill"))}
    summary = {k.replace("_model", ""): v for k, v in summary.items()}
    summary["inpaint.outside_identical"] = held["outside_identical"]
    summary["inpaint.coverage_mean"] = held["coverage_mean"]
    if "cases" in series:
        summary["inpaint.series_psnr_mask_db"] = series["psnr_mask_db_model"]
        summary["inpaint.series_psnr_mask_db_fillnodata"] = series["psnr_mask_db_fillnodata"]
        summary["inpaint.series_psnr_mask_db_reference"] = series["psnr_mask_db_reference"]
        ref = series["clear_dates_with_real_clouds"]
        for metric in ("psnr_mask_db", "ssim_mask"):
            for method in ("reference", "fillnodata"):
                summary[f"inpaint.reference_dates_{metric}_{method}"] = ref[f"{metric}_{method}"]
    if "held_out" in multidate:
        summary.update(multidate_summary(multidate))
    for name, scores in out["detection"]["datasets"].items():
        summary[f"inpaint.detection_accuracy_{name}"] = scores["overall_accuracy"]
        summary[f"inpaint.detection_iou_{name}"] = scores["iou"]
    out["summary"] = summary
    out["goals"] = {
        "psnr_3db_above_fillnodata": held["psnr_mask_db_model"] >= held["psnr_mask_db_fillnodata"] + 3.0,
        "ssim_above_fillnodata": held["ssim_mask_model"] > held["ssim_mask_fillnodata"],
        "outside_identical": held["outside_identical"],
    }
    if "cases" in series:  # the same goal for the fill from a second date (a different input, said apart)
        ref = series["clear_dates_with_real_clouds"]
        out["goals"]["with_reference_psnr_3db_above_fillnodata"] = (
            ref["psnr_mask_db_reference"] >= ref["psnr_mask_db_fillnodata"] + 3.0)
        out["goals"]["with_reference_ssim_above_fillnodata"] = ref["ssim_mask_reference"] > ref["ssim_mask_fillnodata"]
        out["goals"]["with_reference_outside_identical"] = ref["outside_identical"]
    if "goals" in multidate:
        out["goals"].update({f"multidate_{k}": v for k, v in multidate["goals"].items()})
    if picture is not None:
        _preview(picture, card)
    return out


def _preview(picture, card) -> None:
    """reports/inpaint_preview.png: a held-out block, cloudy | mask | filled | FillNodata | truth."""
    image, cloud, filled, row = picture
    show = display_bands(card.inputs.names)
    low = np.asarray(card.inputs.low)[show]
    high = np.asarray(card.inputs.high)[show]

    def rgb(a):
        return (np.clip(_to_unit(a[show], low, high), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)

    cloudy = rgb(image)
    cloudy[cloud] = 255
    mask = np.repeat((cloud * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    side_by_side([cloudy, mask, rgb(filled), rgb(fill_nodata(image, cloud)), rgb(image)],
                 [f"cloudy ({row['coverage']:.0%} real cloud shapes)", "mask", "SatGen fill",
                  "GDAL FillNodata", "truth (held out)"], Path("reports") / "inpaint_preview.png")
