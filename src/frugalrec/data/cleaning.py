"""Cleaning: de-duplication, rating threshold, k-core. Each returns a new ``Dataset``."""

from __future__ import annotations

import numpy as np

from frugalrec.data.dataset import Dataset


def deduplicate(ds: Dataset) -> Dataset:
    """Keep one interaction per (user, item): the latest (ties: the last in file order)."""
    order = np.lexsort((np.arange(ds.n_interactions), ds.timestamp, ds.item, ds.user))
    u, i = ds.user[order], ds.item[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    keep = np.zeros(ds.n_interactions, dtype=bool)
    keep[order[last]] = True
    return ds.subset(keep)


def threshold(ds: Dataset, min_rating: float) -> Dataset:
    """Keep interactions with ``rating >= min_rating``."""
    return ds.subset(ds.rating >= min_rating)


def k_core(ds: Dataset, k_user: int, k_item: int, max_rounds: int = 100) -> Dataset:
    """Iteratively drop users with < ``k_user`` and items with < ``k_item`` interactions.

    Vocabularies are unchanged (dropped users/items simply have no interactions), so ids
    stay stable across cleaning steps.
    """
    keep = np.ones(ds.n_interactions, dtype=bool)
    for _ in range(max_rounds):
        uc = np.bincount(ds.user[keep], minlength=ds.n_users)
        ic = np.bincount(ds.item[keep], minlength=ds.n_items)
        new = keep & (uc[ds.user] >= k_user) & (ic[ds.item] >= k_item)
        if new.sum() == keep.sum():
            break
        keep = new
    return ds.subset(keep)
