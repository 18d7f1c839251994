"""Forget-user: the next model version equals a model trained without the user."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from frugalrec.models.ease import EASERecommender
from frugalrec.models.itemknn import ItemKNNRecommender
from frugalrec.models.pop import PopRecommender
from frugalrec.pipeline.forget import downdate_gram, forget_rows, without_users
from frugalrec.privacy.pseudonyms import Pseudonymiser

KEY = b"k" * 32
MODELS = {
    "pop": (PopRecommender, {}),
    "ease": (EASERecommender, {"l2": 50.0}),
    "itemknn": (ItemKNNRecommender, {"neighbors": 20, "shrink": 1.0}),
}


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRUGALREC_PSEUDONYM_KEY", base64.urlsafe_b64encode(KEY).decode("ascii"))


def _item_side(model) -> np.ndarray:
    if isinstance(model, EASERecommender):
        return model.weights_
    if isinstance(model, ItemKNNRecommender):
        return model.similarity_.toarray()
    return model.item_popularity_


def _reference(name: str, rows_without: sp.csr_matrix):
    cls, params = MODELS[name]
    return cls(**params).fit(rows_without)


def test_pop_exact_downdate_equals_retraining(blocks) -> None:
    X, _ = blocks
    gone = np.array([3, 14])
    model = PopRecommender().fit(X)
    assert forget_rows(model, gone)
    keep = np.setdiff1d(np.arange(X.shape[0]), gone)
    retrained = PopRecommender().fit(X[keep])
    np.testing.assert_array_equal(model.item_popularity_, retrained.item_popularity_)
    assert model.history_[gone].nnz == 0
    users = keep
    np.testing.assert_array_equal(
        model.recommend(users, 3)[0], retrained.recommend(np.arange(len(keep)), 3)[0]
    )
    # No exact down-date for a refit-only model or a private one: untouched, caller refits.
    ease = EASERecommender().fit(X)
    before = ease.weights_.copy()
    assert not forget_rows(ease, gone)
    assert np.array_equal(ease.weights_, before)
    assert not forget_rows(PopRecommender(dp_epsilon=1.0).fit(X), gone)


def test_gram_downdate_equals_recomputation(blocks) -> None:
    X, _ = blocks
    G = (X.T @ X).toarray().astype(np.float64)
    keep = np.setdiff1d(np.arange(X.shape[0]), [0, 7, 12])
    expected = (X[keep].T @ X[keep]).toarray()
    np.testing.assert_array_equal(downdate_gram(G, X[[0, 7, 12]]), expected)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dataset_without_user_matches_fit_without_their_rows(name: str) -> None:
    from frugalrec.serve.catalogue import synthetic_dataset

    ds = synthetic_dataset()
    gone = ["u3", "u40"]
    cls, params = MODELS[name]
    forgotten = cls(**params).fit(without_users(ds, gone))
    X = ds.csr()
    keep = np.setdiff1d(np.arange(ds.n_users), ds.users_vocab.index(gone))
    reference = _reference(name, X[keep])
    np.testing.assert_allclose(_item_side(forgotten), _item_side(reference), rtol=1e-5, atol=1e-6)


def _store_with_events(tmp_path: Path):
    from frugalrec.serve.store import StoredEvent, open_store

    p = Pseudonymiser(KEY)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    events = [
        StoredEvent(p.pseudonym(f"user-raw-{u}"), f"i{(u * 7 + j) % 80}", "like", None, 1.0e9 + j)
        for u in range(5)
        for j in range(6)
    ]
    store.add_events(events)
    return store, p


@pytest.mark.parametrize("name", sorted(MODELS))
def test_store_forget_retrains_a_model_equal_to_one_without_the_user(
    name: str, tmp_path: Path
) -> None:
    from frugalrec.pipeline.config import PipelineConfig
    from frugalrec.serve.catalogue import synthetic_dataset
    from frugalrec.serve.forget import forget_user, versions_holding
    from frugalrec.serve.training import fit_model, load_version, save_version, training_matrix

    ds = synthetic_dataset()
    store, p = _store_with_events(tmp_path)
    config = PipelineConfig(model=name, model_config=MODELS[name][1])
    pseudonyms = p.pseudonyms(ds.users_vocab.ids)
    # A version trained while both users were present holds their histories.
    old = save_version(
        fit_model(config, ds, pseudonyms, store.all_events(), set()), tmp_path / "m", store
    )
    purged: list[int] = []
    for raw in ("user-raw-2", "u5"):  # one user known only from events, one from the dataset
        assert p.pseudonym(raw) in old.user_rows
        report = forget_user(store, p, raw, dataset=ds, config=config, model_dir=tmp_path / "m")
        purged += report.purged_versions
        assert report.pseudonym == p.pseudonym(raw)
        assert store.count_events(p.pseudonym(raw)) == 0
        assert report.new_version is not None and report.versions_still_holding_user == []
        assert versions_holding(store, p.pseudonym(raw)) == []
    # v1 held both users; v2 (after the first forget) still held u5: both artifacts are gone.
    assert purged == [old.version, old.version + 1]
    assert not Path(old.path).exists()
    assert report.events_deleted == 0  # u5 had no stored events, only dataset rows
    latest = load_version(store.models()[-1])
    # Reference: built independently from the raw inputs, both users' data never present.
    gone = {p.pseudonym("user-raw-2"), p.pseudonym("u5")}
    kept_ds = without_users(ds, ["u5"])
    X_ds = kept_ds.csr()
    rows = {p.pseudonym(u): i for i, u in enumerate(ds.users_vocab.ids)}
    extra = [e for e in store.all_events() if e.user not in gone]
    users_extra = sorted({e.user for e in extra})
    X_ev = sp.lil_matrix((len(users_extra), ds.n_items), dtype=np.float32)
    for e in extra:
        X_ev[users_extra.index(e.user), ds.items_vocab.index([e.item])[0]] = 1.0
    X_ref = sp.vstack([X_ds, X_ev]).tocsr()
    assert not any(e.user in rows for e in extra)  # event users are new rows
    reference = _reference(name, X_ref)
    np.testing.assert_allclose(
        _item_side(latest.model), _item_side(reference), rtol=1e-5, atol=1e-6
    )
    # And the serving path agrees: the training matrix holds nothing of either user.
    X, row_ids = training_matrix(ds, pseudonyms, store.all_events(), store.forgotten_users())
    for g in gone:
        if g in row_ids:
            assert X[row_ids.index(g)].nnz == 0
    raw_bytes = (tmp_path / "store.db").read_bytes()
    assert b"user-raw" not in raw_bytes
    store.close()


def test_forget_cli(tmp_path: Path, capsys) -> None:
    from frugalrec.cli import main

    store, p = _store_with_events(tmp_path)
    store.close()
    url = f"sqlite:///{tmp_path / 'store.db'}"
    rc = main(
        ["forget", "--user", "user-raw-1", "--store", url, "--dataset", "synthetic", "--json"]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pseudonym"] == p.pseudonym("user-raw-1")
    assert report["events_deleted"] == 6 and report["new_version"] == 1
    assert "user-raw-1" not in json.dumps(report)
    from frugalrec.serve.store import open_store

    store = open_store(url)
    assert store.count_events(p.pseudonym("user-raw-1")) == 0
    assert store.count_events() == 24
    assert p.pseudonym("user-raw-1") in store.forgotten_users()
    store.close()
    # Human-readable table; an unusable store URL is one clear line, exit code 2.
    assert (
        main(["forget", "--user", "x", "--store", url, "--dataset", "synthetic", "--no-retrain"])
        == 0
    )
    assert "events deleted" in capsys.readouterr().out
    assert main(["forget", "--user", "x", "--store", "mysql://nope"]) == 2
    assert "store_url" in capsys.readouterr().err


def test_forget_cli_refits_a_text_aware_model_on_the_catalogue_vectors(
    tmp_path: Path, capsys
) -> None:
    """The offline forget once refitted text-aware models without their item vectors: the
    new version must hold the same vectors the service encodes and equal a fresh fit."""
    from frugalrec.cli import main
    from frugalrec.models.textmap import TextMapRecommender
    from frugalrec.pipeline.config import PipelineConfig
    from frugalrec.serve.catalogue import synthetic_dataset
    from frugalrec.serve.store import open_store
    from frugalrec.serve.training import catalogue_vectors, load_version, training_matrix

    store, p = _store_with_events(tmp_path)
    store.close()
    config = PipelineConfig(model="textmap", encoder="static", backend="numpy")
    (tmp_path / "config.json").write_text(config.to_json())
    url = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["forget", "--user", "user-raw-1", "--store", url, "--dataset", "synthetic"]
    args += ["--model-dir", str(tmp_path / "m"), "--json"]
    assert main([*args, "--config", str(tmp_path / "config.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new_version"] == 1 and report["events_deleted"] == 6

    store = open_store(url)
    latest = load_version(store.models()[-1])
    ds = synthetic_dataset()
    _, vectors = catalogue_vectors(config, ds)
    assert vectors is not None and vectors.shape[0] == ds.n_items
    X, rows = training_matrix(
        ds, p.pseudonyms(ds.users_vocab.ids), store.all_events(), store.forgotten_users()
    )
    store.close()
    assert p.pseudonym("user-raw-1") not in rows
    reference = TextMapRecommender().fit(X, item_vectors=vectors)
    model = latest.model
    assert isinstance(model, TextMapRecommender)
    # features_ = [item vectors | 1]: the refit saw the service's vectors, not none or others.
    np.testing.assert_allclose(model.features_[:, :-1], vectors, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.projection_, reference.projection_, rtol=1e-4, atol=1e-5)
    users = np.arange(X.shape[0])
    np.testing.assert_array_equal(model.recommend(users, 5)[0], reference.recommend(users, 5)[0])

    # A config that is not valid is refused by file and field before anything is deleted.
    (tmp_path / "bad.json").write_text(config.replace(encoder="nope").to_json())
    before = open_store(url)
    n_before = before.count_events()
    before.close()
    assert main([*args[:2], "user-raw-2", *args[3:], "--config", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "encoder" in err
    after = open_store(url)
    assert after.count_events() == n_before
    after.close()


@pytest.mark.parametrize("compact", [True, False])
def test_forgotten_rows_leave_no_bytes_in_the_sqlite_file(tmp_path: Path, compact: bool) -> None:
    from frugalrec.serve.forget import forget_user

    store, p = _store_with_events(tmp_path)
    report = forget_user(store, p, "user-raw-1", compact=compact)
    assert report.store_compacted is compact
    # Read while the store is still open, as it is under a running service.
    data = b"".join(f.read_bytes() for f in tmp_path.glob("store.db*"))
    store.close()
    # What must stay: the pseudonym in forgotten_users and its primary-key index. Even
    # without compaction the deleted rows leave no bytes: the store deletes with
    # secure_delete and checkpoints (truncates) the WAL on every forget.
    n = data.count(p.pseudonym("user-raw-1").encode())
    assert n == 2
