"""``serve`` takes the query parser's LLM from its configuration (``intent_llm``): rules
first, the LLM (a FakeLLM here) only where they leave a request open, and the catalogue's
own category words (``category_words``). Synthetic catalogue: Action, Comedy, Drama, ..."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from frugalrec.llm.fake import FakeLLM
from frugalrec.serve.settings import ServeSettings

pytest_plugins = ("serve_fixtures",)

REPLY = '{"include":["War"],"exclude":["Comedy"],"from":null,"to":null}'


def _query(client, text: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = client.post("/v1/query", json={"text": text, "k": 5})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_intent_llm_comes_from_the_configuration(make_client) -> None:  # type: ignore[no-untyped-def]
    llm = FakeLLM(replies=[REPLY])
    c = make_client(llm=llm, intent_llm="smollm2-135m")  # the name; the fake stands in
    assert c.app.state.service.intent_llm is llm and c.app.state.service.llm_tier is None
    got = _query(c, "men in trenches, nothing zany")
    assert got["intent"]["include_genres"] == ["War"]
    assert got["intent"]["exclude_genres"] == ["Comedy"]
    assert got["intent"]["parser"] == "rules+fake" and len(llm.grammars) == 1
    assert "intent_llm_ms" in got["cost"]["stages_ms"]
    assert got["items"] and all("Comedy" not in it["genres"] for it in got["items"])
    # Resolved by the rules: the LLM is not asked.
    got = _query(c, "a drama, no horror")
    assert got["intent"]["parser"] == "rules" and len(llm.grammars) == 1
    assert got["intent"]["include_genres"] == ["Drama"]
    assert "intent_llm_ms" not in got["cost"]["stages_ms"]


def test_without_intent_llm_the_rules_answer_alone(make_client) -> None:  # type: ignore[no-untyped-def]
    llm = FakeLLM(replies=[REPLY])
    c = make_client(llm=llm)
    assert c.app.state.service.intent_llm is None
    got = _query(c, "men in trenches, nothing zany")
    assert got["intent"]["parser"] == "rules" and llm.grammars == []
    assert got["intent"]["include_genres"] == [] and got["intent"]["exclude_genres"] == []


def test_the_catalogues_own_category_words(make_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    words = tmp_path / "words.json"
    words.write_text(json.dumps({"words": {"trenches": [["war"]], "zany": [["comedy"]]}}))
    c = make_client(category_words=words)
    got = _query(c, "men in trenches, nothing zany")
    assert got["intent"]["include_genres"] == ["War"]
    assert got["intent"]["exclude_genres"] == ["Comedy"]


def test_an_unknown_intent_llm_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="unknown LLM 'gpt-9'"):
        ServeSettings(intent_llm="gpt-9")
    assert ServeSettings(intent_llm="qwen2.5-1.5b").intent_llm == "qwen2.5-1.5b"
