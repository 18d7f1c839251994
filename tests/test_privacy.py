"""Pseudonyms (keyed HMAC), key management and de-identification at ingestion."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from frugalrec.data.errors import DataValidationError
from frugalrec.data.loaders import load_interactions
from frugalrec.privacy.deidentify import QuasiIdentifierPolicy, coarsen_users
from frugalrec.privacy.pseudonyms import (
    KEY_ENV,
    Pseudonymiser,
    PseudonymKeyError,
    load_or_create_key,
)

KEY = bytes(range(32))


def test_pseudonym_is_keyed_hmac_sha256() -> None:
    p = Pseudonymiser(KEY)
    expected = hmac.new(KEY, b"user-42", hashlib.sha256).hexdigest()[:32]
    assert p.pseudonym("user-42") == "u_" + expected
    assert p.pseudonym(42) == p.pseudonym("42")
    # Another key gives unrelated pseudonyms: a leaked store cannot be joined without it.
    assert Pseudonymiser(bytes(32)).pseudonym("user-42") != p.pseudonym("user-42")
    out = p.pseudonyms(["a", "b", "a"])
    assert out[0] == out[2] != out[1]
    assert "key" in repr(p) and KEY.hex() not in repr(p)
    with pytest.raises(PseudonymKeyError):
        Pseudonymiser(b"short")


def test_key_file_is_created_0600_and_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "conf" / "pseudonym.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_or_create_key(path)


def test_key_from_environment(monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, base64.urlsafe_b64encode(KEY).decode())
    assert load_or_create_key() == KEY
    monkeypatch.setenv(KEY_ENV, "!!not base64!!")
    with pytest.raises(PseudonymKeyError, match=KEY_ENV):
        load_or_create_key()


def test_coarsen_users_policy() -> None:
    users = pd.DataFrame(
        {
            "user": ["1", "2"],
            "age": ["23", "67"],
            "Zip": ["90210", "10001"],
            "email": ["a@b.io", "c@d.io"],
            "Name": ["Ann", "Bob"],
            "gender": ["F", "M"],
        }
    )
    out = coarsen_users(users)
    assert out.columns.tolist() == ["user", "gender", "age_band", "zip3"]
    assert out["age_band"].tolist() == ["18-24", "65+"]
    assert out["zip3"].tolist() == ["902", "100"]
    dropped = coarsen_users(users, QuasiIdentifierPolicy(age="drop", zip="drop", drop=("gender",)))
    assert dropped.columns.tolist() == ["user"]
    policy = QuasiIdentifierPolicy.from_json('{"age": "drop", "zip": "zip3", "drop": ["x"]}')
    assert policy == QuasiIdentifierPolicy(age="drop", drop=("x",))
    with pytest.raises(ValueError, match="age"):
        QuasiIdentifierPolicy(age="exact")  # type: ignore[arg-type]


def test_ml100k_users_are_coarsened(ml100k) -> None:
    assert ml100k.users is not None
    assert "age" not in ml100k.users and "zip" not in ml100k.users
    assert ml100k.users["zip3"].str.len().max() == 3


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_loader_pseudonymises_users_at_ingestion(tmp_path: Path) -> None:
    inter = _write(tmp_path / "i.csv", "user,item\nuser-raw-1,a\nuser-raw-2,b\nuser-raw-1,b\n")
    users = _write(
        tmp_path / "u.csv",
        "user,age,zip,email\nuser-raw-1,31,90210,x@y.io\nuser-raw-2,19,02139,z@y.io\n",
    )
    p = Pseudonymiser(KEY)
    ds = load_interactions(inter, users=users, pseudonymiser=p)
    assert sorted(ds.users_vocab.ids) == sorted(
        [p.pseudonym("user-raw-1"), p.pseudonym("user-raw-2")]
    )
    assert ds.users is not None
    assert ds.users.columns.tolist() == ["age_band", "zip3"]
    u1 = ds.users_vocab.index([p.pseudonym("user-raw-1")])[0]
    assert ds.users.iloc[u1].tolist() == ["25-34", "902"]
    blob = repr(ds.users_vocab.ids) + ds.users.to_csv()
    assert "user-raw" not in blob and "@" not in blob and "90210" not in blob
    # Without a pseudonymiser the ids stay as given (public benchmark data).
    assert "user-raw-1" in load_interactions(inter).users_vocab


def test_duplicate_user_rows_are_refused_without_echoing_the_id(tmp_path: Path) -> None:
    inter = _write(tmp_path / "i.csv", "user,item\nuser-raw-1,a\n")
    users = _write(tmp_path / "u.csv", "user,age\nuser-raw-1,31\nuser-raw-1,32\n")
    with pytest.raises(DataValidationError) as err:
        load_interactions(inter, users=users)
    assert err.value.problems[0].line == 3 and err.value.problems[0].field == "user"
    assert "user-raw-1" not in str(err.value)
