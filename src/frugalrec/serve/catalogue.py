"""The dataset a service runs on: the user's files, ml-100k, or a small synthetic one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from frugalrec.data.dataset import Dataset, build_dataset

_GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Animation", "War")


def synthetic_dataset(n_users: int = 60, n_items: int = 80, seed: int = 7) -> Dataset:
    """Two taste groups over two halves of the catalogue, with titles, genres and years.

    Users ``u0..`` in the first half like mostly the first half of the items, the others the
    second half: small enough to fit in milliseconds, structured enough that feedback visibly
    moves a list.
    """
    rng = np.random.default_rng(seed)
    half_u, half_i = n_users // 2, n_items // 2
    users, items = [], []
    for u in range(n_users):
        block = np.arange(half_i) if u < half_u else np.arange(half_i, n_items)
        liked = rng.choice(block, size=max(3, half_i // 3), replace=False)
        users += [f"u{u}"] * len(liked)
        items += [f"i{i}" for i in liked]
    table = pd.DataFrame(
        {
            "item": [f"i{i}" for i in range(n_items)],
            "title": [f"Item {i}" for i in range(n_items)],
            "year": pd.array(1970 + (np.arange(n_items) % 30), dtype="Int64"),
            "genres": [
                f"{_GENRES[i % len(_GENRES)]}|{_GENRES[(i // 3) % len(_GENRES)]}"
                for i in range(n_items)
            ],
        }
    )
    ts = 1_600_000_000 + np.arange(len(users), dtype=np.int64)
    # Film-like titles and genres: it stands in for ml-100k in the service's tests.
    return build_dataset(
        "synthetic", np.array(users), np.array(items), None, ts, table, noun="films"
    )


def load_serving_dataset(name: str) -> Dataset:
    """``synthetic``, or any source ``load_dataset`` takes: ``ml-100k`` or a data-source
    spec (the JSON of a :class:`~frugalrec.data.sources.DataSource`: the user's files)."""
    if name == "synthetic":
        return synthetic_dataset()
    from frugalrec.data.sources import load_dataset

    return load_dataset(name)
