"""Distances between sets of feature vectors (numpy in, numpy out; the linear algebra in torch, whose LAPACK
is far faster than the reference BLAS a system numpy may bring).

- `fid`: Fréchet distance between Gaussians fitted to the two sets (Heusel et al., 2017);
- `kid`: kernel inception distance, the unbiased MMD^2 with the cubic polynomial
  kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets (Bińkowski et al.,
  2018); unbiased, so usable at small sample counts, and about 0 for two samples of
  one distribution (it can then be slightly negative).
Both are about the features given: say which feature space they were taken in.
"""

from __future__ import annotations

import numpy as np
import torch


def _trace_sqrt_product(a: torch.Tensor, b: torch.Tensor) -> float:
    """trace(sqrt(C1 C2)) of the covariances of the rows of centred (n, d) `a` and (m, d) `b`, exactly and
    without a d x d matrix square root: C1 C2 has the same non-zero eigenvalues as M M^T with
    M = a b^T / sqrt((n-1)(m-1)), so the trace is the sum of M's singular values (an n x m problem when the
    sets are smaller than the feature size, as FID's usually are); else through the Cholesky factor L of C1,
    the eigenvalues of the symmetric L^T C2 L."""
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    if min(n, m) <= d:
        return float(torch.linalg.svdvals(a @ b.T / ((n - 1) * (m - 1)) ** 0.5).sum())
    c1, c2 = a.T @ a / (n - 1), b.T @ b / (m - 1)
    jitter = 1e-12 * float(torch.trace(c1)) / d + 1e-300
    low = torch.linalg.cholesky(c1 + jitter * torch.eye(d, dtype=c1.dtype))
    return float(torch.linalg.eigvalsh(low.T @ c2 @ low).clamp(min=0).sqrt().sum())


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between (n, d) and (m, d) feature sets (n, m >= 2)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    ta, tb = torch.from_numpy(np.asarray(a, np.float64)), torch.from_numpy(np.asarray(b, np.float64))
    mu1, mu2 = ta.mean(0), tb.mean(0)
    ta, tb = ta - mu1, tb - mu2
    traces = float((ta ** 2).sum()) / (len(a) - 1) + float((tb ** 2).sum()) / (len(b) - 1)
    return max(0.0, float(((mu1 - mu2) ** 2).sum()) + traces - 2 * _trace_sqrt_product(ta, tb))


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> float:
    """Unbiased polynomial-kernel MMD^2 between (n, d) and (m, d) feature sets, mean over subsets."""
    n = min(len(a), len(b), subset_size)
    if n < 2:
        return float("nan")
    ta, tb = torch.from_numpy(np.asarray(a, np.float64)), torch.from_numpy(np.asarray(b, np.float64))
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    full = n == len(a) == len(b)
    values = []
    for _ in range(1 if full else subsets):
        x = ta if n == len(a) else ta[torch.from_numpy(rng.choice(len(a), n, replace=False))]
        y = tb if n == len(b) else tb[torch.from_numpy(rng.choice(len(b), n, replace=False))]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = n * (n - 1)
        values.append(float((kxx.sum() - kxx.trace()) / off + (kyy.sum() - kyy.trace()) / off - 2 * kxy.mean()))
    return float(np.mean(values))
