"""Forget-user at the model level: drop a user's interactions, or down-date exactly.

Retraining without the user is always correct and is what the service does at the next model
version (see ``frugalrec.serve.forget``). Where removing one user's contribution is cheap and
exact, it is offered too: item popularity counts (``pop``) and the co-occurrence matrix
``G = X^T X`` are sums over users, so ``G' = G - X_u^T X_u``. EASE still needs one inversion
of ``G'`` and ItemKNN a re-normalisation and top-k, so for them a refit is the down-date.
A model fitted with differential privacy is never down-dated: its noise and clipping were
drawn for the old data, so subtracting would not equal a private refit.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender
from frugalrec.models.pop import PopRecommender


def without_users(ds: Dataset, users: Iterable[object]) -> Dataset:
    """``ds`` minus every interaction of the given external user ids (as stored in the
    vocabulary, i.e. pseudonyms when the dataset was pseudonymised). Vocabularies stay,
    so indices of everyone else are unchanged; unknown ids are ignored."""
    idx = ds.users_vocab.index(list(users))
    idx = idx[idx >= 0]
    return ds.subset(~np.isin(ds.user, idx))


def downdate_gram(G: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
    """``G - rows^T rows``: the co-occurrence matrix without these users' binary rows
    (CSR [n, n_items]); exact, O(sum of squared history lengths)."""
    R = sp.csr_matrix(rows, dtype=np.float64)
    R.data[:] = 1.0
    return np.asarray(G - (R.T @ R).toarray(), dtype=G.dtype)


def forget_rows(model: Recommender, rows: np.ndarray) -> bool:
    """Remove the training rows ``rows`` (user indices) from ``model`` in place when an exact
    down-date exists (non-private ``pop``): afterwards it equals a model fitted without those
    users' interactions. Returns False (model untouched) when only a refit is exact."""
    if not isinstance(model, PopRecommender) or model.config.dp_epsilon is not None:  # type: ignore[attr-defined]
        return False
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if len(rows) and (rows.min() < 0 or rows.max() >= model.n_users_):
        raise IndexError(f"user rows out of range [0, {model.n_users_})")
    H = sp.csr_matrix(model.history_, copy=True)
    removed = np.asarray(H[rows].sum(axis=0)).ravel().astype(np.float32)
    keep = np.ones(H.shape[0], dtype=np.float32)
    keep[rows] = 0.0
    H = sp.csr_matrix(sp.diags(keep) @ H)
    H.eliminate_zeros()
    model.history_ = H
    model.item_popularity_ = (model.item_popularity_ - removed).astype(np.float32)
    return True
