"""What ``data validate`` reports beyond parse errors: id coverage, duplicates, cleaning.

Coverage protects results: when the items file's ids do not match the interactions'
(``bk00001`` vs ``BK-00001``), every item gets its id as title and the text models embed
nothing useful, silently. So coverage below a threshold is a failure with the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from frugalrec.data.dataset import Dataset

DEFAULT_MIN_COVERAGE = 0.9


def coverage(ds: Dataset) -> dict[str, Any]:
    """Id coverage between interactions and items (all counts over distinct ids)."""
    interacted = np.zeros(ds.n_items, dtype=bool)
    interacted[ds.item] = True
    described = ds.described()
    n_int = int(interacted.sum())
    with_meta = int((interacted & described).sum())
    return {
        "interacted_items": n_int,
        "interacted_items_with_metadata": with_meta,
        "metadata_coverage": with_meta / n_int if n_int else 0.0,
        "catalogue_items": int(described.sum()),
        "catalogue_items_without_interactions": int((described & ~interacted).sum()),
        "example_ids_without_metadata": [
            str(x) for x in ds.items_vocab.ids[np.flatnonzero(interacted & ~described)[:3]]
        ],
    }


def duplicates(ds: Dataset) -> dict[str, Any]:
    """Repeated (user, item) pairs and what ``--dedup`` would do with them."""
    key = ds.user.astype(np.int64) * max(ds.n_items, 1) + ds.item
    n_unique = int(np.unique(key).size)
    n_dup = int(ds.n_interactions - n_unique)
    return {
        "duplicate_interactions": n_dup,
        "what_happens": (
            "none found"
            if not n_dup
            else f"--dedup keeps the latest of each repeated (user, item): {n_dup} rows dropped; "
            "without it, repeats count once in the binary interaction matrix"
        ),
    }


def ratings(ds: Dataset, min_rating: float | None) -> dict[str, Any] | None:
    """Rating distribution and what the positive threshold does (None without ratings)."""
    r = ds.rating
    if not len(r) or np.all(r == 1.0):
        return None
    out: dict[str, Any] = {
        "rating_min": float(r.min()),
        "rating_max": float(r.max()),
        "rating_mean": round(float(r.mean()), 3),
    }
    if min_rating is None:
        out["positives"] = (
            "every interaction counts as a like, whatever its rating; pass --min-rating N to "
            "keep only ratings >= N as positives"
        )
    else:
        kept = int((r >= min_rating).sum())
        out["positives"] = (
            f"ratings >= {min_rating:g} are likes: {kept} of {len(r)} interactions kept"
        )
    return out
