"""Ranking metrics over full-ranking top-K lists, vectorised over users.

All functions take ``top`` int64 [n_users, K] (item indices, best first, -1 = empty slot)
and ``relevant`` CSR [n_users, n_items] (binary test items of those same users).
Per-user values are returned so that bootstrap intervals can be computed over users.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from frugalrec._linalg import normalise_rows


def hits_matrix(top: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """bool [n, K]: whether each recommended item is relevant for its user."""
    n, K = top.shape
    rel = sp.csr_matrix(relevant)
    rows = np.repeat(np.arange(n), K)
    cols = np.where(top >= 0, top, 0).ravel()
    h = np.asarray(rel[rows, cols]).reshape(n, K) > 0
    return h & (top >= 0)


def per_user_metrics(top: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """float64 [n] arrays for recall, ndcg, mrr, hr, precision @k.

    Binary relevance; IDCG over min(|test_u|, k); recall divides by |test_u|.
    """
    top = top[:, :k]
    hits = hits_matrix(top, relevant).astype(np.float64)
    n_rel = np.diff(sp.csr_matrix(relevant).indptr).astype(np.float64)
    if (n_rel == 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts[: hits.shape[1]]
    ideal_len = np.minimum(n_rel, k).astype(np.int64)
    idcg = np.cumsum(discounts)[ideal_len - 1]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    n_hits = hits.sum(axis=1)
    return {
        f"recall@{k}": n_hits / n_rel,
        f"ndcg@{k}": dcg / idcg,
        f"mrr@{k}": mrr,
        f"hr@{k}": (n_hits > 0).astype(np.float64),
        f"precision@{k}": n_hits / k,
    }


def coverage(top: np.ndarray, k: int, n_candidates: int) -> float:
    """Share of the candidate catalogue that appears in at least one top-k list."""
    t = top[:, :k]
    return float(len(np.unique(t[t >= 0])) / max(1, n_candidates))


def novelty(top: np.ndarray, k: int, item_popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Per-user mean self-information -log2(p_i) of recommended items, p_i the share of
    training users who interacted with item i (add-one smoothed so unseen items are finite)."""
    t = top[:, :k]
    p = (item_popularity + 1.0) / (n_users + 1.0)
    info = -np.log2(p)
    vals = np.where(t >= 0, info[np.where(t >= 0, t, 0)], np.nan)
    return np.nanmean(vals, axis=1)


def intra_list_diversity(top: np.ndarray, k: int, features: np.ndarray) -> np.ndarray:
    """Per-user mean pairwise (1 - cosine) between recommended items' feature vectors
    (genre multi-hot or text embeddings; float [n_items, d]). Zero vectors count as
    dissimilar to everything."""
    t = top[:, :k]
    F = normalise_rows(features.astype(np.float32))
    E = F[np.where(t >= 0, t, 0)] * (t >= 0)[:, :, None]
    G = np.einsum("nkd,njd->nkj", E, E)
    kk = t.shape[1]
    off = G.sum(axis=(1, 2)) - np.einsum("nkk->n", G)
    return 1.0 - off / max(1, kk * (kk - 1))


def bootstrap_ci(
    values: np.ndarray, rng: np.random.Generator, n_boot: int = 1000, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over users (values float [n_users])."""
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    idx = rng.integers(0, n, size=(n_boot, n))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
