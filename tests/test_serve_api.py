"""API contract of the service on a small synthetic catalogue (temp SQLite store)."""

from __future__ import annotations

import numpy as np

from frugalrec.serve.catalogue import synthetic_dataset
from serve_helpers import AUTH, item_ids

# The shared service fixtures (make_client, the pseudonym key).
pytest_plugins = ("serve_fixtures",)


def test_openapi_lists_the_versioned_endpoints(make_client):
    c = make_client()
    paths = c.get("/openapi.json").json()["paths"]
    assert {"get"} <= set(paths["/v1/users/{user_id}/recommendations"])
    assert {"delete"} <= set(paths["/v1/users/{user_id}"])
    assert {"post"} <= set(paths["/v1/query"])
    assert {"get"} <= set(paths["/v1/items/{item_id}/similar"])
    assert {"post"} <= set(paths["/v1/events"])
    assert {"post"} <= set(paths["/v1/admin/retrain"])
    for p in ("/healthz", "/readyz", "/metrics"):
        assert p in paths
    # Input and public schemas are separate models.
    schemas = c.get("/openapi.json").json()["components"]["schemas"]
    assert "EventIn" in schemas and "RecommendationList" in schemas


def test_recommendations_for_a_known_user_exclude_their_history(make_client):
    c = make_client()
    ds = synthetic_dataset()
    u = 3
    seen = set(ds.items_vocab.ids[ds.item[ds.user == u]])
    r = c.get(f"/v1/users/{ds.users_vocab.ids[u]}/recommendations", params={"k": 7})
    ids = item_ids(r)
    body = r.json()
    assert len(ids) == 7 and len(set(ids)) == 7
    assert not seen & set(ids)
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # u3 is in the first taste group: its list comes from the first half of the catalogue.
    assert all(int(i[1:]) < ds.n_items // 2 for i in ids[:3])
    cost = body["cost"]
    assert cost["tier"] == "cheap" and cost["pipeline"] == "ease"
    assert {"history_ms", "score_ms", "topk_ms"} <= set(cost["stages_ms"])
    assert cost["model_version"] == 1 and cost["cache"] == "miss"
    assert body["items"][0]["explanation"] is None


def test_explanations_cite_only_the_users_history(make_client):
    """The LLM tier's evidence + template explainer: each cited history item is one the
    user has, with its EASE term W[j, i] as weight (largest first); shared genres are the
    item's own; the sentence names no other title."""
    import re

    c = make_client()
    ds = synthetic_dataset()
    hist = ds.item[ds.user == 0]
    seen_titles = {f"Item {i}" for i in hist}
    body = c.get("/v1/users/u0/recommendations", params={"k": 5, "explain": "true"}).json()
    W = c.app.state.service.serving.model.weights_
    for it in body["items"]:
        ev, i = it["evidence"], int(it["item_id"][1:])
        assert it["explainer"] == "template" and it["grounded"] is True
        assert ev["item_title"] == it["title"] and not ev["popular"]
        because = [b["title"] for b in ev["because"]]
        assert because and set(because) <= seen_titles
        weights = [b["weight"] for b in ev["because"]]
        assert weights == sorted(weights, reverse=True)
        best = hist[np.argmax(W[hist, i])]
        assert because[0] == f"Item {best}"
        assert weights[0] == round(float(W[best, i]), 4)
        assert {g["genre"] for g in ev["shared_genres"]} <= set(it["genres"].split("|"))
        named = set(re.findall(r"Item \d+", it["explanation"]))
        assert named and named <= seen_titles | {it["title"]}
        assert set(because) <= named
    # The service serves template sentences unchecked (grounded by construction): the guard
    # must agree on every one of them.
    service = c.app.state.service
    ids = np.array([int(it["item_id"][1:]) for it in body["items"]])
    evidence = service.serving.evidence.build(hist, ids)
    for it, ev in zip(body["items"], evidence, strict=True):
        assert service.guard.check(it["explanation"], ev).ok
    assert {"evidence_ms", "explain_ms"} <= set(body["cost"]["stages_ms"])


def test_new_users_explanation_says_popular(make_client):
    c = make_client()
    body = c.get("/v1/users/nobody-yet/recommendations", params={"explain": "true"}).json()
    for it in body["items"]:
        assert it["evidence"]["popular"] and it["evidence"]["because"] == []
        assert it["explanation"] == f"{it['title']} is popular with viewers like you."


def test_new_user_gets_popular_items_and_budget_is_reported(make_client):
    c = make_client()
    ds = synthetic_dataset()
    r = c.get("/v1/users/someone-new/recommendations", params={"k": 5, "budget_ms": 1000})
    pop = np.bincount(ds.item, minlength=ds.n_items)
    best = set(ds.items_vocab.ids[np.argsort(-pop, kind="stable")[:10]])
    assert set(item_ids(r)) <= best
    assert r.json()["cost"]["budget_ms"] == 1000
    assert r.json()["cost"]["within_budget"] in (True, False)


def test_second_request_is_a_cache_hit(make_client):
    c = make_client()
    first = c.get("/v1/users/u5/recommendations").json()
    second = c.get("/v1/users/u5/recommendations").json()
    assert first["cost"]["cache"] == "miss" and second["cost"]["cache"] == "hit"
    assert first["items"] == second["items"]


def test_similar_items(make_client):
    c = make_client()
    r = c.get("/v1/items/i3/similar", params={"k": 5})
    ids = item_ids(r)
    assert len(ids) == 5 and "i3" not in ids
    # Items co-liked by the same taste group are the most similar ones.
    assert all(int(i[1:]) < 40 for i in ids)
    missing = c.get("/v1/items/no-such-item/similar")
    assert missing.status_code == 404 and missing.json()["field"] == "item_id"


def test_query_applies_hard_constraints_and_user(make_client):
    c = make_client()
    r = c.post("/v1/query", json={"text": "something funny, no horror", "k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["intent"]["exclude_genres"] == ["Horror"]
    assert body["items"] and all("Horror" not in it["genres"] for it in body["items"])
    assert body["cost"]["tier"] == "query-rules"
    ds = synthetic_dataset()
    seen = set(ds.items_vocab.ids[ds.item[ds.user == 2]])
    r = c.post("/v1/query", json={"text": "war movies", "user_id": "u2", "k": 5})
    assert r.status_code == 200 and not seen & set(item_ids(r))


def test_page_and_health(make_client):
    c = make_client()
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<label for="user-id">' in page.text
    assert c.get("/static/app.js").status_code == 200
    assert c.get("/healthz").json()["status"] == "ok"
    ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == 1


def test_metrics_use_route_templates_never_raw_user_ids(make_client):
    c = make_client()
    c.get("/v1/users/secret-user-77/recommendations")
    c.get("/v1/users/secret-user-77/recommendations")
    assert (
        c.post(
            "/v1/events",
            json={"user_id": "secret-user-77", "item_id": "i1", "type": "click"},
            headers=AUTH,
        ).status_code
        == 201
    )
    text = c.get("/metrics").text
    assert "secret-user-77" not in text
    assert 'endpoint="/v1/users/{user_id}/recommendations"' in text
    assert 'tier="cheap"' in text and 'tier="cache"' in text
    assert "frugalrec_cache_hit_ratio 0.5" in text
    assert "frugalrec_events_in_store 1.0" in text
    assert "frugalrec_model_version 1.0" in text
    stats = c.get("/v1/stats").json()
    assert {"cheap", "cache"} <= set(stats["tiers"])
    assert stats["tiers"]["cheap"]["p99_ms"] >= stats["tiers"]["cheap"]["p50_ms"] > 0


def test_recommendation_payload_matches_the_public_schema(make_client):
    from frugalrec.serve.schemas import RecommendationList

    c = make_client()
    for params in ({"k": 3}, {"k": 4, "explain": "true", "budget_ms": 50}):
        body = c.get("/v1/users/u1/recommendations", params=params).json()
        assert RecommendationList.model_validate(body).model_dump(mode="json") == body
    ref = c.get("/openapi.json").json()["paths"]["/v1/users/{user_id}/recommendations"]
    schema = ref["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/RecommendationList")
