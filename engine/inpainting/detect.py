"""Cloud detection (`DetectedMask`)
--------------------------------
A per-pixel spectral test in the spirit of Fmask's potential-cloud tests
(Zhu & Woodcock 2012), on top-of-atmosphere or surface reflectance. Band
roles come from band descriptions (Sentinel-2 B02 B03 B04 B08 B11; Landsat-8/9
OLI B2..B6 in capitals; Landsat TM/ETM+ b1..b5 in lower case; or the names
blue, green, red, nir, swir1) or are given explicitly. Reflectance =
DN * scale + offset, the scale given or estimated: floats of at most ~5 are
reflectance, 8-bit data / 255, Sentinel-2 and TM/ETM+ integers / 10000,
other 16-bit data whose darkest pixels exceed 4500 are Landsat-8/9 Level-1
DN (x 2e-5 - 0.1), else / 10000. Haze is then removed from the visible
bands by dark-object subtraction (the 1st percentile of a sample of the
scene, capped at `HAZE_CAP`), so hazy winter scenes are not all "bright".
A pixel is cloud when all of the tests its bands allow hold (thresholds in
`DETECTOR`):

- bright: the darkest visible band (blue, green, red) > `bright`;
- white: (max - min) / mean of the visible bands < `white` (2+ visible bands);
- haze (HOT): blue - 0.5 red > `hot` (with blue);
- infrared: nir > `nir`, and NDVI (nir - red) / (nir + red) < `ndvi`;
- not snow: NDSI (green or red vs swir1) < `ndsi`, or swir1 > `swir1`
  (snow is dark in SWIR, clouds are not; with swir1 only).
Red and NIR are required, plus blue, green or swir1. Nodata pixels are clear.

The seven thresholds were fitted on half of the real reference data from `make data`
and are measured on the other, held-out half by `engine.devtools.detector` (`make evaluate`,
reports/quality.json); it misses thin cloud and cloud edges (dilate the mask a few pixels for
inpainting) and, without thermal bands, takes some bright sand, surf and roofs for cloud.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..raster import BlockReader, open_raster
from .sources import Grid, MaskSource

# --- cloud detection ---------------------------------------------------------------------------------------------

ROLES = ("blue", "green", "red", "nir", "swir1")
_SCHEMES = {
    "sentinel-2": {"B02": "blue", "B2": "blue", "B03": "green", "B3": "green", "B04": "red", "B4": "red",
                   "B08": "nir", "B8": "nir", "B8A": "nir", "B11": "swir1"},
    "oli": {"B2": "blue", "B3": "green", "B4": "red", "B5": "nir", "B6": "swir1"},
    "tm": {"B1": "blue", "B2": "green", "B3": "red", "B4": "nir", "B5": "swir1"},
}
_GENERIC = {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "near infrared": "nir",
            "nir08": "nir", "swir1": "swir1", "swir": "swir1", "swir16": "swir1", "swir 1": "swir1"}


@dataclass(frozen=True)
class DetectorThresholds:
    """Thresholds of the spectral cloud test, on reflectance (0..1)."""

    bright: float  # darkest visible band above
    white: float  # spread of the visible bands over their mean below
    hot: float  # blue - 0.5 red above
    nir: float  # nir above
    ndvi: float  # (nir - red) / (nir + red) below
    ndsi: float  # (green or red - swir1) / (... + swir1) below, or
    swir1: float  # swir1 above


# fit_detector() on the fitting halves (module docstring), after haze removal
DETECTOR = DetectorThresholds(bright=0.07, white=1.1, hot=0.03, nir=0.24, ndvi=0.8, ndsi=0.15, swir1=0.18)


def band_roles(descriptions: Sequence[str | None]) -> tuple[dict[str, int], str]:
    """({role: 1-based band}, naming scheme) read from band descriptions; roles not found are left out.

    Sentinel-2 (B02.., B8A, B11, or B12 present), Landsat-8/9 OLI (B1..B7 in
    capitals), Landsat TM/ETM+ (b1..b7 in lower case), or generic role names.
    """
    names = [(d or "").strip() for d in descriptions]
    upper = [n.upper() for n in names]
    roles: dict[str, int] = {}
    for i, n in enumerate(names):
        role = _GENERIC.get(n.lower())
        if role and role not in roles:
            roles[role] = i + 1
    if roles:
        return roles, "generic"
    numbered = [re.fullmatch(r"(?:SR_)?B(\d+A?)", u) for u in upper]
    if not any(numbered):
        return {}, "unknown"
    if any(re.fullmatch(r"B0\d|B8A|B12", u) for u in upper):
        scheme = "sentinel-2"
    elif any(n.startswith("b") for n, m in zip(names, numbered, strict=True) if m):
        scheme = "tm"
    else:
        scheme = "oli"
    table = _SCHEMES[scheme]
    for i, u in enumerate(upper):
        key = u[3:] if u.startswith("SR_") else u
        role = table.get(key)
        if role and role not in roles:
            roles[role] = i + 1
    return roles, scheme


def parse_band_roles(text: str | Mapping[str, int]) -> dict[str, int]:
    """{role: band} from "red=3,nir=4,swir1=5" (or a mapping), checked."""
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        items = []
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            role, _, number = part.partition("=")
            if not number.strip().isdigit():
                raise InputError(f"cannot read detection bands {text!r} (DETECT_BANDS / --detect-bands): write "
                                 f"role=band pairs separated by commas, e.g. blue=2,green=3,red=4,nir=5,swir1=6")
            items.append((role, int(number)))
    roles = {}
    for role, band in items:
        role = str(role).strip().lower()
        if role not in ROLES:
            raise InputError(f"unknown band role {role!r} in detection bands {text!r} (DETECT_BANDS / "
                             f"--detect-bands); the roles are {', '.join(ROLES)}, e.g. blue=2,green=3,red=4,nir=5")
        roles[role] = int(band)
    return roles


def roles_hint(count: int) -> str:
    """How to say which band is which, with an example for a raster of `count` bands."""
    if count < 3:
        return (f"it has {count} band(s), and detection needs at least 3: give a mask layer or a QA band with "
                f"an expression instead")
    example = ROLES[:count] if count >= 4 else ("green", "red", "nir")
    pairs = ",".join(f"{role}={i}" for i, role in enumerate(example, 1))
    return (f"say which band is which in DETECT_BANDS (QGIS, under Advanced Parameters) or --detect-bands "
            f"(python -m engine inpaint), e.g. {pairs} where bands 1-{len(example)} are "
            f"{', '.join(example)}; the roles are {', '.join(ROLES)}")


def estimate_scale(sample: np.ndarray, dtype, scheme: str) -> tuple[float, float]:
    """(scale, offset) turning values into reflectance, guessed from a sample of valid values."""
    dtype = np.dtype(dtype)
    sample = sample[np.isfinite(sample)] if dtype.kind == "f" else sample
    if sample.size == 0:
        return 1e-4, 0.0
    if dtype.kind == "f":
        return (1.0, 0.0) if np.percentile(sample, 99) <= 5 else (1e-4, 0.0)
    if dtype.itemsize == 1:
        return 1 / 255, 0.0
    if scheme in ("sentinel-2", "tm"):
        return 1e-4, 0.0
    return (2e-5, -0.1) if np.percentile(sample, 1) >= 4500 else (1e-4, 0.0)


# most haze (path reflectance) a band may lose in dark-object subtraction, so that a scene of clouds keeps its
# clouds; none in NIR and SWIR, where haze is weak and land is never dark (only water is)
HAZE_CAP = {"blue": 0.12, "green": 0.09, "red": 0.06, "nir": 0.0, "swir1": 0.0}


def haze_offsets(sample: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Dark-object haze per band (Chavez 1988): the 1st percentile of a reflectance sample of the
    scene, at least 0 and at most `HAZE_CAP`; subtracted before the cloud test."""
    out = {}
    for role, values in sample.items():
        values = values[np.isfinite(values)]
        dark = float(np.percentile(values, 1)) if values.size else 0.0
        out[role] = min(max(dark, 0.0), HAZE_CAP[role])
    return out


def cloud_features(refl: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The quantities the cloud test thresholds, from reflectance by role."""
    eps = 1e-6
    visible = np.stack([refl[k] for k in ("blue", "green", "red") if k in refl])
    red, nir = refl["red"], refl["nir"]
    f = {"bright": visible.min(axis=0), "nir": nir, "ndvi": (nir - red) / np.maximum(nir + red, eps)}
    if len(visible) > 1:
        f["white"] = (visible.max(axis=0) - visible.min(axis=0)) / np.maximum(visible.mean(axis=0), eps)
    if "blue" in refl:
        f["hot"] = refl["blue"] - 0.5 * red
    if "swir1" in refl:
        vis = refl.get("green", red)
        f["ndsi"] = (vis - refl["swir1"]) / np.maximum(vis + refl["swir1"], eps)
        f["swir1"] = refl["swir1"]
    return f


def cloud_test(f: Mapping[str, np.ndarray], t: DetectorThresholds = DETECTOR) -> np.ndarray:
    """Boolean cloud test on `cloud_features` output."""
    cloud = (f["bright"] > t.bright) & (f["nir"] > t.nir) & (f["ndvi"] < t.ndvi)
    if "white" in f:
        cloud &= f["white"] < t.white
    if "hot" in f:
        cloud &= f["hot"] > t.hot
    if "ndsi" in f:
        cloud &= (f["ndsi"] < t.ndsi) | (f["swir1"] > t.swir1)
    return cloud


class DetectedMask(MaskSource):
    """Clouds found by the spectral test (module docstring) in the input raster's own bands.

    `roles` maps blue/green/red/nir/swir1 to 1-based bands ("red=3,nir=4" works
    too); by default they come from band descriptions. `scale`/`offset` turn
    values into reflectance; by default they are estimated.
    """

    def __init__(self, src, roles: Mapping[str, int] | str | None = None, *, scale: float | None = None,
                 offset: float = 0.0, grid: Grid | None = None, thresholds: DetectorThresholds = DETECTOR):
        self.owned = isinstance(src, (str, os.PathLike))
        self.src = open_raster(src) if self.owned else src
        try:
            self.grid = Grid.of(self.src)
            if grid is not None and not grid.same_as(self.src):
                raise InputError(f"cloud detection runs on the input raster itself, but {self.src.name} is not on "
                                 f"the input's grid; detect on the input raster")
            if roles:
                self.roles, scheme = parse_band_roles(roles), "given"
            else:
                self.roles, scheme = band_roles(self.src.descriptions)
            bad = {r: b for r, b in self.roles.items() if not 1 <= b <= self.src.count}
            if bad:
                raise InputError(f"detection band(s) {', '.join(f'{r}={b}' for r, b in bad.items())} do not exist: "
                                 f"{self.src.name} has bands 1..{self.src.count}; {roles_hint(self.src.count)}")
            if not {"red", "nir"} <= self.roles.keys() or len(self.roles.keys() & {"blue", "green", "swir1"}) == 0:
                found = ", ".join(f"{r}={b}" for r, b in self.roles.items()) or "none"
                if scheme == "given":
                    source = f"the detection bands given hold {found}"
                else:
                    names = ", ".join(d or "unnamed" for d in self.src.descriptions)
                    source = f"the band names of {self.src.name} ({names}) give {found}"
                raise InputError(f"cloud detection needs the red and near-infrared bands plus blue, green or SWIR-1, "
                                 f"but {source}; {roles_hint(self.src.count)}")
            self.order = [r for r in ROLES if r in self.roles]
            self.reader = BlockReader(self.src, [self.roles[r] for r in self.order])
            self.thresholds = thresholds
            sample = self._sample()
            if scale is None:
                dtype = self.src.dtypes[self.roles["red"] - 1]
                scale, offset = estimate_scale(sample.ravel(), dtype, scheme)
            self.scale, self.offset = float(scale), float(offset)
            self.haze = haze_offsets(dict(zip(self.order, sample * self.scale + self.offset, strict=True)))
        except BaseException:
            self.close()
            raise

    def _sample(self, n: int = 5, size: int = 32) -> np.ndarray:
        """Valid values from an n x n spread of small windows (bounded reads on any raster size)."""
        h, w = self.src.height, self.src.width
        if h * w <= (n * size) ** 2:  # small: all of it
            data, valid = self.reader.read(0, h, 0, w)
            return (data[:, valid] if valid is not None else data.reshape(len(data), -1)).astype(np.float64)
        values = []
        for r in sorted(set(np.linspace(0, max(h - size, 0), n).astype(int))):
            for c in sorted(set(np.linspace(0, max(w - size, 0), n).astype(int))):
                data, valid = self.reader.read(r, min(r + size, h), c, min(c + size, w))
                values.append(data[:, valid] if valid is not None else data.reshape(len(data), -1))
        return np.concatenate(values, axis=1).astype(np.float64)

    def reflectance(self, row0: int, row1: int, col0: int, col1: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """({role: reflectance}, valid) of a window."""
        data, valid = self.reader.read(row0, row1, col0, col1)
        refl = data.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        valid = np.ones(data.shape[1:], bool) if valid is None else valid
        return {role: band - np.float32(self.haze[role]) for role, band in zip(self.order, refl, strict=True)}, valid

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        self._check_window(row0, row1, col0, col1)
        refl, valid = self.reflectance(row0, row1, col0, col1)
        return valid & cloud_test(cloud_features(refl), self.thresholds)

    def close(self) -> None:
        if self.owned and getattr(self, "src", None) is not None:
            self.src.close()
