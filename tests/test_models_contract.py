"""The contract every recommender passes (in the spirit of implicit's RecommenderBase test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from frugalrec.models import load_model, model_class
from frugalrec.models.base import ModelArtifactError

# Small configs so the contract runs in seconds; the defaults are exercised on ml-100k.
# The two-block data has two true factors, hence factors=2.
SMALL = {
    "pop": {},
    "itemknn": {"neighbors": 5, "shrink": 0.0},
    "ease": {"l2": 10.0},
    "als": {"factors": 2, "regularization": 0.1, "alpha": 5.0, "iterations": 20},
    "bpr": {"factors": 2, "learning_rate": 0.05, "regularization": 0.001, "iterations": 300},
    "edlae": {"l2": 1.0, "dropout": 0.3},
    "dlae": {"l2": 1.0, "dropout": 0.3},
    "gfcf": {"k": 2, "alpha": 0.3},
    "rp3beta": {"neighbors": 5, "beta": 0.3},
    "blend": {
        "members": [
            {"model": "ease", "config": {"l2": 10.0}},
            {"model": "rp3beta", "config": {"neighbors": 5}},
        ],
        "weights": [0.6, 0.4],
    },
    "sasrec": {"hidden": 16, "heads": 2, "layers": 1, "max_len": 8, "epochs": 20, "lr": 1e-2},
}
# SASRec trains a small torch network per fixture: seconds each, so it runs with the slow set.
MODELS = [pytest.param(m, marks=pytest.mark.slow) if m == "sasrec" else m for m in SMALL]
# Sequential models read a CSR row in index order, so the order-free known answers of the
# two-block data do not apply to them (their known answer: tests/test_warm_models.py).
SEQUENTIAL = ("sasrec",)
PERSONAL = [m for m in SMALL if m != "pop" and m not in SEQUENTIAL]
HISTORY_MODELS = [
    "pop",
    "itemknn",
    "ease",
    "edlae",
    "dlae",
    "gfcf",
    "rp3beta",
    "blend",
]  # score is exactly a function of history


def make(name: str):  # type: ignore[no-untyped-def]
    cls = model_class(name)
    return cls(cls.config_cls(**SMALL[name]))


@pytest.fixture(params=MODELS)
def fitted(request, blocks):  # type: ignore[no-untyped-def]
    X, _ = blocks
    return request.param, make(request.param).fit(X)


def test_recommend_shapes_and_dtypes(fitted) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    ids, scores = model.recommend(np.arange(20), k=3)
    assert ids.shape == (20, 3) and ids.dtype == np.int64
    assert scores.shape == (20, 3) and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0), "scores must be sorted best first"


def test_batch_equals_single(fitted) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    ids, scores = model.recommend(np.arange(20), k=4)
    for u in (0, 7, 13, 19):
        i1, s1 = model.recommend(np.array([u]), k=4)
        np.testing.assert_array_equal(i1[0], ids[u])
        np.testing.assert_allclose(s1[0], scores[u], rtol=1e-5, atol=1e-6)


def test_no_seen_items(fitted, blocks) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    X, _ = blocks
    ids, _ = model.recommend(np.arange(20), k=5)
    dense = X.toarray()
    for u in range(20):
        valid = ids[u][ids[u] >= 0]
        assert not dense[u, valid].any(), f"user {u} got a seen item"


def test_fewer_candidates_than_k_leaves_empty_slots(fitted) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    # Each user has exactly 6 unseen items (5 of the other block + the held-out one).
    ids, scores = model.recommend(np.arange(20), k=8)
    assert (ids[:, 6:] == -1).all() and np.isneginf(scores[:, 6:]).all()
    assert (ids[:, :6] >= 0).all()


@pytest.mark.parametrize("name", PERSONAL)  # popularity is not personal: it cannot know
def test_known_answer_held_out_item_ranks_first(name, blocks) -> None:  # type: ignore[no-untyped-def]
    X, held = blocks
    model = make(name).fit(X)
    ids, _ = model.recommend(np.arange(20), k=1)
    assert (ids[:, 0] == held).mean() >= 0.9, f"{name}: {ids[:, 0]} vs {held}"


def test_config_round_trip(fitted) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    cfg = model.config
    again = type(cfg).from_json(cfg.to_json())
    assert again == cfg
    with pytest.raises(ValueError, match="unknown field"):
        type(cfg).from_dict({**cfg.to_dict(), "bogus": 1})


def test_save_load_round_trip(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_allclose(loaded.score(np.arange(20)), model.score(np.arange(20)), rtol=1e-6)
    a, _ = model.recommend(np.arange(20), k=3)
    b, _ = loaded.recommend(np.arange(20), k=3)
    np.testing.assert_array_equal(a, b)


def test_corrupted_artifact_refused(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    path = model.save(tmp_path / "m")
    npz = path / "arrays.npz"
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(ModelArtifactError, match="checksum"):
        load_model(path)
    meta = json.loads((path / "model.json").read_text())
    meta["format_version"] = 99
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelArtifactError, match="format_version"):
        load_model(path)


def test_unknown_user_gets_popularity(fitted, blocks) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    X, _ = blocks
    ids, scores = model.recommend(np.array([-1, 10_000]), k=3)
    pop = np.asarray(X.sum(axis=0)).ravel()
    assert np.isfinite(scores).all()
    for row in ids:
        assert set(pop[row]) <= set(np.sort(pop)[-3:]) | {pop[row].max()}


def test_fold_in_new_user(fitted, blocks) -> None:  # type: ignore[no-untyped-def]
    name, model = fitted
    X, _ = blocks
    if name in HISTORY_MODELS:
        np.testing.assert_allclose(
            model.fold_in(X[:20]), model.score(np.arange(20)), rtol=1e-5, atol=1e-6
        )
    if name == "pop" or name in SEQUENTIAL:
        return
    # A new user who liked two items of block 2 gets block-2 items first.
    h = sp.csr_matrix(([1.0, 1.0], ([0, 0], [6, 7])), shape=(1, X.shape[1]), dtype=np.float32)
    ids, _ = model.recommend_history(h, k=3)
    assert set(ids[0]) <= {5, 8, 9}, f"{name}: {ids[0]}"


def test_candidate_restriction(fitted) -> None:  # type: ignore[no-untyped-def]
    _, model = fitted
    allowed = np.array([1, 3, 8])
    ids, _ = model.recommend(np.arange(20), k=3, items=allowed)
    assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist())


def test_similar_items_excludes_self(fitted) -> None:  # type: ignore[no-untyped-def]
    name, model = fitted
    ids, _ = model.similar_items(np.array([0, 6]), k=3)
    assert ids.shape == (2, 3)
    assert 0 not in ids[0] and 6 not in ids[1]
    if name != "pop" and name not in SEQUENTIAL:
        assert set(ids[0]) <= set(range(5)) and set(ids[1]) <= set(range(5, 10))


def test_invalid_config_fails_at_fit(blocks) -> None:
    X, _ = blocks
    with pytest.raises(ValueError):
        model_class("ease")(l2=-1.0).fit(X)
    with pytest.raises(ValueError):
        model_class("itemknn")(neighbors=0).fit(X)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="available"):
        model_class("nope")


def test_score_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        model_class("ease")().recommend(np.arange(3))


def test_json_configs_name_a_wrongly_typed_field() -> None:
    from frugalrec.models.ease import EASEConfig
    from frugalrec.pipeline.config import PipelineConfig

    with pytest.raises(ValueError, match=r"PipelineConfig\.candidates: expected an integer"):
        PipelineConfig.from_dict({"candidates": "ten"})
    with pytest.raises(ValueError, match=r"PipelineConfig\.k: expected an integer, got True"):
        PipelineConfig.from_dict({"k": True})
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        PipelineConfig.from_json("[1, 2]")
    # An integer where a float is declared is a number: accepted.
    assert EASEConfig.from_dict({"l2": 300}).l2 == 300
    with pytest.raises(ValueError, match=r"EASEConfig\.l2: expected a number"):
        EASEConfig.from_dict({"l2": "big"})
