"""Loaders (with every error case naming file/line/field), cleaning and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frugalrec.data.cleaning import deduplicate, k_core, threshold
from frugalrec.data.errors import DataValidationError
from frugalrec.data.loaders import load_interactions
from frugalrec.data.splits import make_split


def write(tmp_path, name: str, text: str | bytes):  # type: ignore[no-untyped-def]
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def problems(
    exc: pytest.ExceptionInfo[DataValidationError],
) -> list[tuple[int | None, str | None, str]]:
    return [(p.line, p.field, p.message) for p in exc.value.problems]


def test_good_file_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = write(
        tmp_path,
        "i.csv",
        "user,item,rating,timestamp\nu1,a,4,100\nu1,b,3,200\nu2,a,5,2020-01-01T00:00:00Z\n",
    )
    items = write(
        tmp_path, "items.csv", "item,title,plot\na,Alpha,first\nb,Beta,second\nc,Gamma,cold\n"
    )
    ds = load_interactions(f, items)
    assert ds.n_users == 2 and ds.n_items == 3 and ds.n_interactions == 3
    assert ds.items.loc[ds.items_vocab.index("c")[0], "title"] == "Gamma"  # cold item kept
    assert ds.has_timestamps and ds.timestamp[2] == 1577836800
    assert ds.csr().dtype == np.float32


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("usr,item\nu,a\n", 1, "user", "missing required column"),
        ("user,item,item\nu,a,b\n", 1, "item", "duplicate column"),
        ("user,item,rating\nu,a,4\nu,b,good\n", 3, "rating", "not a number"),
        ("user,item\nu,a\n,b\n", 3, "user", "empty value"),
        ("user,item\nu,a\nu,b,extra\n", 3, None, "expected 2 fields"),
        ("user,item,timestamp\nu,a,yesterday\n", 2, "timestamp", "not a timestamp"),
        ("user,item\n", 1, None, "no interactions"),
    ],
)
def test_each_problem_names_line_and_field(tmp_path, text, line, field, fragment) -> None:  # type: ignore[no-untyped-def]
    f = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataValidationError) as exc:
        load_interactions(f)
    found = problems(exc)
    assert any(ln == line and fd == field and fragment in msg for ln, fd, msg in found), found
    assert all(p.file == str(f) for p in exc.value.problems)


def test_wrong_encoding_names_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = write(tmp_path, "latin.csv", "user,item\nu,a\nu,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataValidationError) as exc:
        load_interactions(f)
    assert problems(exc)[0][0] == 3 and "UTF-8" in problems(exc)[0][2]


def test_missing_and_empty_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataValidationError, match="file not found"):
        load_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataValidationError, match="empty"):
        load_interactions(write(tmp_path, "e.csv", ""))


def test_all_problems_reported_together(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = write(tmp_path, "bad.csv", "user,item,rating\nu,a,x\nu,b,y\n")
    items = write(tmp_path, "items.csv", "item,title\na,A\na,again\n")
    with pytest.raises(DataValidationError) as exc:
        load_interactions(f, items)
    found = problems(exc)
    assert (2, "rating", "not a number: 'x'") in found and (
        3,
        "rating",
        "not a number: 'y'",
    ) in found
    assert any(fd == "item" and "duplicate item id" in m and ln == 3 for ln, fd, m in found)


def test_parquet_and_tsv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pq = tmp_path / "i.parquet"
    pd.DataFrame({"user": ["u", "v"], "item": ["a", "b"], "rating": [1.0, 2.0]}).to_parquet(pq)
    assert load_interactions(pq).n_interactions == 2
    tsv = write(tmp_path, "i.tsv", "user\titem\nu\ta\n")
    assert load_interactions(tsv).n_interactions == 1
    bad = write(tmp_path, "bad.parquet", "not parquet")
    with pytest.raises(DataValidationError, match="Parquet"):
        load_interactions(bad)


def test_cleaning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = ["user,item,rating,timestamp"]
    rows += ["u1,a,1,1", "u1,a,5,2", "u1,b,4,1", "u2,a,4,1", "u2,b,2,1", "u3,a,5,1"]
    ds = load_interactions(write(tmp_path, "i.csv", "\n".join(rows) + "\n"))
    d = deduplicate(ds)
    assert d.n_interactions == 5
    assert d.rating[(d.user == 0) & (d.item == 0)][0] == 5  # the latest kept
    assert threshold(d, 4).n_interactions == 4
    core = k_core(d, k_user=2, k_item=2)
    assert set(core.user.tolist()) == {0, 1}  # u3 has one interaction
    assert core.n_users == d.n_users  # vocabularies stay stable


@pytest.mark.slow
def test_ml100k_shape_and_privacy(ml100k) -> None:  # type: ignore[no-untyped-def]
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_interactions) == (943, 1682, 100_000)
    assert {"title", "year", "genres"} <= set(ml100k.items.columns)
    assert ml100k.items.loc[0, "title"] == "Toy Story" and ml100k.items.loc[0, "year"] == 1995
    assert "Animation" in ml100k.items.loc[0, "genres"]
    # Quasi-identifiers are coarsened on load: no raw zip or exact age survives.
    assert "zip" not in ml100k.users and "age" not in ml100k.users
    assert ml100k.users["zip3"].str.len().max() == 3


@pytest.mark.slow
def test_random_split_protocol(ml100k) -> None:  # type: ignore[no-untyped-def]
    s = make_split(ml100k, "random")
    masks = np.stack([s.train_mask, s.valid_mask, s.test_mask])
    assert (masks.sum(axis=0) == 1).all(), "stages must partition the interactions"
    for mask in (s.valid_mask, s.test_mask):
        assert (np.bincount(ml100k.user[mask], minlength=943) >= 1).all()
    counts = s.counts()
    assert (
        abs(counts["test"] / 100_000 - 0.1) < 0.005 and abs(counts["train"] / 100_000 - 0.8) < 0.005
    )
    again = make_split(ml100k, "random")
    assert (again.test_mask == s.test_mask).all(), "seeded"
    assert not (make_split(ml100k, "random", seed=1).test_mask == s.test_mask).all()


@pytest.mark.slow
def test_temporal_split_protocol(ml100k) -> None:  # type: ignore[no-untyped-def]
    s = make_split(ml100k, "temporal")
    u, t = ml100k.user, ml100k.timestamp
    last_train = np.zeros(943, np.int64)
    np.maximum.at(last_train, u[s.train_mask], t[s.train_mask])
    first_test = np.full(943, np.iinfo(np.int64).max)
    np.minimum.at(first_test, u[s.test_mask], t[s.test_mask])
    assert (first_test >= last_train).all(), "test comes after train for every user"


@pytest.mark.slow
def test_cold_item_split_protocol(ml100k) -> None:  # type: ignore[no-untyped-def]
    s = make_split(ml100k, "cold-item")
    cold = set(s.test_candidates.tolist())
    assert abs(len(cold) / 1682 - 0.2) < 0.01
    assert not cold & set(ml100k.item[s.train_mask | s.valid_mask].tolist())
    assert set(ml100k.item[s.test_mask].tolist()) <= cold
    cold_valid = set(s.valid_candidates.tolist())
    assert not cold_valid & cold and abs(len(cold_valid) / 1682 - 0.1) < 0.01
    assert not cold_valid & set(ml100k.item[s.train_mask].tolist())
    assert set(ml100k.item[s.valid_mask].tolist()) == cold_valid


def test_exported_cold_item_split_reads_back_with_the_same_candidates(ml100k, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An exported cold-item split, read back, ranks valid among its own cold items and test
    among the cold items, exactly like the built-in protocol (same item ids)."""
    from frugalrec.cli import main
    from frugalrec.data.sources import load_external_split

    d = tmp_path / "cold"
    assert main(["export-split", "--dataset", "ml-100k", "--protocol", "cold-item",
                 "--out", str(d)]) == 0  # fmt: skip
    builtin = make_split(ml100k, "cold-item")
    ext = load_external_split(d / "train.csv", d / "valid.csv", d / "test.csv",
                              d / "items.csv", d / "cold_items.csv")  # fmt: skip

    def ids(split, idx):  # type: ignore[no-untyped-def]
        return set(split.dataset.items_vocab.ids[idx].astype(str).tolist())

    assert ext.valid_candidates is not None and ext.test_candidates is not None
    assert ids(ext, ext.valid_candidates) == ids(builtin, builtin.valid_candidates)
    assert ids(ext, ext.test_candidates) == ids(builtin, builtin.test_candidates)
    # without --cold-items nothing is restricted (a random split has warm valid items)
    plain = load_external_split(d / "train.csv", d / "valid.csv", d / "test.csv")
    assert plain.valid_candidates is None and plain.test_candidates is None
