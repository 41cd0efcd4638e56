"""Measured quality of the cloud fill from several dates (`make evaluate`, section
`inpaint.multidate`), following docs/protocol-multidate-inpainting.md, which was
committed before the first held-out number.

The Landsat series of `make data`: each clear date ("truth") under three kinds of
cloud mask, filled by the real tool (`inpaint`, GeoTIFF in and out) from its 1, 2 and 3
nearest usable dates (each with its own Fmask clouds), against plain pasting of the
nearest date, GDAL FillNodata and the single-date model, in one run. Settings of the
method were chosen on the development dates (before 2010); the goals are taken on the
held-out dates (2010 on). Also the coverage of the stated 80 % uncertainty intervals.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from .. import metrics
from ..inpainting.apply import MODEL_CODE, MaskOptions, inpaint
from ..inpainting.data import fractal_noise
from ..inpainting.references import ReferenceOptions
from ..inpainting.train import InpaintingConfig, train_inpainting
from ..pipeline import TileOptions
from ..preview import side_by_side
from ..progress import Feedback
from .baselines import fill_nodata, write_case

SERIES = "data/samples/lsts"
HELD_OUT_FROM = "2010"  # truth dates from this year on are held out
MASK_TYPES = ("fmask", "blob", "scattered")
KS = (1, 2, 3)
NODATA = -9999


def _load(folder: str):
    """[(date, image path, image (3, H, W) int16, fmask, clear & valid)] sorted by date."""
    items = []
    for fmask_path in sorted(glob.glob(os.path.join(folder, "*_fmask.tif"))):
        path = fmask_path.replace("_fmask.tif", ".tif")
        with rasterio.open(fmask_path) as m, rasterio.open(path) as src:
            fm, image = m.read(1), src.read()
        ok = (fm != 255) & (fm != 4) & (fm != 2) & (image != NODATA).all(0)
        items.append((os.path.basename(path)[:10], path, image, fm, ok))
    return items


def _blob(rng: np.random.Generator, size: int, cover: float = 0.3) -> np.ndarray:
    r = np.sqrt(cover * size * size / np.pi)
    cy, cx = rng.uniform(r * 0.6, size - r * 0.6, 2)
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _scattered(rng: np.random.Generator, size: int, cover: float = 0.25) -> np.ndarray:
    noise = fractal_noise(size, rng, beta=1.2)
    return noise > np.quantile(noise, 1 - cover)


def _days(a: str, b: str) -> int:
    return abs(int((np.datetime64(a) - np.datetime64(b)).astype(int)))


def _model(train_paths: list[str], work: Path, name: str, feedback: Feedback) -> str:
    model = work / f"{name}.satgen"
    config = InpaintingConfig(inputs=train_paths, output_model=str(model), report_dir=str(work / f"{name}_train"),
                              epochs=8, patches_per_epoch=400, batch_size=8, patch_size=32, tile_size=64,
                              overlap=16, ngf=16, depth=5, ndf=16, block_size=32, val_fraction=0.2, seed=0,
                              name=f"Landsat TM b3 b4 b5 inpainting (evaluation, {name})")
    train_inpainting(config, feedback)  # resumes from its checkpoint: a no-op when done
    return str(model)


def evaluate_multidate(work: Path, folder: str = SERIES, feedback: Feedback | None = None) -> dict[str, Any]:
    feedback = feedback or Feedback()
    work.mkdir(parents=True, exist_ok=True)
    items = _load(folder)
    if not items:
        return {"skipped": f"no Landsat series in {folder}; run make data"}
    size = items[0][2].shape[-1]
    clear_pixels = np.concatenate([it[2][:, it[4]] for it in items], axis=1).astype(np.float64)
    low, high = np.percentile(clear_pixels, 2, axis=1), np.percentile(clear_pixels, 98, axis=1)

    def unit(a):
        return (a.astype(np.float64) - low[:, None, None]) / (high - low)[:, None, None]

    def cover(fm):
        return ((fm == 4) | (fm == 2)).mean()

    truth = [i for i, it in enumerate(items) if (it[3] != 255).mean() > 0.99 and cover(it[3]) < 0.01]
    cloudy = [i for i, it in enumerate(items) if (it[3] != 255).mean() > 0.99 and 0.1 <= cover(it[3]) <= 0.5]
    usable = [i for i, it in enumerate(items) if it[4].mean() >= 0.5]
    held = {i for i in truth if items[i][0] >= HELD_OUT_FROM}
    # two folds: the model scoring a date never trained on it
    models = {"dev": _model([items[i][1] for i in truth if i in held], work, "model_for_dev", feedback),
              "held_out": _model([items[i][1] for i in truth if i not in held], work, "model_for_held_out",
                                 feedback)}
    # each reference's own clouds as a mask raster (Fmask cloud, shadow, fill)
    ref_masks = {}
    for i in usable:
        with rasterio.open(items[i][1]) as src:
            profile = dict(driver="GTiff", crs=src.crs, transform=src.transform, width=src.width, height=src.height)
        ref_masks[i] = write_case(work / f"refmask_{items[i][0]}.tif", (~items[i][4])[None].astype(np.uint8),
                                  profile)

    rng = np.random.default_rng(0)
    rows: list[dict] = []
    coverage: dict[str, list] = {}
    picture = None
    for j, ti in enumerate(truth):
        date, path, image, _, _ = items[ti]
        part = "held_out" if ti in held else "dev"
        with rasterio.open(path) as src:
            profile = dict(driver="GTiff", crs=src.crs, transform=src.transform, width=src.width, height=src.height)
        refs = sorted((i for i in usable if i != ti), key=lambda i: (_days(items[i][0], date), i))[:max(KS)]
        for mask_type in MASK_TYPES:
            if mask_type == "fmask":
                fm = items[cloudy[j % len(cloudy)]][3]
                cloud = (fm == 4) | (fm == 2)
            elif mask_type == "blob":
                cloud = _blob(rng, size)
            else:
                cloud = _scattered(rng, size)
            cloud = cloud & (image != NODATA).all(0)  # scored where the truth is known
            case = work / f"{date}_{mask_type}"
            src_path = write_case(Path(f"{case}.tif"), image, dict(profile, nodata=NODATA))
            mask_path = write_case(Path(f"{case}_mask.tif"), cloud[None].astype(np.uint8), profile)
            masks = MaskOptions(mask=mask_path)
            options = TileOptions(batch_size=4)
            preds, sources, halves = {}, {}, {}
            out = Path(f"{case}_model.tif")
            inpaint(src_path, out, models[part], masks, options, Feedback())
            with rasterio.open(out) as dst:
                preds["model"] = dst.read()
            for k in KS:
                out, src_out, unc = (Path(f"{case}_k{k}{s}.tif") for s in ("", "_source", "_uncertainty"))
                options_k = ReferenceOptions(paths=[items[i][1] for i in refs[:k]],
                                             masks=[ref_masks[i] for i in refs[:k]])
                inpaint(src_path, out, models[part], masks, options, Feedback(), reference=options_k,
                        output_source=src_out, output_uncertainty=unc)
                with rasterio.open(out) as a, rasterio.open(src_out) as b, rasterio.open(unc) as c:
                    preds[f"reference_k{k}"], sources[k], halves[k] = a.read(), b.read(1), c.read()
            out = Path(f"{case}_k3_nearest.tif")  # the ablation: per pixel the nearest date clear there
            inpaint(src_path, out, models[part], masks, options, Feedback(), reference=ReferenceOptions(
                paths=[items[i][1] for i in refs], masks=[ref_masks[i] for i in refs], combine="nearest"))
            with rasterio.open(out) as dst:
                preds["reference_k3_nearest"] = dst.read()
            nearest = items[refs[0]]
            preds["paste"] = np.where((cloud & nearest[4])[None], nearest[2], preds["reference_k1"])
            preds["fillnodata"] = fill_nodata(image.astype(np.float32), cloud)
            row: dict[str, Any] = {"date": date, "part": part, "mask": mask_type, "cloud": float(cloud.mean()),
                                   "references": [items[i][0] for i in refs],
                                   "gap_days": [_days(items[i][0], date) for i in refs],
                                   "nearest_clear_share_in_mask": float(nearest[4][cloud].mean()),
                                   "outside_identical": all(bool(np.array_equal(p[:, ~cloud], image[:, ~cloud]))
                                                            for n, p in preds.items() if n != "fillnodata")}
            t = unit(image)
            for name, pred in preds.items():
                p = unit(pred)
                row[f"{name}_psnr_mask_db"] = metrics.psnr(p, t, data_range=1.0, valid=cloud)
                row[f"{name}_ssim_mask"] = metrics.ssim(p, t, data_range=1.0, valid=cloud)
            for k in KS:
                err = np.abs(preds[f"reference_k{k}"].astype(np.float64) - image)[:, cloud]
                inside = err <= halves[k][:, cloud]
                by_model = np.broadcast_to(sources[k][cloud] == MODEL_CODE, inside.shape)
                coverage.setdefault(f"{part}_k{k}", []).append(inside.ravel())
                coverage.setdefault(f"{part}_k{k}_reference", []).append(inside[~by_model])
                coverage.setdefault(f"{part}_k{k}_model", []).append(inside[by_model])
                row[f"reference_k{k}_model_share"] = float((sources[k][cloud] == MODEL_CODE).mean())
            rows.append(row)
            if picture is None and part == "held_out" and mask_type == "fmask":
                picture = (image, cloud, preds, halves[3], row)
            for f in case.parent.glob(case.name + "*"):
                f.unlink()
    result: dict[str, Any] = {
        "protocol": "docs/protocol-multidate-inpainting.md",
        "data": f"Landsat TM/ETM+ series ({len(items)} dates, {size} x {size} px, b3 b4 b5, Fmask); "
                f"{len(truth)} truth dates ({len(truth) - len(held)} development before {HELD_OUT_FROM}, "
                f"{len(held)} held out), {len(usable)} usable reference dates",
        "scale": "inside the mask, bands scaled to 0..1 by the 2-98 % range of all clear pixels of the series",
        "outside_identical": all(r["outside_identical"] for r in rows),
        "cases": rows,
    }
    methods = [f"reference_k{k}" for k in KS] + ["reference_k3_nearest", "paste", "fillnodata", "model"]
    for part in ("held_out", "dev"):
        sel = [r for r in rows if r["part"] == part]
        section: dict[str, Any] = {"cases": len(sel)}
        for method in methods:
            for metric in ("psnr_mask_db", "ssim_mask"):
                per_type = {m: float(np.mean([r[f"{method}_{metric}"] for r in sel if r["mask"] == m]))
                            for m in MASK_TYPES}
                section[f"{method}_{metric}"] = float(np.mean(list(per_type.values())))
                section[f"{method}_{metric}_by_mask"] = per_type
        for key, values in coverage.items():
            if key.startswith(part + "_") and values:
                flat = np.concatenate(values)
                if flat.size:
                    section[f"uncertainty_coverage_80{key[len(part):]}"] = float(flat.mean())
        section["uncertainty_coverage_80"] = section.get("uncertainty_coverage_80_k3")
        result[part] = section
    h = result["held_out"]
    result["goals"] = {
        "k1_at_least_paste_on_every_mask_type": all(
            h["reference_k1_psnr_mask_db_by_mask"][m] >= h["paste_psnr_mask_db_by_mask"][m] for m in MASK_TYPES),
        "k1_1db_over_paste": h["reference_k1_psnr_mask_db"] >= h["paste_psnr_mask_db"] + 1.0,
        "k3_1db_over_k1": h["reference_k3_psnr_mask_db"] >= h["reference_k1_psnr_mask_db"] + 1.0,
        "uncertainty_coverage_80_in_75_85": 0.75 <= h["uncertainty_coverage_80"] <= 0.85,
        "outside_identical": result["outside_identical"],
    }
    if picture is not None:
        _preview(picture, low, high)
    return result


def _preview(picture, low, high, path: Path = Path("reports") / "inpaint_multidate_preview.png") -> None:
    """A held-out clear date under a real cloud shape: cloudy | k=1 | k=3 | paste | truth | uncertainty,
    as false colour (b5 b4 b3), enlarged 4x."""
    image, cloud, preds, half, row = picture
    order = [2, 1, 0]

    def rgb(a):
        u = (a[order].astype(np.float64) - low[order, None, None]) / (high - low)[order, None, None]
        out = (np.clip(u, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        return out.repeat(4, 0).repeat(4, 1)

    shown = rgb(image)
    shown[cloud.repeat(4, 0).repeat(4, 1)] = 255
    spread = half.mean(0) / np.maximum(half.mean(0).max(), 1e-9)
    unc = np.repeat((spread * 255).astype(np.uint8)[:, :, None], 3, axis=2).repeat(4, 0).repeat(4, 1)
    gaps = ", ".join(str(g) for g in row["gap_days"])
    side_by_side([shown, rgb(preds["reference_k1"]), rgb(preds["reference_k3"]), rgb(preds["paste"]),
                  rgb(image), unc],
                  [f"{row['date']} under a real cloud", "1 reference", "3 references", "paste nearest",
                   "truth (held out)", f"80% half-width (gaps {gaps} d)"], path)


def summary(section: dict) -> dict:
    """The quality.json summary keys of the multidate section (held-out part)."""
    h = section["held_out"]
    keys = {f"inpaint.reference_k{k}_psnr_mask_db": h[f"reference_k{k}_psnr_mask_db"] for k in KS}
    keys.update({f"inpaint.reference_k{k}_ssim_mask": h[f"reference_k{k}_ssim_mask"] for k in KS})
    keys.update({"inpaint.paste_psnr_mask_db": h["paste_psnr_mask_db"],
                 "inpaint.paste_ssim_mask": h["paste_ssim_mask"],
                 "inpaint.multidate_fillnodata_psnr_mask_db": h["fillnodata_psnr_mask_db"],
                 "inpaint.multidate_model_psnr_mask_db": h["model_psnr_mask_db"],
                 "inpaint.uncertainty_coverage_80": h["uncertainty_coverage_80"]})
    return keys


def main() -> int:
    """Measure this section alone and put it into reports/quality.json's inpaint section."""
    import json

    from ..progress import ConsoleFeedback
    from ..training.report import update_report

    section = evaluate_multidate(Path("build/evaluate/multidate"), feedback=ConsoleFeedback())
    report = Path("reports") / "quality.json"
    inpaint_section = json.loads(report.read_text()).get("inpaint", {}) if report.exists() else {}
    inpaint_section.pop("date", None)
    inpaint_section.pop("command", None)
    inpaint_section["multidate"] = section
    inpaint_section.setdefault("summary", {}).update(summary(section))
    inpaint_section.setdefault("goals", {}).update({f"multidate_{k}": v for k, v in section["goals"].items()})
    update_report("inpaint", inpaint_section, report, command="python -m engine.devtools.evaluate_multidate")
    for part in ("held_out", "dev"):
        print(part, json.dumps({k: v for k, v in section[part].items() if not k.endswith("_by_mask")}, indent=1))
        by_mask = {k: v for k, v in section[part].items() if k.endswith("psnr_mask_db_by_mask")}
        print(part, "by mask", json.dumps(by_mask))
    print("goals:", json.dumps(section["goals"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
