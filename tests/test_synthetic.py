"""Synthetic catalogues, vectors and interaction streams: seeded, realistic shapes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frugalrec.data.synthetic import (
    synthetic_catalogue,
    synthetic_interactions,
    synthetic_vector_mixture,
    synthetic_vectors,
    zipf_weights,
)


def _loglog_slope(values: np.ndarray, lo: int, hi: int) -> float:
    v = np.sort(values)[::-1][lo:hi]
    ranks = np.arange(lo + 1, hi + 1)
    return float(np.polyfit(np.log(ranks), np.log(v), 1)[0])


def test_zipf_weights() -> None:
    w = zipf_weights(1000, 1.2)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(np.diff(w) < 0)
    assert w[0] / w[9] == pytest.approx(10**1.2)
    with pytest.raises(ValueError):
        zipf_weights(0)


def test_catalogue_is_seeded() -> None:
    a = synthetic_catalogue(300, np.random.default_rng(1))
    b = synthetic_catalogue(300, np.random.default_rng(1))
    c = synthetic_catalogue(300, np.random.default_rng(2))
    pd.testing.assert_frame_equal(a, b)
    assert not a["description"].equals(c["description"])


def test_catalogue_shapes() -> None:
    cat = synthetic_catalogue(2_000, np.random.default_rng(0))
    assert list(cat.columns) == ["item", "title", "description", "category", "popularity"]
    title_words = cat["title"].str.split().str.len()
    desc_words = cat["description"].str.split().str.len()
    assert title_words.between(1, 6).all() and desc_words.between(10, 80).all()
    # realistic spread, not constant lengths
    assert 2 <= title_words.median() <= 4 and 20 <= desc_words.median() <= 40
    assert desc_words.std() > 5
    assert cat["popularity"].sum() == pytest.approx(1.0)
    # power law: log-log slope of sorted popularity is -alpha
    assert _loglog_slope(cat["popularity"].to_numpy(), 5, 1_000) == pytest.approx(-1.0, abs=0.02)
    # popularity is not tied to the id order
    assert abs(np.corrcoef(cat["item"], cat["popularity"])[0, 1]) < 0.1
    # word frequencies are Zipf-like too: the top word is much more common than the 100th
    counts = pd.Series(" ".join(cat["description"]).split()).value_counts().to_numpy()
    assert counts[0] > 20 * counts[99]


def test_vectors_are_seeded_normalised_and_clustered() -> None:
    a = synthetic_vectors(2_000, 64, np.random.default_rng(5))
    b = synthetic_vectors(2_000, 64, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (2_000, 64)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # clustered: nearest neighbours are far closer than for uniform random unit vectors
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2_000, 64)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)

    def nn_sim(x: np.ndarray) -> float:
        s = x[:200] @ x.T
        s[np.arange(200), np.arange(200)] = -1
        return float(s.max(axis=1).mean())

    assert nn_sim(a) > nn_sim(u) + 0.3


def test_mixture_queries_share_the_distribution() -> None:
    rng = np.random.default_rng(9)
    mix = synthetic_vector_mixture(32, rng, n_clusters=10)
    items = mix.sample(3_000, rng, chunk_size=1_000)  # chunking must not change the law
    queries = mix.sample(100, rng)
    assert items.shape == (3_000, 32) and queries.shape == (100, 32)
    top = (queries @ items.T).max(axis=1)
    assert top.mean() > 0.5
    # uneven cluster sizes (Zipf weights)
    assert mix.weights.max() > 3 * mix.weights.min()


def test_interactions_stream() -> None:
    def collect(seed: int) -> pd.DataFrame:
        chunks = list(
            synthetic_interactions(
                500, 2_000, 25_000, np.random.default_rng(seed), chunk_size=10_000
            )
        )
        assert [len(c) for c in chunks] == [10_000, 10_000, 5_000]
        return pd.concat(chunks, ignore_index=True)

    a, b = collect(3), collect(3)
    pd.testing.assert_frame_equal(a, b)
    assert a["user"].between(0, 499).all() and a["item"].between(0, 1_999).all()
    assert a["timestamp"].is_monotonic_increasing
    assert set(a.columns) == {"user", "item", "rating", "timestamp"}
    assert a["rating"].dtype == np.float32
    counts = a["item"].value_counts().to_numpy()
    # power-law popularity: the top 1% of items get a large share of interactions
    assert counts[:20].sum() / counts.sum() > 0.25


def test_interactions_with_catalogue_popularity() -> None:
    cat = synthetic_catalogue(100, np.random.default_rng(0))
    chunk = next(
        synthetic_interactions(
            10, 100, 5_000, np.random.default_rng(0), item_popularity=cat["popularity"].to_numpy()
        )
    )
    top_item = int(cat["popularity"].idxmax())
    assert chunk["item"].value_counts().index[0] == top_item
    with pytest.raises(ValueError, match="shape"):
        next(
            synthetic_interactions(10, 50, 10, np.random.default_rng(0), item_popularity=np.ones(3))
        )
