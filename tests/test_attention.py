"""AttentionRecommender: the shared model contract plus text-specific known answers.

The two-block data of ``conftest.two_block_matrix`` comes with item text vectors in two tight
clusters (one per block), so both the interactions and the text point at the same answer;
a cold item (no interactions) in block A's cluster must be ranked by its text alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import two_block_matrix
from frugalrec.data.dataset import build_dataset
from frugalrec.models import load_model, model_class
from frugalrec.models.attention import (
    AttentionConfig,
    AttentionRecommender,
    _ordered_histories,
)
from frugalrec.models.base import ModelArtifactError

# Tiny but real: one attention block, full softmax over the 10 items.
SMALL = {
    "hidden": 16,
    "heads": 2,
    "layers": 1,
    "max_len": 8,
    "epochs": 40,
    "batch_size": 8,
    "lr": 1e-2,
    "dropout": 0.0,
}


def block_vectors(n_items: int = 10, d: int = 8, seed: int = 0) -> np.ndarray:
    """float32 [n_items, d], L2-normalised: items < n/2 near e0, the rest near e1."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((n_items, d), dtype=np.float32)
    centres[: n_items // 2, 0] = 1.0
    centres[n_items // 2 :, 1] = 1.0
    v = centres + 0.1 * rng.standard_normal((n_items, d)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make(**overrides: object) -> AttentionRecommender:
    return AttentionRecommender(AttentionConfig(**{**SMALL, **overrides}))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    X = two_block_matrix()
    dense = X.toarray()
    half = X.shape[1] // 2
    held = np.array(
        [
            np.flatnonzero(row[:half] == 0)[0]
            if u < 10
            else half + np.flatnonzero(row[half:] == 0)[0]
            for u, row in enumerate(dense)
        ]
    )
    return X, held, block_vectors()


@pytest.fixture(scope="module")
def fitted(data) -> AttentionRecommender:  # type: ignore[no-untyped-def]
    X, _, V = data
    return make().fit(X, item_vectors=V)


# ---- the shared contract ------------------------------------------------------------------
def test_registered() -> None:
    assert model_class("attention") is AttentionRecommender
    assert AttentionRecommender.uses_item_vectors


def test_recommend_shapes_and_dtypes(fitted) -> None:  # type: ignore[no-untyped-def]
    ids, scores = fitted.recommend(np.arange(20), k=3)
    assert ids.shape == (20, 3) and ids.dtype == np.int64
    assert scores.shape == (20, 3) and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0), "scores must be sorted best first"
    assert fitted.score(np.arange(20)).dtype == np.float32


def test_batch_equals_single(fitted) -> None:  # type: ignore[no-untyped-def]
    ids, scores = fitted.recommend(np.arange(20), k=4)
    for u in (0, 7, 13, 19):
        i1, s1 = fitted.recommend(np.array([u]), k=4)
        np.testing.assert_array_equal(i1[0], ids[u])
        np.testing.assert_allclose(s1[0], scores[u], rtol=1e-5, atol=1e-6)


def test_no_seen_items(fitted, data) -> None:  # type: ignore[no-untyped-def]
    X, _, _ = data
    ids, _ = fitted.recommend(np.arange(20), k=5)
    dense = X.toarray()
    for u in range(20):
        assert not dense[u, ids[u][ids[u] >= 0]].any(), f"user {u} got a seen item"


def test_fewer_candidates_than_k_leaves_empty_slots(fitted) -> None:  # type: ignore[no-untyped-def]
    ids, scores = fitted.recommend(np.arange(20), k=8)
    assert (ids[:, 6:] == -1).all() and np.isneginf(scores[:, 6:]).all()
    assert (ids[:, :6] >= 0).all()


def test_known_answer_held_out_item_ranks_first(fitted, data) -> None:  # type: ignore[no-untyped-def]
    _, held, _ = data
    ids, _ = fitted.recommend(np.arange(20), k=1)
    assert (ids[:, 0] == held).mean() >= 0.9, f"{ids[:, 0]} vs {held}"


def test_config_round_trip(fitted) -> None:  # type: ignore[no-untyped-def]
    cfg = fitted.config
    assert AttentionConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        AttentionConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_save_load_round_trip(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = fitted.save(tmp_path / "m")
    with np.load(path / "arrays.npz", allow_pickle=False) as z:  # no pickle anywhere
        assert any(k.startswith("state_net.") for k in z.files)
    loaded = load_model(path)
    assert type(loaded) is AttentionRecommender and loaded.config == fitted.config
    users = np.arange(20)
    np.testing.assert_allclose(loaded.score(users), fitted.score(users), rtol=1e-6)
    np.testing.assert_array_equal(loaded.recommend(users, k=3)[0], fitted.recommend(users, k=3)[0])
    h = fitted.history_[:3]
    np.testing.assert_allclose(loaded.fold_in(h), fitted.fold_in(h), rtol=1e-6)


def test_corrupted_artifact_refused(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = fitted.save(tmp_path / "m")
    npz = path / "arrays.npz"
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(ModelArtifactError, match="checksum"):
        load_model(path)
    meta = json.loads((path / "model.json").read_text())
    meta["format_version"] = 99
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelArtifactError, match="format_version"):
        load_model(path)


def test_unknown_user_gets_popularity(fitted, data) -> None:  # type: ignore[no-untyped-def]
    X, _, _ = data
    ids, scores = fitted.recommend(np.array([-1, 10_000]), k=3)
    pop = np.asarray(X.sum(axis=0)).ravel()
    assert np.isfinite(scores).all()
    for row in ids:
        assert set(pop[row]) <= set(np.sort(pop)[-3:]) | {pop[row].max()}
    empty = sp.csr_matrix((1, X.shape[1]), dtype=np.float32)
    np.testing.assert_array_equal(fitted.fold_in(empty)[0], fitted.item_popularity_)


def test_fold_in_new_user(fitted, data) -> None:  # type: ignore[no-untyped-def]
    X, _, _ = data
    # The set encoder is order-free: a known user's history folded in gives its score.
    np.testing.assert_allclose(fitted.fold_in(X), fitted.score(np.arange(20)), rtol=1e-5, atol=1e-5)
    h = sp.csr_matrix(([1.0, 1.0], ([0, 0], [6, 7])), shape=(1, X.shape[1]), dtype=np.float32)
    ids, _ = fitted.recommend_history(h, k=3)
    assert set(ids[0]) <= {5, 8, 9}, ids[0]


def test_candidate_restriction(fitted) -> None:  # type: ignore[no-untyped-def]
    allowed = np.array([1, 3, 8])
    ids, _ = fitted.recommend(np.arange(20), k=3, items=allowed)
    assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist())


def test_similar_items_stay_in_block(fitted) -> None:  # type: ignore[no-untyped-def]
    ids, _ = fitted.similar_items(np.array([0, 6]), k=3)
    assert 0 not in ids[0] and 6 not in ids[1]
    assert set(ids[0]) <= set(range(5)) and set(ids[1]) <= set(range(5, 10))


def test_invalid_config_and_inputs_fail_at_fit(data) -> None:  # type: ignore[no-untyped-def]
    X, _, V = data
    for bad in ({"heads": 3}, {"objective": "bogus"}, {"item_dropout": 1.0}, {"epochs": 0}):
        with pytest.raises(ValueError, match="invalid"):
            make(**bad).fit(X, item_vectors=V)
    with pytest.raises(ValueError, match="item_vectors"):
        make().fit(X)
    with pytest.raises(ValueError, match="rows"):
        make().fit(X, item_vectors=V[:5])


def test_score_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        make().recommend(np.arange(3))


# ---- text-specific known answers ---------------------------------------------------------
@pytest.mark.parametrize("id_embeddings", [True, False])
def test_cold_item_ranked_by_text(data, id_embeddings: bool) -> None:  # type: ignore[no-untyped-def]
    """Item 10 has no interactions but block A's text: A users rank it above all B items."""
    X, _, _ = data
    Xc = sp.hstack([X, sp.csr_matrix((X.shape[0], 1))], format="csr", dtype=np.float32)
    V = np.vstack([block_vectors(10), block_vectors(12, seed=1)[2:3]])  # cold: A cluster
    model = make(id_embeddings=id_embeddings).fit(Xc, item_vectors=V)
    assert not model.warm_[10] and model.warm_[:10].all()
    s = model.score(np.arange(20))
    a_users, b_items = np.arange(10), np.arange(5, 10)
    assert (s[a_users, 10] > s[a_users][:, b_items].max(axis=1)).all()
    # The cold-item protocol: rank among candidates that include the cold item.
    ids, _ = model.recommend(a_users, k=1, items=np.array([7, 8, 10]))
    assert (ids[:, 0] == 10).all()


def test_cold_item_has_no_id_embedding(data) -> None:  # type: ignore[no-untyped-def]
    """A cold item's vector is its text part only: changing its ID weights changes nothing."""
    import torch

    X, _, _ = data
    Xc = sp.hstack([X, sp.csr_matrix((X.shape[0], 1))], format="csr", dtype=np.float32)
    V = np.vstack([block_vectors(10), block_vectors(12, seed=1)[2:3]])
    model = make(epochs=5).fit(Xc, item_vectors=V)
    before = model.score(np.arange(20))
    with torch.no_grad():
        model.net_.id_emb.weight[10] += 100.0
        model.net_.id_bias.weight[10] += 100.0
    model._cache_items()
    np.testing.assert_array_equal(model.score(np.arange(20)), before)


def test_same_seed_same_scores(data) -> None:  # type: ignore[no-untyped-def]
    X, _, V = data
    a = make(epochs=5).fit(X, item_vectors=V).score(np.arange(20))
    b = make(epochs=5).fit(X, item_vectors=V).score(np.arange(20))
    c = make(epochs=5, seed=7).fit(X, item_vectors=V).score(np.arange(20))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_history_order_follows_timestamps() -> None:
    """With timestamps the per-user order is by time (a repeat counts at its latest time);
    the state reads the most recent ``max_len`` items."""
    users = ["u", "u", "u", "u", "v"]
    items = ["c", "a", "b", "c", "a"]
    ts = [1, 5, 3, 9, 2]
    ds = build_dataset("t", np.array(users), np.array(items), None, np.array(ts))
    indptr, order = _ordered_histories(ds.csr(), ds)
    names = ds.items_vocab.external(order)
    assert list(names[indptr[0] : indptr[1]]) == ["b", "a", "c"]
    assert list(names[indptr[1] : indptr[2]]) == ["a"]
    plain = build_dataset("t", np.array(users), np.array(items), None, None)
    indptr, order = _ordered_histories(plain.csr(), plain)
    assert list(order[indptr[0] : indptr[1]]) == sorted(order[indptr[0] : indptr[1]])


def test_fit_on_dataset_with_timestamps_and_next_objective(data) -> None:  # type: ignore[no-untyped-def]
    """A Dataset with timestamps trains both objectives; SASRec-style ``next`` still learns
    the blocks."""
    X, _, V = data
    u, i = X.nonzero()
    rng = np.random.default_rng(0)
    ds = build_dataset(
        "blocks",
        u.astype(str),
        np.char.add("i", i.astype(str)),
        None,
        rng.integers(0, 1000, len(u)),
        item_table=None,
    )
    # Align the text vectors with the dataset's item vocabulary.
    vec = V[[int(x[1:]) for x in ds.items_vocab.ids]]
    for objective in ("set", "next"):
        model = make(objective=objective, epochs=30).fit(ds, item_vectors=vec)
        ids, _ = model.recommend_history(_one_hot(ds, ["i6", "i7"]), k=3)
        got = {ds.items_vocab.ids[j] for j in ids[0]}
        assert got <= {"i5", "i8", "i9"}, (objective, got)
        losses = [e["loss"] for e in model.train_info_["epochs"]]
        assert losses[-1] < 0.6 * losses[0]


def test_early_stopping_restores_best_epoch() -> None:
    X = two_block_matrix(20, 16)  # 7 items per user: each gives one to the held-out slice
    model = make(patience=2, epochs=15).fit(X, item_vectors=block_vectors(16))
    info = model.train_info_
    scores = [e["ndcg@10"] for e in info["epochs"]]
    assert 1 <= info["best_epoch"] <= len(scores) <= 15
    assert scores[info["best_epoch"] - 1] == max(scores)
    assert len(scores) == 15 or len(scores) - info["best_epoch"] == 2


def _one_hot(ds, names: list[str]) -> sp.csr_matrix:  # type: ignore[no-untyped-def]
    cols = ds.items_vocab.index(names)
    return sp.csr_matrix(
        (np.ones(len(cols), np.float32), (np.zeros(len(cols), int), cols)), shape=(1, ds.n_items)
    )
