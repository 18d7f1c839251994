"""The LLM tier inside the service: the cascade behind ``budget_ms`` (FakeLLM, synthetic data).

Known answers: with ``llm_weight=1`` the FakeLLM's favoured candidate must come first; a
budget too small for the LLM keeps the cheap list; a failing LLM keeps it too (never a 5xx).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from frugalrec.llm.fake import FakeLLM
from frugalrec.serve.catalogue import synthetic_dataset
from frugalrec.serve.schemas import QueryResult, RecommendationList
from serve_helpers import AUTH, item_ids

pytest_plugins = ("serve_fixtures",)

USER = "u3"


def _seen(user: str = USER) -> set[str]:
    ds = synthetic_dataset()
    u = int(ds.users_vocab.index([user])[0])
    return set(ds.items_vocab.ids[ds.item[ds.user == u]])


def _cheap(make_client, tmp_path, k: int) -> list[str]:
    """The cheap tier's list from a service without the LLM (its own store)."""
    c = make_client(store_url=f"sqlite:///{tmp_path / 'cheap.db'}", model_dir=tmp_path / "m")
    body = c.get(f"/v1/users/{USER}/recommendations", params={"k": k}).json()
    assert body["cost"]["route"] is None and body["cost"]["llm_fired"] is False
    assert c.app.state.service.llm is None and c.app.state.service.serving.cascade is None
    return [it["item_id"] for it in body["items"]]


def _llm_client(make_client, llm, **settings):
    settings.setdefault("llm_margin", math.inf)  # always unsure: the budget decides
    return make_client(llm=llm, rerank="llm", **settings)


def test_tiny_budget_returns_the_cheap_list(make_client, tmp_path):
    cheap = _cheap(make_client, tmp_path, 10)
    c = _llm_client(make_client, FakeLLM(favour=f"Item {cheap[4][1:]} ("), llm_weight=1.0)
    r = c.get(f"/v1/users/{USER}/recommendations", params={"k": 10, "budget_ms": 0.001})
    assert item_ids(r) == cheap
    cost = r.json()["cost"]
    assert cost["tier"] == "cheap" and cost["route"] == "budget" and cost["llm_fired"] is False
    assert "llm_ms" not in cost["stages_ms"]


def test_generous_budget_fires_the_llm_over_the_cheap_candidates(make_client, tmp_path):
    cheap = _cheap(make_client, tmp_path, 15)
    favoured = cheap[4]
    llm = FakeLLM(favour=f"Item {favoured[1:]} (")
    c = _llm_client(make_client, llm, llm_weight=1.0, llm_candidates=10)
    calibration = len(llm.timings)  # the start-up measurement of ms per prompt token
    assert calibration == 2
    r = c.get(
        f"/v1/users/{USER}/recommendations",
        params={"k": 15, "budget_ms": 60_000, "explain": "true"},
    )
    ids = item_ids(r)
    body = r.json()
    cost = body["cost"]
    assert cost["tier"] == "llm" and cost["route"] == "llm" and cost["llm_fired"] is True
    assert cost["stages_ms"]["llm_ms"] >= 0 and len(llm.timings) == calibration + 1
    # The LLM's pick first; the head is a permutation of the cheap top-10, the tail the cheap
    # items 11-15 in order (no blended score past K); nothing the user has seen.
    assert ids[0] == favoured
    assert sorted(ids[:10]) == sorted(cheap[:10]) and ids[10:] == cheap[10:]
    assert not set(ids) & _seen()
    scores = [it["score"] for it in body["items"]]
    assert scores[:10] == sorted(scores[:10], reverse=True) and scores[10:] == [None] * 5
    # Explanations are still the template over the evidence of the served items.
    assert all(it["explainer"] == "template" and it["grounded"] for it in body["items"])
    assert body["items"][0]["evidence"]["item_title"] == f"Item {favoured[1:]}"
    assert RecommendationList.model_validate(body).model_dump(mode="json") == body
    # The LLM answer is cached per budget; another budget is a new decision.
    again = c.get(
        f"/v1/users/{USER}/recommendations",
        params={"k": 15, "budget_ms": 60_000, "explain": "true"},
    ).json()
    assert again["cost"]["cache"] == "hit" and again["cost"]["tier"] == "llm"
    assert [it["item_id"] for it in again["items"]] == ids
    assert len(llm.timings) == calibration + 1
    metrics = c.get("/metrics").text
    assert 'tier="llm"' in metrics


def test_a_confident_cheap_stage_or_a_failing_llm_keeps_the_cheap_list(make_client, tmp_path):
    cheap = _cheap(make_client, tmp_path, 10)
    sure = _llm_client(make_client, FakeLLM(favour="Item"), llm_margin=0.0)
    r = sure.get(f"/v1/users/{USER}/recommendations", params={"k": 10, "budget_ms": 60_000})
    assert item_ids(r) == cheap and r.json()["cost"]["route"] == "confident"
    broken = _llm_client(
        make_client,
        FakeLLM(fail=True),
        store_url=f"sqlite:///{tmp_path / 'broken.db'}",
        model_dir=tmp_path / "mb",
    )
    r = broken.get(f"/v1/users/{USER}/recommendations", params={"k": 10, "budget_ms": 60_000})
    assert item_ids(r) == cheap
    cost = r.json()["cost"]
    assert cost["tier"] == "cheap" and cost["route"] == "fallback" and not cost["llm_fired"]
    assert cost["fallback_reason"] == "error:RuntimeError"
    assert (
        'frugalrec_llm_fallbacks_total{reason="error:RuntimeError"} 1.0'
        in broken.get("/metrics").text
    )
    # A transient fallback is not cached: the next request decides again.
    r = broken.get(f"/v1/users/{USER}/recommendations", params={"k": 10, "budget_ms": 60_000})
    assert r.json()["cost"]["cache"] == "miss"


def test_a_new_user_and_a_disliked_item_with_the_llm_tier(make_client):
    c = _llm_client(make_client, FakeLLM(favour="Item"))
    r = c.get("/v1/users/brand-new/recommendations", params={"budget_ms": 60_000})
    assert r.status_code == 200 and r.json()["cost"]["route"] == "no_history"
    first = item_ids(c.get(f"/v1/users/{USER}/recommendations", params={"budget_ms": 60_000}))
    ev = {"user_id": USER, "item_id": first[0], "type": "dislike"}
    assert c.post("/v1/events", json=ev, headers=AUTH).status_code == 201
    r = c.get(f"/v1/users/{USER}/recommendations", params={"budget_ms": 60_000})
    ids = item_ids(r)
    assert r.json()["cost"]["llm_fired"] and first[0] not in ids
    assert len(ids) == 10 and not set(ids) & _seen()


def test_query_honours_the_cascade(make_client):
    c = _llm_client(make_client, FakeLLM(favour="Comedy"), llm_weight=1.0)
    body = {"text": "comedies", "user_id": USER, "k": 5, "explain": True}
    small = c.post("/v1/query", json={**body, "budget_ms": 0.001}).json()
    assert small["cost"]["tier"] == "query-rules" and small["cost"]["route"] == "budget"
    big = c.post("/v1/query", json={**body, "budget_ms": 60_000}).json()
    assert big["cost"]["tier"] == "llm" and big["cost"]["llm_fired"] is True
    ids = [it["item_id"] for it in big["items"]]
    assert len(ids) == 5 and not set(ids) & _seen()
    for it in big["items"]:
        assert "Comedy" in it["genres"].split("|")
        assert "Comedy" in it["evidence"]["query_terms"] and it["grounded"]
    assert QueryResult.model_validate(big).model_dump(mode="json") == big
    anonymous = c.post("/v1/query", json={"text": "comedies", "budget_ms": 60_000}).json()
    assert anonymous["cost"]["route"] == "no_history" and not anonymous["cost"]["llm_fired"]


def test_the_llm_is_loaded_only_when_asked_for(make_client, tmp_path, monkeypatch):
    import frugalrec.llm.runtime as runtime

    loaded: list[str] = []

    def fake_load(name: str = "smollm2-135m", *args, **kwargs):
        loaded.append(name)
        return FakeLLM(name=name)

    monkeypatch.setattr(runtime, "load_llm", fake_load)
    make_client().get(f"/v1/users/{USER}/recommendations", params={"budget_ms": 5})
    assert loaded == []
    cfg = tmp_path / "pipeline.json"
    cfg.write_text(json.dumps({"model": "ease", "model_config": {"l2": 300.0}, "reranker": "llm"}))
    c = make_client(
        pipeline_config=cfg, store_url=f"sqlite:///{tmp_path / 'cfg.db'}", model_dir=tmp_path / "n"
    )
    assert loaded == ["smollm2-135m"] and c.app.state.service.serving.cascade is not None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "ease", "reranker": "cross-encoder"}))
    with pytest.raises(ValueError, match="reranker"):
        make_client(pipeline_config=bad)


def test_retrain_keeps_the_llm_tier(make_client):
    import time

    c = _llm_client(make_client, FakeLLM(favour="Item"))
    c.get(f"/v1/users/{USER}/recommendations", params={"budget_ms": 60_000})
    old = c.app.state.service.serving.cascade
    assert c.post("/v1/admin/retrain", headers=AUTH).status_code in (200, 202)
    for _ in range(200):
        if c.get("/v1/admin/retrain", headers=AUTH).json()["state"] != "running":
            break
        time.sleep(0.05)
    new = c.app.state.service.serving.cascade
    assert new is not old and new.lock is old.lock and new.reranker is old.reranker
    r = c.get(f"/v1/users/{USER}/recommendations", params={"budget_ms": 60_000})
    assert r.json()["cost"]["model_version"] == 2 and r.json()["cost"]["llm_fired"]
    assert np.isfinite(r.json()["items"][0]["score"])
