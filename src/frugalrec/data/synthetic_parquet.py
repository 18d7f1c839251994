"""Large synthetic datasets streamed to Parquet: a catalogue of millions of items with
realistic texts and Zipf popularity, and an interaction log of tens of millions of rows.

Memory is bounded by one chunk plus O(n_items + n_users) float64 weights (the popularity
and activity distributions), never the whole table: 1M items / 1M users / 50M interactions
stay well under 1 GB here. Distributions are those of :mod:`frugalrec.data.synthetic`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalrec._io import atomic_path, write_json_atomic
from frugalrec.data.synthetic import (
    _lognormal_lengths,
    _texts,
    _vocabulary,
    synthetic_interactions,
    zipf_weights,
)


def item_popularity(n_items: int, rng: np.random.Generator, alpha: float = 1.0) -> np.ndarray:
    """Zipf(``alpha``) probabilities over a random permutation of items (float64 [n_items])."""
    p = np.empty(n_items, dtype=np.float64)
    p[rng.permutation(n_items)] = zipf_weights(n_items, alpha)
    return p


def catalogue_chunks(
    n_items: int,
    rng: np.random.Generator,
    popularity: np.ndarray,
    *,
    chunk_size: int = 100_000,
    vocab_size: int = 20_000,
    word_alpha: float = 1.07,
    n_categories: int = 50,
    topic_share: float = 0.5,
) -> Iterator[pd.DataFrame]:
    """Item table chunks (``item``, ``title``, ``description``, ``category``,
    ``popularity``) like :func:`frugalrec.data.synthetic.synthetic_catalogue`: titles 1-6
    words (median 3), descriptions 10-80 words (median 30), Zipf word frequencies.

    A ``topic_share`` of each description's words comes from its category's own Zipf
    ordering of the vocabulary: real catalogues have topics, and texts of independent random
    words have no neighbourhood structure (IVF recall at 1M items was 0.06 without it)."""
    if n_items <= 0 or chunk_size <= 0:
        raise ValueError("n_items and chunk_size must be positive")
    if popularity.shape != (n_items,):
        raise ValueError(f"popularity must have shape ({n_items},), got {popularity.shape}")
    vocab = _vocabulary(vocab_size, rng)
    word_cdf = np.cumsum(zipf_weights(vocab_size, word_alpha))
    cat_p = zipf_weights(n_categories, 0.8)
    # Row c maps a Zipf rank to category c's word at that rank.
    topics = np.argsort(rng.random((n_categories, vocab_size)), axis=1).astype(np.int32)

    def draw(k: int) -> np.ndarray:
        ids = np.searchsorted(word_cdf, rng.random(k) * word_cdf[-1], side="right")
        return np.minimum(ids, vocab_size - 1)

    for start in range(0, n_items, chunk_size):
        m = min(chunk_size, n_items - start)
        title_len = _lognormal_lengths(m, rng, median=3.0, sigma=0.45, lo=1, hi=6)
        desc_len = _lognormal_lengths(m, rng, median=30.0, sigma=0.5, lo=10, hi=80)
        titles = [
            t[:1].upper() + t[1:] for t in _texts(title_len, draw(int(title_len.sum())), vocab)
        ]
        categories = rng.choice(n_categories, size=m, p=cat_p)
        ranks = draw(int(desc_len.sum()))
        word_cat = np.repeat(categories, desc_len)
        topical = rng.random(len(ranks)) < topic_share
        ranks[topical] = topics[word_cat[topical], ranks[topical]]
        descriptions = _texts(desc_len, ranks, vocab)
        yield pd.DataFrame(
            {
                "item": np.arange(start, start + m, dtype=np.int64),
                "title": titles,
                "description": descriptions,
                "category": np.char.add("c", categories.astype(str)).astype(object),
                "popularity": popularity[start : start + m],
            }
        )


def write_parquet_chunks(
    chunks: Iterator[pd.DataFrame], path: str | Path, on_chunk: Callable[[int], None] | None = None
) -> int:
    """Append DataFrame chunks (same schema) to one Parquet file, atomically. Returns rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    with atomic_path(path) as tmp:
        writer = None
        try:
            for df in chunks:
                table = pa.Table.from_pandas(df, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                rows += len(df)
                if on_chunk:
                    on_chunk(len(df))
        finally:
            if writer is not None:
                writer.close()
    return rows


def write_synthetic_dataset(
    out_dir: str | Path,
    n_items: int,
    n_users: int,
    n_interactions: int,
    seed: int = 42,
    chunk_size: int = 1_000_000,
    on_chunk: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``items.parquet``, ``interactions.parquet`` (user, item, rating, timestamp) and
    ``manifest.json`` under ``out_dir``; interactions follow the catalogue's popularity."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pop = item_popularity(n_items, rng)
    n_written = write_parquet_chunks(
        catalogue_chunks(n_items, rng, pop, chunk_size=min(chunk_size, 100_000)),
        out / "items.parquet",
        (lambda m: on_chunk("items", m)) if on_chunk else None,
    )
    n_inter = 0
    if n_interactions > 0:
        n_inter = write_parquet_chunks(
            synthetic_interactions(
                n_users, n_items, n_interactions, rng, chunk_size, item_popularity=pop
            ),
            out / "interactions.parquet",
            (lambda m: on_chunk("interactions", m)) if on_chunk else None,
        )
    manifest = {
        "seed": seed,
        "n_items": n_written,
        "n_users": n_users,
        "n_interactions": n_inter,
        "files": ["items.parquet"] + (["interactions.parquet"] if n_inter else []),
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest
