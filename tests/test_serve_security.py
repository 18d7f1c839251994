"""Access control and bad input at the HTTP layer: 401/403, 429, 413, CORS, 4xx JSON."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve_helpers import API_KEY, AUTH

EVENT = {"user_id": "u1", "item_id": "i2", "type": "like"}

# The shared service fixtures (make_client, the pseudonym key).
pytest_plugins = ("serve_fixtures",)


def _is_error(r, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] and body["message"] and "Traceback" not in r.text
    if field is not None:
        assert body["field"] == field, body
    return body


def test_writes_need_a_bearer_key(make_client):
    c = make_client()
    r = c.post("/v1/events", json=EVENT)
    _is_error(r, 401, "authorization")
    _is_error(c.post("/v1/events", json=EVENT, headers={"Authorization": API_KEY}), 401)
    _is_error(c.post("/v1/events", json=EVENT, headers={"Authorization": "Bearer wrong"}), 403)
    _is_error(c.post("/v1/admin/retrain"), 401)
    _is_error(c.delete("/v1/users/u1", headers={"Authorization": "Bearer nope"}), 403)
    # Nothing was stored by the refused requests.
    assert c.app.state.service.store.count_events() == 0
    assert c.post("/v1/events", json=EVENT, headers=AUTH).status_code == 201


def test_keys_are_held_hashed(make_client):
    c = make_client()
    assert API_KEY not in repr(c.app.state.api_keys.__dict__)
    assert API_KEY not in repr(c.app.state.service.settings)


def test_no_key_configured_refuses_writes_but_serves_reads(make_client):
    c = make_client(api_keys=[])
    body = _is_error(c.post("/v1/events", json=EVENT, headers=AUTH), 403)
    assert "FRUGALREC_API_KEYS" in body["message"]
    assert c.get("/v1/users/u1/recommendations").status_code == 200


def test_reads_can_require_a_key(make_client):
    c = make_client(read_requires_key=True)
    _is_error(c.get("/v1/users/u1/recommendations"), 401)
    assert c.get("/v1/users/u1/recommendations", headers=AUTH).status_code == 200
    assert c.get("/healthz").status_code == 200


def test_rate_limit_per_key_answers_429_json(make_client):
    c = make_client(rate_limit_per_s=0.01, rate_limit_burst=3)
    codes = [c.post("/v1/events", json=EVENT, headers=AUTH).status_code for _ in range(5)]
    assert codes[:3] == [201, 201, 201] and codes[3:] == [429, 429]
    r = c.post("/v1/events", json=EVENT, headers=AUTH)
    _is_error(r, 429)
    assert int(r.headers["retry-after"]) >= 1
    assert c.app.state.service.store.count_events() == 3
    # Another key has its own bucket.
    other = make_client(api_keys=["another-key-0123456789"], rate_limit_burst=3)
    assert (
        other.post(
            "/v1/events", json=EVENT, headers={"Authorization": "Bearer another-key-0123456789"}
        ).status_code
        == 201
    )


def test_anonymous_reads_are_rate_limited_per_client_without_holding_the_address(make_client):
    c = make_client(anonymous_rate_limit_per_s=0.01, anonymous_rate_limit_burst=2)
    codes = [c.get("/v1/users/u1/recommendations").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    body = _is_error(c.get("/v1/items/i1/similar"), 429)
    assert "per client" in body["message"]
    # A key-holder is limited by its key's bucket, not the anonymous one; health stays open.
    assert c.get("/v1/users/u1/recommendations", headers=AUTH).status_code == 200
    assert c.get("/healthz").status_code == 200
    limiter = c.app.state.anonymous_limiter
    assert len(limiter) == 1
    # The bucket is named by a salted hash, never the address ("testclient" under TestClient).
    assert all(k.startswith("anon:") and "testclient" not in k for k in limiter._buckets)
    other = c.app.state.client_keys
    assert other.key("10.0.0.1") != other.key("10.0.0.2")
    assert other.key("10.0.0.1") != type(other)().key("10.0.0.1")  # per-process salt


def test_rate_limiter_memory_is_bounded_under_many_clients() -> None:
    from frugalrec.serve.errors import ApiError
    from frugalrec.serve.security import RateLimiter

    lim = RateLimiter(rate=1e-6, burst=1, max_keys=100)
    for i in range(1000):
        lim.take(f"c{i}")  # each spends its only token: all buckets active
    assert len(lim) <= 100
    # The most recent clients kept their (empty) buckets and are still limited.
    import pytest

    with pytest.raises(ApiError):
        lim.take("c999")
    # Idle, refilled buckets are dropped first.
    idle = RateLimiter(rate=1e9, burst=1, max_keys=10)
    for i in range(50):
        idle.take(f"c{i}")
    assert len(idle) <= 10


def test_body_size_limit_413(make_client):
    c = make_client(max_body_bytes=2048)
    big = {"events": [EVENT] * 100}
    _is_error(c.post("/v1/events", json=big, headers=AUTH), 413, "body")

    def chunks():
        yield b'{"events": ['
        for _ in range(100):
            yield json.dumps(EVENT).encode() + b","
        yield json.dumps(EVENT).encode() + b"]}"

    r = c.post("/v1/events", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    _is_error(r, 413)
    assert c.app.state.service.store.count_events() == 0


def test_cors_closed_by_default_open_when_configured(make_client):
    c = make_client()
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    r = c.options("/v1/events", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    r = c.get("/v1/users/u1/recommendations", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    c2 = make_client(cors_origins=("https://app.example",))
    r = c2.get("/v1/users/u1/recommendations", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_bad_input_names_the_field(make_client):
    c = make_client()
    _is_error(c.get("/v1/users/u1/recommendations", params={"k": 0}), 422, "k")
    _is_error(c.get("/v1/users/u1/recommendations", params={"k": "ten"}), 422, "k")
    _is_error(c.get("/v1/users/u1/recommendations", params={"budget_ms": -1}), 422, "budget_ms")
    _is_error(c.post("/v1/query", json={"text": ""}), 422, "text")
    _is_error(c.post("/v1/query", json={"text": "x", "colour": "red"}), 422, "colour")
    _is_error(c.post("/v1/events", json={**EVENT, "type": "love"}, headers=AUTH), 422, "type")
    _is_error(c.post("/v1/events", json={**EVENT, "type": "rate"}, headers=AUTH), 422, "value")
    _is_error(
        c.post("/v1/events", json={**EVENT, "type": "rate", "value": 9}, headers=AUTH),
        422,
        "value",
    )
    _is_error(c.post("/v1/events", json={**EVENT, "ts": 1e15}, headers=AUTH), 422, "ts")
    _is_error(c.post("/v1/events", json={**EVENT, "item_id": "zz"}, headers=AUTH), 422, "item_id")
    bad_batch = {"events": [EVENT, {**EVENT, "user_id": ""}]}
    _is_error(c.post("/v1/events", json=bad_batch, headers=AUTH), 422, "events[1].user_id")
    _is_error(c.post("/v1/events", json={"events": []}, headers=AUTH), 422, "events")
    r = c.post(
        "/v1/events", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    _is_error(r, 422)
    _is_error(c.get("/v1/nothing-here"), 404)
    _is_error(c.put("/v1/events", json=EVENT, headers=AUTH), 405)
    assert c.app.state.service.store.count_events() == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "user_id": json_values,
        "item_id": st.sampled_from(["i1", "i7", "nope"]) | json_values,
        "type": st.sampled_from(["view", "click", "like", "dislike", "rate"]) | json_values,
        "value": json_values,
        "ts": json_values,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=event_like
    | st.fixed_dictionaries({"events": st.lists(event_like, max_size=3)})
    | json_values
)
def test_fuzzed_event_bodies_get_201_or_4xx_json(make_client, body):
    c = getattr(test_fuzzed_event_bodies_get_201_or_4xx_json, "_client", None)
    if c is None:
        c = make_client()
        test_fuzzed_event_bodies_get_201_or_4xx_json._client = c  # type: ignore[attr-defined]
    before = c.app.state.service.store.count_events()
    # allow_nan: NaN/Infinity tokens, which Python's JSON parser accepts, are sent too.
    raw = json.dumps(body, allow_nan=True)
    r = c.post("/v1/events", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code in (201, 413, 422), r.text
    after = c.app.state.service.store.count_events()
    if r.status_code == 201:
        assert after - before == r.json()["stored"] >= 1
    else:
        assert after == before and r.json()["field"]
