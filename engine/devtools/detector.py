"""Fitting and measuring the cloud detector (`engine.inpainting.detect`) on real reference masks.

`fit_detector` searches the seven thresholds coordinate-wise, maximising the mean
cloud IoU of two real data sets, on their fitting halves; `detection_accuracy`
scores the held-out halves (`make evaluate` writes the figures to
reports/quality.json, section inpaint.detection):

- Landsat-8 OLI near Pensacola (B1-B7 L1 DN) against its BQA high-confidence
  cloud bits (14-15 == 3): fitted on a 128-px checkerboard's black squares,
  measured on its white ones; also without SWIR (the band set of the 10-m
  Sentinel-2 samples).
- Landsat-5/7 TM/ETM+ time series in Colorado (b3 b4 b5: red, nir, swir1
  surface reflectance) against Fmask (cloud = 4, fill excluded): fitted on the
  even dates, measured on the odd ones.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import rasterio

from ..errors import InputError
from ..inpainting.detect import (
    DETECTOR,
    DetectedMask,
    DetectorThresholds,
    cloud_features,
    cloud_test,
)

# --- fitting and measuring the detector on real reference masks --------------------------------------------------

_EVAL_BLOCK = 128  # Landsat-8 scene: checkerboard squares, black to fit, white to measure


def _reference(samples: Path, part: int, no_swir: bool = False) -> list[tuple[str, dict, np.ndarray]]:
    """[(name, features, truth)] of the fitting (part 0) or held-out (part 1) reference pixels; with
    `no_swir` also the Landsat-8 pixels without their SWIR band."""
    l8 = samples / "l8_pensacola_cloudy.tif"
    truth_path = samples / "l8_pensacola_cloudmask.tif"
    lsts = sorted(p for p in (samples / "lsts").glob("*.tif") if not p.name.endswith("_fmask.tif"))
    missing = [p for p in (l8, truth_path) if not p.exists()] + ([] if lsts else [samples / "lsts"])
    if missing:
        raise InputError(f"reference data {', '.join(map(str, missing))} missing; fetch it with `make data`")
    out = []
    with DetectedMask(l8) as det, rasterio.open(truth_path) as ref:
        refl, valid = det.reflectance(0, det.grid.height, 0, det.grid.width)
        r, c = np.mgrid[0:det.grid.height, 0:det.grid.width]
        keep = valid & ((r // _EVAL_BLOCK + c // _EVAL_BLOCK) % 2 == part)
        truth = ref.read(1)[keep] == 1
        out.append(("l8_pensacola", {k: v[keep] for k, v in cloud_features(refl).items()}, truth))
        if no_swir:
            refl.pop("swir1")
            out.append(("l8_pensacola_no_swir", {k: v[keep] for k, v in cloud_features(refl).items()}, truth))
    feats, truth = [], []
    for path in lsts[part::2]:
        with DetectedMask(path) as det, rasterio.open(str(path)[:-4] + "_fmask.tif") as ref:
            refl, valid = det.reflectance(0, det.grid.height, 0, det.grid.width)
            fmask = ref.read(1)
            keep = valid & (fmask != 255)
            feats.append({k: v[keep] for k, v in cloud_features(refl).items()})
            truth.append(fmask[keep] == 4)
    out.append(("lsts", {k: np.concatenate([f[k] for f in feats]) for k in feats[0]}, np.concatenate(truth)))
    return out


def _scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    n = int(truth.size)
    return {"overall_accuracy": round((n - fp - fn) / max(n, 1), 4), "precision": round(tp / max(tp + fp, 1), 4),
            "recall": round(tp / max(tp + fn, 1), 4), "iou": round(tp / max(tp + fp + fn, 1), 4),
            "pixels": n, "cloud_fraction": round(float(truth.mean()) if n else 0.0, 4)}


def fit_detector(samples: str | os.PathLike = "data/samples", rounds: int = 3) -> DetectorThresholds:
    """Thresholds maximising the mean cloud IoU on the fitting halves (how `DETECTOR` was made).

    Coordinate search from Fmask-like values; where a range of values ties for
    best, the current one stays, else the middle of the tied range is taken.
    """
    sets = _reference(Path(samples), part=0)
    grids = {"bright": np.arange(0.04, 0.4, 0.01), "white": np.arange(0.1, 1.5, 0.05),
             "hot": np.arange(-0.1, 0.2, 0.005), "nir": np.arange(0.0, 0.4, 0.02),
             "ndvi": np.arange(0.1, 0.9, 0.05), "ndsi": np.arange(-0.4, 0.9, 0.05),
             "swir1": np.arange(0.05, 0.5, 0.01)}
    t = DetectorThresholds(bright=0.1, white=0.7, hot=-0.1, nir=0.1, ndvi=0.8, ndsi=0.8, swir1=0.2)

    def objective(th):
        return np.mean([_scores(cloud_test(f, th), y)["iou"] for _, f, y in sets])

    for _ in range(rounds):
        for name, values in grids.items():
            scores = np.array([objective(replace(t, **{name: float(v)})) for v in values])
            if objective(t) < scores.max() - 1e-4:  # else keep the current value: it is tied for best
                tied = values[scores >= scores.max() - 1e-4]
                t = replace(t, **{name: round(float(tied[len(tied) // 2]), 3)})
    return t


def detection_accuracy(samples: str | os.PathLike = "data/samples",
                       thresholds: DetectorThresholds = DETECTOR) -> dict:
    """Accuracy of `DetectedMask` on the held-out halves of the real reference masks (see module docstring)."""
    samples = Path(samples)
    sets = _reference(samples, part=1, no_swir=True)
    splits = {"l8_pensacola": f"BQA bits 14-15 == 3; white squares of a {_EVAL_BLOCK}-px checkerboard",
              "l8_pensacola_no_swir": "as l8_pensacola, bands blue, green, red, nir only",
              "lsts": "Fmask == 4 (fill excluded); odd-numbered of the 105 dates"}
    return {"method": "spectral test (engine.inpainting.detect module docstring), thresholds fitted on the other half",
            "thresholds": asdict(thresholds),
            "datasets": {name: {**_scores(cloud_test(f, thresholds), y), "held_out": splits[name]}
                         for name, f, y in sets}}
