"""Per-band linear scaling between raster values and the model's [-1, 1] range.

Inputs are stretched so that `low` maps to -1 and `high` to +1 (low/high are
e.g. the 2nd and 98th percentiles of each band, fitted at training and kept in
the model card); outputs are mapped back the same way, then cast to the output
dtype with rounding and clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# how apply-tools stretch input bands: as in training (the card's low/high) or fitted on this raster
NORMALIZE = ("model", "scene")
# a band whose typical value lies this far outside the trained [-1, 1], or whose 2-98 % spread is this many
# times wider (or SPREAD_RATIO * 2 times narrower: a calm sea is legitimately flat) than the trained
# one, is not the imagery the model knows
FAR_OUTSIDE = 3.0
SPREAD_RATIO = 8.0


@dataclass(frozen=True)
class BandScaling:
    low: tuple[float, ...]
    high: tuple[float, ...]

    def coefficients(self, ndim: int):
        """(low, high - low) as float32, shaped to broadcast over (bands, ...) of `ndim` dimensions."""
        shape = (-1,) + (1,) * (ndim - 1)  # broadcast over (bands, rows, cols)
        low = np.asarray(self.low, dtype=np.float32).reshape(shape)
        span = np.asarray(self.high, dtype=np.float32).reshape(shape) - low
        return low, span

    def to_model(self, values: np.ndarray, clip: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """(bands, ...) raster values -> float32 in about [-1, 1]; into `out` (float32, the
        shape of `values`) when given."""
        low, span = self.coefficients(values.ndim)
        # in place on one new array: (values - low) * (2 / span) - 1, the same float32 operations
        if out is None:
            out = values.astype(np.float32)
        else:
            np.copyto(out, values, casting="unsafe")  # what astype does
        out -= low
        out *= 2.0 / span
        out -= 1.0
        if clip is not None:
            _clip(out, -clip, clip)
        return out

    def spread_from_model(self, values: np.ndarray) -> np.ndarray:
        """(bands, ...) differences or spreads in model units -> raster units (no offset)."""
        _, span = self.coefficients(values.ndim)
        return values * (0.5 * span)

    def from_model(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(bands, ...) model values in [-1, 1] -> float32 raster values; into `out` (a float array of
        the shape of `values`, which may be `values` itself) when given."""
        low, span = self.coefficients(values.ndim)
        if values.dtype not in (np.float32, np.float64):
            return (values + 1.0) * (0.5 * span) + low
        out = np.add(values, 1.0, out=out)  # the same, in place on one new array (or on `out`)
        out *= 0.5 * span
        out += low
        return out


def fit_percentiles(samples: np.ndarray, lower: float = 2.0, upper: float = 98.0) -> BandScaling:
    """Fit a percentile stretch on (bands, n) valid samples."""
    lo = np.percentile(samples, lower, axis=1)
    hi = np.percentile(samples, upper, axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)  # a constant band still gets a usable span
    return BandScaling(tuple(float(v) for v in lo), tuple(float(v) for v in hi))


def range_mismatch(samples: np.ndarray, scaling: BandScaling, names: list[str]) -> list[str]:
    """How the valid pixel values `samples` (bands, n) of a raster differ from those a model was
    trained on (its scaling maps the training data's 2nd-98th percentiles to -1..1): one line per
    band whose typical value lies far outside that range, or whose spread is far wider or
    narrower; empty when the values fit (or there are too few to tell)."""
    if samples.shape[1] < 100:
        return []
    # one partition for every band; the stretch is affine and increasing, so the percentiles of
    # the stretched values are the stretched percentiles
    p2, median, p98 = np.percentile(samples, [2, 50, 98], axis=1)
    lines = []
    for i, name in enumerate(names):
        low, high = scaling.low[i], scaling.high[i]
        span = high - low
        z_median = (median[i] - low) * 2.0 / span - 1.0
        spread = (p98[i] - p2[i]) / abs(span)
        seen = (f"band {name}: values {p2[i]:.6g}..{p98[i]:.6g} "
                f"where the model was trained on {low:.6g}..{high:.6g}")
        if abs(z_median) > FAR_OUTSIDE:
            lines.append(f"{seen} (typical value far outside)")
        elif not 1 / (2 * SPREAD_RATIO) <= spread <= SPREAD_RATIO:
            lines.append(f"{seen} (contrast {spread:.3g} times the trained one)")
    return lines


def cast_to_dtype(values: np.ndarray, dtype: str, out: np.ndarray | None = None,
                  overwrite: bool = False) -> np.ndarray:
    """Round and clip float values into an integer dtype's range; floats pass.

    `out`: an array of `dtype` and the shape of `values` to write into (and return)
    instead of a new one. `overwrite`: `values` (float) may be rounded and clipped in place."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        rounded = np.rint(values, out=values) if overwrite and values.dtype.kind == "f" else np.rint(values)
        values = _clip(rounded, info.min, info.max)
    if out is None:
        return values.astype(dt)
    np.copyto(out, values, casting="unsafe")  # what astype does
    return out


def _clip(values: np.ndarray, low, high) -> np.ndarray:
    """np.clip(values, low, high, out=values), NaN kept as NaN too, in a third of the
    time (numpy's clip and minimum/maximum are slow on float32)."""
    low, high = values.dtype.type(low), values.dtype.type(high)
    np.copyto(values, low, where=values < low)
    np.copyto(values, high, where=values > high)
    return values
