"""Differential privacy for the cheap tier's aggregate statistics.

What is protected: the item popularity counts (pop model, every model's cold-start fallback)
and the item-item co-occurrence (Gram) matrix ``G = X^T X`` that EASE and ItemKNN are built
from. Neighbouring datasets differ by one *user* (add/remove all of their interactions), so
the guarantee is user-level.

Sensitivity needs a bound on what one user contributes: each user's binary history is
clipped to at most ``c = dp_max_items`` items (a seeded random subset for longer histories)
before the statistics are computed. Then one user changes

- the counts vector by at most ``c`` entries of 1: L1 sensitivity ``c``, L2 ``sqrt(c)``;
- the upper triangle (with diagonal) of ``G`` by at most ``c(c+1)/2`` entries of 1:
  L1 ``c(c+1)/2``, L2 ``sqrt(c(c+1)/2)``. Noise is drawn for the upper triangle and
  mirrored, so ``G`` stays symmetric and the diagonal (= counts) is part of the one release.

Mechanisms: ``laplace`` (pure epsilon-DP, scale = L1 / epsilon) or ``gaussian`` ((epsilon,
delta)-DP via the analytic Gaussian mechanism of Balle & Wang, ICML 2018, valid for every
epsilon, unlike the classic ``sqrt(2 ln(1.25/delta))`` bound which needs epsilon < 1).
Everything the model derives from the noisy statistics is post-processing and keeps the
guarantee. What is *not* covered: a model's stored training histories (``history_``, used to
exclude a known user's seen items and to score them from their own history), repeated
releases (each model version spends its own epsilon; versions trained with the same seed on
neighbouring data reuse the same noise, and their difference reveals the change), and
non-DP models (ALS, BPR, text models).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import log_ndtr

MECHANISMS = ("laplace", "gaussian")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPOptions:
    """Config fields shared by the models with a DP option (mixed into their configs).

    ``dp_epsilon``: privacy budget of one fit (None = off). ``dp_delta``: for the Gaussian
    mechanism. ``dp_max_items``: per-user contribution bound ``c``. ``dp_seed``: seeds both
    the clipping subsample and the noise (use a fresh seed per released model version).
    """

    dp_epsilon: float | None = None
    dp_delta: float = 1e-6
    dp_mechanism: Literal["laplace", "gaussian"] = "gaussian"
    dp_max_items: int = 50
    dp_seed: int = 0

    def check_dp(self) -> None:
        """Raise ValueError for an invalid DP setting (called at fit time)."""
        if self.dp_epsilon is None:
            return
        if not (isinstance(self.dp_epsilon, int | float) and self.dp_epsilon > 0):
            raise ValueError(f"dp_epsilon must be > 0 or None, got {self.dp_epsilon!r}")
        if self.dp_mechanism not in MECHANISMS:
            raise ValueError(f"dp_mechanism must be one of {MECHANISMS}, got {self.dp_mechanism!r}")
        if self.dp_mechanism == "gaussian" and not 0 < self.dp_delta < 1:
            raise ValueError(f"dp_delta must be in (0, 1), got {self.dp_delta!r}")
        if self.dp_max_items < 1:
            raise ValueError(f"dp_max_items must be >= 1, got {self.dp_max_items!r}")


def clip_rows(X: sp.csr_matrix, max_items: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Binary CSR with every row cut to at most ``max_items`` entries (uniform random subset,
    vectorised: one random key per entry, keep the ``max_items`` smallest keys per row)."""
    X = sp.csr_matrix(X, dtype=np.float32)
    lengths = np.diff(X.indptr)
    if X.nnz == 0 or lengths.max() <= max_items:
        out = X.copy()
        out.data[:] = 1.0
        return out
    rows = np.repeat(np.arange(X.shape[0]), lengths)
    keys = rng.random(X.nnz)
    order = np.lexsort((keys, rows))  # by row, then random key
    rank = np.arange(X.nnz) - np.repeat(X.indptr[:-1], lengths)
    keep = np.zeros(X.nnz, dtype=bool)
    keep[order[rank < max_items]] = True
    clipped = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (rows[keep], X.indices[keep])), shape=X.shape
    )
    return clipped


def analytic_gaussian_sigma(epsilon: float, delta: float, l2_sensitivity: float) -> float:
    """Smallest noise std giving (epsilon, delta)-DP for a query with this L2 sensitivity
    (Balle & Wang 2018, Theorem 8), by bisection on
    ``delta(s) = Phi(D/2s - eps s/D) - exp(eps) Phi(-D/2s - eps s/D)``."""

    def delta_of(sigma: float) -> float:
        a = l2_sensitivity / (2 * sigma)
        b = epsilon * sigma / l2_sensitivity
        return math.exp(log_ndtr(a - b)) - math.exp(epsilon + log_ndtr(-a - b))

    lo, hi = 1e-6 * l2_sensitivity, l2_sensitivity
    while delta_of(hi) > delta:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if delta_of(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def _noise(
    opts: DPOptions, shape: tuple[int, ...], l1: float, l2: float, rng: np.random.Generator
) -> np.ndarray:
    eps = float(opts.dp_epsilon)  # type: ignore[arg-type]
    if opts.dp_mechanism == "laplace":
        return rng.laplace(0.0, l1 / eps, size=shape)
    return rng.normal(0.0, analytic_gaussian_sigma(eps, opts.dp_delta, l2), size=shape)


def noise_scale(opts: DPOptions, statistic: Literal["counts", "gram"]) -> float:
    """Laplace scale b or Gaussian sigma used for ``statistic`` (for reports and tests)."""
    c = float(opts.dp_max_items)
    l1, l2 = (
        (c, math.sqrt(c))
        if statistic == "counts"
        else (c * (c + 1) / 2, math.sqrt(c * (c + 1) / 2))
    )
    eps = float(opts.dp_epsilon)  # type: ignore[arg-type]
    if opts.dp_mechanism == "laplace":
        return l1 / eps
    return analytic_gaussian_sigma(eps, opts.dp_delta, l2)


def private_counts(X: sp.csr_matrix, opts: DPOptions) -> np.ndarray:
    """Item interaction counts float32 [n_items] under ``opts`` (exact when DP is off),
    clamped at 0 (post-processing)."""
    if opts.dp_epsilon is None:
        return np.asarray(X.sum(axis=0)).ravel().astype(np.float32)
    rng = np.random.default_rng(opts.dp_seed)
    Xc = clip_rows(X, opts.dp_max_items, rng)
    counts = np.asarray(Xc.sum(axis=0)).ravel().astype(np.float64)
    c = float(opts.dp_max_items)
    counts += _noise(opts, counts.shape, l1=c, l2=math.sqrt(c), rng=rng)
    return np.maximum(counts, 0.0).astype(np.float32)


def private_gram(X: sp.csr_matrix, opts: DPOptions) -> np.ndarray:
    """Co-occurrence matrix ``X^T X`` float64 [n_items, n_items] under ``opts`` (exact when
    DP is off); symmetric, its diagonal the (noisy) item counts."""
    if opts.dp_epsilon is None:
        return (X.T @ X).toarray().astype(np.float64)
    rng = np.random.default_rng(opts.dp_seed)
    Xc = clip_rows(X, opts.dp_max_items, rng)
    G = (Xc.T @ Xc).toarray().astype(np.float64)
    n = G.shape[0]
    c = float(opts.dp_max_items)
    pairs = c * (c + 1) / 2
    iu = np.triu_indices(n)
    noise = _noise(opts, (len(iu[0]),), l1=pairs, l2=math.sqrt(pairs), rng=rng)
    N = np.zeros_like(G)
    N[iu] = noise
    N = N + np.triu(N, 1).T
    return G + N


def noise_aware_l2(opts: DPOptions, n_items: int, base_l2: float, per_noise: float = 5.0) -> float:
    """EASE ridge for a private Gram matrix: ``base_l2 + per_noise * sigma * sqrt(n_items)``
    (the noise matrix's spectral norm is about ``2 sigma sqrt(n)``). Depends only on public
    quantities, so it costs no privacy. ``per_noise`` 5 was best on ml-100k's valid split."""
    if opts.dp_epsilon is None:
        return base_l2
    return base_l2 + per_noise * noise_scale(opts, "gram") * math.sqrt(n_items)


def noise_aware_shrink(opts: DPOptions, base_shrink: float, per_noise: float = 100.0) -> float:
    """ItemKNN shrinkage for a private Gram matrix: ``base_shrink + per_noise * sigma``, which
    damps cosines of rare items that the noise would otherwise dominate (public, no privacy
    cost). ``per_noise`` 100 was best on ml-100k's valid split."""
    if opts.dp_epsilon is None:
        return base_shrink
    return base_shrink + per_noise * noise_scale(opts, "gram")
