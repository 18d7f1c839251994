"""``frugalrec query --category-words``: a catalogue's own everyday words reach the rules
(a bookshop here: "globetrotting" means nothing until its table says Travel)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from frugalrec.cli import main


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FRUGALREC_PSEUDONYM_KEY", base64.urlsafe_b64encode(b"w" * 32).decode("ascii")
    )


def test_query_reads_the_catalogues_own_category_words(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.data.example import write_example

    shop = write_example(tmp_path, n_items=160, n_users=120, n_interactions=2000)
    src = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"])]
    words = tmp_path / "words.json"
    words.write_text(json.dumps({"words": {"globetrotting": [["travel"]]}}))
    request = "globetrotting tales, no poems"

    def intent(*extra: str) -> dict:  # type: ignore[type-arg]
        assert main(["query", request, *src, "--encoder", "static", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    plain = intent()
    assert plain["intent"]["include_genres"] == [] and plain["intent"]["exclude_genres"] == [
        "Poetry"
    ]  # "poems" is in the packaged table; "globetrotting" is not
    got = intent("--category-words", str(words))
    assert got["intent"]["include_genres"] == ["Travel"]
    assert got["intent"]["exclude_genres"] == ["Poetry"]
    cats = [set(it["categories"].split("|")) for it in got["items"]]
    assert sum("Travel" in c for c in cats) >= 8 and not any("Poetry" in c for c in cats)
