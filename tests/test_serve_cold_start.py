"""A user with nothing personal to go on is answered by the model's own cold-start path
(``Recommender.recommend`` for a user it does not know), and the response says so."""

from __future__ import annotations

import numpy as np

from serve_helpers import AUTH

# The shared service fixtures (make_client, the pseudonym key).
pytest_plugins = ("serve_fixtures",)


def _get(c, user: str, k: int = 10) -> dict:
    r = c.get(f"/v1/users/{user}/recommendations", params={"k": k})
    assert r.status_code == 200, r.text
    return r.json()


def _event(c, user: str, item: str, type_: str) -> None:
    r = c.post("/v1/events", json={"user_id": user, "item_id": item, "type": type_}, headers=AUTH)
    assert r.status_code == 201, r.text


def test_cold_start_flag_and_the_models_own_answer(make_client):
    c = make_client()
    model = c.app.state.service.serving.model
    ids = [str(i) for i in c.app.state.service.dataset.items_vocab.ids]
    expect, _ = model.recommend(np.array([-1]), 5)
    new = _get(c, "never-seen", k=5)
    assert new["cold_start"] is True
    assert [it["item_id"] for it in new["items"]] == [ids[i] for i in expect[0]]
    cached = _get(c, "never-seen", k=5)  # the result cache keeps the flag
    assert cached["cost"]["cache"] == "hit" and cached["cold_start"] is True
    assert _get(c, "u3")["cold_start"] is False
    # Only a dislike: still nothing to go on, and the disliked item is left out.
    top = new["items"][0]["item_id"]
    _event(c, "never-seen", top, "dislike")
    after = _get(c, "never-seen", k=5)
    assert after["cold_start"] is True and top not in item_ids_of(after)
    assert len(after["items"]) == 5
    # A like gives the model a history.
    _event(c, "never-seen", "i60", "like")
    assert _get(c, "never-seen")["cold_start"] is False
    # A forgotten user is a stranger again.
    assert c.delete("/v1/users/u3", headers=AUTH).status_code == 200
    assert _get(c, "u3")["cold_start"] is True


def test_query_says_whether_a_history_personalised_it(make_client):
    c = make_client()
    anon = c.post("/v1/query", json={"text": "something"}).json()
    assert anon["cold_start"] is True
    known = c.post("/v1/query", json={"text": "something", "user_id": "u3"}).json()
    assert known["cold_start"] is False


def item_ids_of(payload: dict) -> list[str]:
    return [it["item_id"] for it in payload["items"]]
