"""Text-aware models: cold items are scored from their text, warm data is not hurt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from frugalrec.models import load_model, model_class
from frugalrec.text.items import item_texts


def cluster_vectors(n_items: int = 12, d: int = 8, seed: int = 0) -> np.ndarray:
    """Items 0..n/2-1 near one direction, the rest near another (the 'text' knows the block)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((2, d), np.float32)
    base[0, 0] = base[1, 1] = 1.0
    V = base[(np.arange(n_items) >= n_items // 2).astype(int)] + 0.1 * rng.normal(size=(n_items, d))
    return (V / np.linalg.norm(V, axis=1, keepdims=True)).astype(np.float32)


def block_data_with_cold_items() -> sp.csr_matrix:
    """20 users x 12 items; items 5 and 11 (one per block) have no interactions at all."""
    X = np.zeros((20, 12), np.float32)
    X[:10, :5] = 1
    X[10:, 6:11] = 1
    return sp.csr_matrix(X)


@pytest.mark.parametrize(
    ("name", "kw"),
    [("content", {}), ("textmap", {"l2": 1.0}), ("hybrid", {"l2": 10.0, "text_l2": 1.0})],
)
def test_cold_item_ranked_by_text(name, kw) -> None:  # type: ignore[no-untyped-def]
    X = block_data_with_cold_items()
    V = cluster_vectors()
    model = model_class(name)(**kw).fit(X, item_vectors=V)
    cold = np.array([5, 11])
    ids, scores = model.recommend(np.arange(20), k=1, items=cold)
    assert (ids[:10, 0] == 5).all() and (ids[10:, 0] == 11).all(), ids.ravel()
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["content", "textmap", "hybrid"])
def test_text_models_contract(name, tmp_path) -> None:  # type: ignore[no-untyped-def]
    X = block_data_with_cold_items()
    V = cluster_vectors()
    model = model_class(name)().fit(X, item_vectors=V)
    ids, _ = model.recommend(np.arange(20), k=4)
    dense = X.toarray()
    assert not any(dense[u, ids[u][ids[u] >= 0]].any() for u in range(20))
    single, _ = model.recommend(np.array([3]), k=4)
    np.testing.assert_array_equal(single[0], ids[3])
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_allclose(again.score(np.arange(20)), model.score(np.arange(20)), rtol=1e-5)
    with pytest.raises(ValueError, match="item_vectors"):
        model_class(name)().fit(X)
    with pytest.raises(ValueError, match="rows"):
        model_class(name)().fit(X, item_vectors=V[:5])


def test_hybrid_with_zero_text_weight_is_ease() -> None:
    X = block_data_with_cold_items()
    V = cluster_vectors()
    h = model_class("hybrid")(l2=10.0, text_weight=0.0).fit(X, item_vectors=V)
    e = model_class("ease")(l2=10.0).fit(X)
    np.testing.assert_allclose(h.score(np.arange(20)), e.score(np.arange(20)), atol=1e-6)


def test_item_texts_use_every_text_column() -> None:
    items = pd.DataFrame(
        {
            "item": ["a", "b"],
            "title": ["Alpha", "Beta"],
            "year": [1999, None],
            "genres": ["Drama|War", ""],
            "plot": ["A soldier returns home.", None],
            "score": [1.0, 2.0],
        }
    )
    texts = item_texts(items)
    assert texts[0] == "Alpha (1999). Genres: Drama, War. Plot: A soldier returns home."
    assert texts[1] == "Beta."


@pytest.mark.slow
def test_cold_item_protocol_text_beats_collaborative(ml100k) -> None:  # type: ignore[no-untyped-def]
    """On real data with the static tier (fast): text scores cold items, EASE cannot."""
    from frugalrec.data.splits import make_split
    from frugalrec.evaluate.protocol import evaluate_model
    from frugalrec.text.features import item_features

    split = make_split(ml100k, "cold-item")
    V = item_features(ml100k, "static", "numpy")
    train = split.train_dataset(with_valid=True)
    text = model_class("textmap")(l2=1e4).fit(train, item_vectors=V)
    ease = model_class("ease")(l2=300.0).fit(train)
    t = evaluate_model(text, split, "test", ks=(10,), n_boot=0).metrics["ndcg@10"]
    e = evaluate_model(ease, split, "test", ks=(10,), n_boot=0).metrics["ndcg@10"]
    assert t > 0.2 > e
