"""Known answers for the warm-quality models: EDLAE/DLAE, GF-CF, RP3beta, recency, blends.

Each expected value is computed here from its definition (per-column ridge regressions,
explicit loops, numpy's SVD), not by the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from frugalrec.data.dataset import build_dataset
from frugalrec.models import model_class
from frugalrec.models.blend import BlendConfig, BlendRecommender
from frugalrec.models.recency import time_decay_weights


def random_binary(n_users: int = 30, n_items: int = 12, density: float = 0.3, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < density).astype(np.float32)
    X[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # no empty user
    return sp.csr_matrix(X)


# ---- EDLAE / DLAE ----------------------------------------------------------------------
def test_edlae_is_a_zero_diagonal_ridge_per_column_with_item_penalties() -> None:
    X = random_binary()
    p, l2 = 0.25, 3.0
    model = model_class("edlae")(dropout=p, l2=l2).fit(X)
    D = X.toarray().astype(np.float64)
    G = D.T @ D
    lam = p / (1 - p) * np.diag(G) + l2
    n = G.shape[0]
    for j in range(n):
        others = np.delete(np.arange(n), j)
        # min ||x_j - X_-j b||^2 + sum_i lam_i b_i^2, solved as an augmented least squares.
        A = np.vstack([D[:, others], np.diag(np.sqrt(lam[others]))])
        y = np.r_[D[:, j], np.zeros(n - 1)]
        b = np.linalg.lstsq(A, y, rcond=None)[0]
        np.testing.assert_allclose(model.weights_[others, j], b, rtol=1e-3, atol=1e-5)
        assert model.weights_[j, j] == 0.0


def test_edlae_without_dropout_is_ease() -> None:
    X = random_binary()
    a = model_class("edlae")(dropout=0.0, l2=7.0).fit(X)
    b = model_class("ease")(l2=7.0).fit(X)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-4, atol=1e-6)


def test_dlae_weights_zero_the_gradient_of_the_dropout_objective() -> None:
    X = random_binary()
    p, l2 = 0.4, 2.0
    B = model_class("dlae")(dropout=p, l2=l2).fit(X).weights_.astype(np.float64)
    D = X.toarray().astype(np.float64)
    lam = p / (1 - p) * (D * D).sum(axis=0) + l2
    # d/dB ||D - D B||^2 + ||diag(sqrt(lam)) B||^2 = -2 D^T (D - D B) + 2 diag(lam) B
    grad = -D.T @ (D - D @ B) + lam[:, None] * B
    assert np.abs(grad).max() < 1e-3
    assert (np.diag(B) > 0).all(), "DLAE keeps a (shrunk) identity on the diagonal"


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("edlae", {"dropout": 1.0}),
        ("edlae", {"dropout": -0.1}),
        ("dlae", {"l2": -1.0}),
        ("gfcf", {"k": -1}),
        ("gfcf", {"alpha": -0.5}),
        ("rp3beta", {"neighbors": 0}),
        ("rp3beta", {"alpha": 0.0}),
        ("ease", {"recency_half_life": -1.0}),
        ("ease", {"recency_unit": "weeks"}),
    ],
)
def test_invalid_configs_fail_at_fit(name: str, bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        model_class(name)(**bad).fit(random_binary())


# ---- GF-CF -----------------------------------------------------------------------------
def test_gfcf_scores_match_the_two_filters_computed_by_svd() -> None:
    X = random_binary()
    k, alpha = 4, 0.7
    model = model_class("gfcf")(k=k, alpha=alpha).fit(X)
    D = X.toarray().astype(np.float64)
    du, di = D.sum(1), D.sum(0)
    R = D / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    _, _, Vt = np.linalg.svd(R, full_matrices=False)
    V = Vt[:k].T  # top-k right singular vectors (sign does not matter: V V^T)
    W = R.T @ R + alpha * np.diag(1 / np.sqrt(di)) @ V @ V.T @ np.diag(np.sqrt(di))
    np.testing.assert_allclose(model.fold_in(X), D @ W, rtol=1e-3, atol=1e-4)


# ---- RP3beta ---------------------------------------------------------------------------
def test_rp3beta_matches_the_random_walk_by_loops() -> None:
    X = random_binary(n_users=15, n_items=8)
    a, b = 0.8, 0.4
    model = model_class("rp3beta")(alpha=a, beta=b, neighbors=100).fit(X)
    D = X.toarray()
    du, di = D.sum(1), D.sum(0)
    n = D.shape[1]
    W = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            walk = sum((D[u, i] / di[i]) ** a * (D[u, j] / du[u]) ** a for u in range(len(D)))
            W[i, j] = walk / di[j] ** b
    np.testing.assert_allclose(model.weights_.toarray(), W, rtol=1e-4, atol=1e-6)


def test_rp3beta_keeps_the_largest_neighbors_per_row() -> None:
    X = random_binary(n_items=20)
    full = model_class("rp3beta")(neighbors=100).fit(X).weights_.toarray()
    top3 = model_class("rp3beta")(neighbors=3).fit(X).weights_.toarray()
    assert ((top3 > 0).sum(axis=1) <= 3).all()
    for i in range(full.shape[0]):
        kept = np.flatnonzero(top3[i])
        assert np.allclose(np.sort(full[i, kept]), np.sort(full[i])[-len(kept) :])


# ---- recency ---------------------------------------------------------------------------
def _shift_dataset():  # type: ignore[no-untyped-def]
    """Items a0..a4 and b0..b4. 40 users stay in one group each; user 'shift' watched three
    a-items long ago and then two b-items."""
    users, items, times = [], [], []
    for u in range(40):
        group = "a" if u < 20 else "b"
        for k in range(4):
            users.append(f"u{u}")
            items.append(f"{group}{(u + k) % 5}")
            times.append(1000 * u + k)
    for t, it in enumerate(["a0", "a1", "a2", "b0", "b1"]):
        users.append("shift")
        items.append(it)
        times.append(10**6 + 86400 * t)
    table = pd.DataFrame({"item": [f"{g}{i}" for g in "ab" for i in range(5)]})
    return build_dataset("shift", users, items, None, np.array(times), item_table=table)


def test_time_decay_weights_halve_per_half_life() -> None:
    ds = _shift_dataset()
    u = ds.users_vocab.index(["shift"])[0]
    order = ds.items_vocab.index(["b1", "b0", "a2", "a1", "a0"])  # newest first
    w_items = time_decay_weights(ds, 2.0, "items")[u].toarray().ravel()[order]
    np.testing.assert_allclose(w_items, 0.5 ** (np.arange(5) / 2.0), rtol=1e-6)
    w_days = time_decay_weights(ds, 1.0, "days")[u].toarray().ravel()[order]
    np.testing.assert_allclose(w_days, 0.5 ** np.arange(5.0), rtol=1e-6)


@pytest.mark.parametrize("name", ["ease", "itemknn", "edlae", "rp3beta", "gfcf"])
def test_recency_follows_a_users_recent_taste(name: str) -> None:
    ds = _shift_dataset()
    u = ds.users_vocab.index(["shift"])
    a_items = set(ds.items_vocab.index([f"a{i}" for i in range(5)]).tolist())
    plain = model_class(name)().fit(ds)
    recent = model_class(name)(recency_half_life=1.0).fit(ds)
    top_plain, _ = plain.recommend(u, k=1)
    top_recent, _ = recent.recommend(u, k=1)
    assert top_plain[0, 0] in a_items, "three old a-items outweigh two b-items"
    assert top_recent[0, 0] not in a_items, "with recency the two recent b-items win"


def test_recency_without_timestamps_is_refused() -> None:
    with pytest.raises(ValueError, match="timestamps"):
        model_class("ease")(recency_half_life=10.0).fit(random_binary())


def test_recency_survives_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.models import load_model

    ds = _shift_dataset()
    model = model_class("ease")(recency_half_life=1.0).fit(ds)
    loaded = load_model(model.save(tmp_path / "m"))
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-6)


# ---- blend -----------------------------------------------------------------------------
def _blend(weights: list[float]) -> BlendRecommender:
    cfg = BlendConfig(
        members=[
            {"model": "ease", "config": {"l2": 5.0}},
            {"model": "rp3beta", "config": {"neighbors": 50}},
        ],
        weights=weights,
    )
    return BlendRecommender(cfg)


def test_blend_is_the_weighted_sum_of_per_user_standardised_scores() -> None:
    X = random_binary()
    blend = _blend([0.3, 0.7]).fit(X)
    a = model_class("ease")(l2=5.0).fit(X).score(np.arange(30)).astype(np.float64)
    b = model_class("rp3beta")(neighbors=50).fit(X).score(np.arange(30)).astype(np.float64)

    def z(S: np.ndarray) -> np.ndarray:
        return (S - S.mean(1, keepdims=True)) / S.std(1, keepdims=True)

    np.testing.assert_allclose(blend.score(np.arange(30)), 0.3 * z(a) + 0.7 * z(b), atol=1e-4)


def test_blend_with_one_weight_ranks_like_that_member() -> None:
    X = random_binary()
    ids_blend, _ = _blend([0.0, 1.0]).fit(X).recommend(np.arange(30), k=5)
    ids_rp3, _ = model_class("rp3beta")(neighbors=50).fit(X).recommend(np.arange(30), k=5)
    np.testing.assert_array_equal(ids_blend, ids_rp3)


@pytest.mark.parametrize(
    "cfg",
    [
        {"members": [{"model": "ease", "config": {}}], "weights": [1.0]},
        {"members": [{"model": "ease", "config": {}}, {"model": "pop"}], "weights": [1.0]},
        {"members": [{"model": "ease"}, {"model": "pop"}], "weights": [-1.0, 1.0]},
        {"members": [{"model": "ease"}, {"model": "blend"}], "weights": [1.0, 1.0]},
        {"members": [{"model": "ease"}, {"model": "nope"}], "weights": [1.0, 1.0]},
    ],
)
def test_invalid_blends_fail_at_fit(cfg: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        BlendRecommender(BlendConfig.from_dict(cfg)).fit(random_binary())


def test_scoring_cost_is_priced_for_every_new_model() -> None:
    X = random_binary()
    for name in ("edlae", "dlae", "gfcf", "rp3beta", "blend"):
        model = model_class(name)().fit(X)
        flops, moved = model.scoring_cost(history_len=5, batch=2)
        flops1, _ = model.scoring_cost(history_len=5, batch=1)
        assert flops > 0 and moved > 0 and flops == pytest.approx(2 * flops1)
    ease = model_class("ease")().fit(X).scoring_cost(5, 1)[0]
    assert model_class("blend")().fit(X).scoring_cost(5, 1)[0] > ease


# ---- SASRec ----------------------------------------------------------------------------
def test_sasrec_learns_the_next_item_of_a_cycle() -> None:
    """Every user walks the same cycle of 12 items from a random start: the next item after
    the last one is the known answer, which an order-free model cannot know."""
    rng = np.random.default_rng(0)
    users, items, times = [], [], []
    for u in range(80):
        start = int(rng.integers(0, 12))
        for step in range(6):
            users.append(f"user-{u}")
            items.append(f"step-{(start + step) % 12}")
            times.append(100 * u + step)
    ds = build_dataset("cycle", users, items, None, np.array(times))
    model = model_class("sasrec")(
        hidden=16, heads=2, layers=1, max_len=8, epochs=20, batch_size=16, lr=1e-2, dropout=0.0
    ).fit(ds)
    top, _ = model.recommend(np.arange(ds.n_users), k=1)
    last = ds.items_vocab.external(
        [ds.item[ds.user == u][np.argmax(ds.timestamp[ds.user == u])] for u in range(ds.n_users)]
    )
    expected = [f"step-{(int(x.split('-')[1]) + 1) % 12}" for x in last]
    got = ds.items_vocab.external(top[:, 0])
    assert np.mean(got == np.asarray(expected)) >= 0.9
