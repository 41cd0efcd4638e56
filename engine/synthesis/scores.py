"""Distances between sets of feature vectors (numpy only).

- `fid`: Fréchet distance between Gaussians fitted to the two sets (Heusel et al., 2017);
- `kid`: kernel inception distance, the unbiased MMD^2 with the cubic polynomial
  kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets (Bińkowski et al.,
  2018); unbiased, so usable at small sample counts, and about 0 for two samples of
  one distribution (it can then be slightly negative).
Both are about the features given: say which feature space they were taken in.
"""

from __future__ import annotations

import numpy as np


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between (n, d) and (m, d) feature sets (n, m >= 2)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s1 = _sqrt_psd(c1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ c2 @ s1), 0, None)).sum()  # trace sqrt(C1 C2)
    return float(max(0.0, ((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross))


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> float:
    """Unbiased polynomial-kernel MMD^2 between (n, d) and (m, d) feature sets, mean over subsets."""
    n = min(len(a), len(b), subset_size)
    if n < 2:
        return float("nan")
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    full = n == len(a) == len(b)
    values = []
    for _ in range(1 if full else subsets):
        x = a if n == len(a) else a[rng.choice(len(a), n, replace=False)]
        y = b if n == len(b) else b[rng.choice(len(b), n, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = n * (n - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())
    return float(np.mean(values))
