"""Idempotent events: a retry with the same ``event_id`` for the same user is stored once
and acknowledged again with the same answer; batches per event; enforced by the store's
unique key (SQLite and a real PostgreSQL), so concurrent retries cannot duplicate."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from frugalrec.serve.store import EventConflict, StoredEvent, open_store
from serve_helpers import AUTH

# The shared service fixtures (make_client, the pseudonym key, store_url).
pytest_plugins = ("serve_fixtures",)


def _post(c, body):
    return c.post("/v1/events", json=body, headers=AUTH)


def _ok(c, **event) -> None:
    r = _post(c, event)
    assert r.status_code == 201, r.text


def _metric(c, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_retried_event_is_stored_once_and_acknowledged_the_same(make_client, store_url):
    c = make_client(store_url=store_url)
    store = c.app.state.service.store
    ev = {"user_id": "shopper@example.com", "item_id": "i3", "type": "like", "event_id": "e-1"}
    first = _post(c, ev)
    assert first.status_code == 201, first.text
    again = _post(c, ev)
    assert again.status_code == 201 and again.json() == first.json() == {
        "stored": 1,
        "durable": True,
    }
    p = c.app.state.service.pseudonym("shopper@example.com")
    assert store.count_events(p) == 1
    assert _metric(c, "frugalrec_events_stored_total") == 1
    assert _metric(c, "frugalrec_events_repeated_total") == 1
    # Per user, not global: another user's event with the same id is a different event.
    assert _post(c, {**ev, "user_id": "someone-else"}).status_code == 201
    assert store.count_events() == 2
    # Events without an event_id are never merged, even when identical.
    plain = {"user_id": "u5", "item_id": "i4", "type": "view", "ts": 100.0}
    _post(c, plain)
    _post(c, plain)
    assert store.count_events(c.app.state.service.pseudonym("u5")) == 2


def test_batches_are_idempotent_per_event(make_client, store_url):
    c = make_client(store_url=store_url)
    store = c.app.state.service.store
    p = c.app.state.service.pseudonym("u8")
    _ok(c, user_id="u8", item_id="i1", type="like", event_id="a")
    batch = {
        "events": [
            {"user_id": "u8", "item_id": "i1", "type": "like", "event_id": "a"},  # sent before
            {"user_id": "u8", "item_id": "i2", "type": "rate", "value": 4.0, "event_id": "b"},
            {"user_id": "u8", "item_id": "i2", "type": "rate", "value": 4.0, "event_id": "b"},
            {"user_id": "u8", "item_id": "i9", "type": "view"},
        ]
    }
    first = _post(c, batch)
    assert first.status_code == 201 and first.json() == {"stored": 4, "durable": True}
    # a (earlier), b (once, though twice in the batch), the plain view.
    assert store.count_events(p) == 3
    again = _post(c, batch)
    assert again.status_code == 201 and again.json() == first.json()
    # The retry stored the plain view again (it has no event_id), nothing else.
    assert store.count_events(p) == 4
    assert sorted((e.item, e.type) for e in store.user_events(p)) == [
        ("i1", "like"),
        ("i2", "rate"),
        ("i9", "view"),
        ("i9", "view"),
    ]


def test_a_reused_event_id_for_another_event_is_a_conflict(make_client, store_url):
    c = make_client(store_url=store_url)
    store = c.app.state.service.store
    _ok(c, user_id="u2", item_id="i1", type="like", event_id="x")
    r = _post(c, {"user_id": "u2", "item_id": "i7", "type": "like", "event_id": "x"})
    assert r.status_code == 409 and r.json()["field"] == "event_id"
    batch = {
        "events": [
            {"user_id": "u2", "item_id": "i5", "type": "view", "event_id": "new"},
            {"user_id": "u2", "item_id": "i1", "type": "dislike", "event_id": "x"},
        ]
    }
    r = _post(c, batch)
    assert r.status_code == 409 and r.json()["field"] == "events[1].event_id"
    # All or nothing: the batch's first event was rolled back with it.
    assert store.count_events() == 1
    assert _post(c, batch["events"][0]).json() == {"stored": 1, "durable": True}
    assert store.count_events() == 2


def test_event_ids_are_checked_and_not_stored_raw(make_client, tmp_path):
    c = make_client()
    for bad in ("", "x" * 129, "tab\there", 17):
        r = _post(c, {"user_id": "u1", "item_id": "i1", "type": "like", "event_id": bad})
        assert r.status_code == 422 and r.json()["field"] == "event_id", (bad, r.text)
    secret = "order-4711-for-jane.doe@example.com"
    _ok(c, user_id="u1", item_id="i1", type="like", event_id=secret)
    c.app.state.service.store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert secret.encode() not in raw and b"jane.doe" not in raw
    assert raw.count(b"e_") >= 1  # the keyed hash is there instead


def test_concurrent_retries_store_one_row(store_url):
    """Writers on separate connections race with the same (user, event_key): the unique key
    inside each transaction lets exactly one row in, and every writer is acknowledged."""
    stores = [open_store(store_url) for _ in range(6)]
    ev = StoredEvent("u_race", "i1", "like", None, 1.0, "e_same")
    barrier = threading.Barrier(len(stores))
    new: list[int] = []
    errors: list[BaseException] = []

    def write(store) -> None:
        barrier.wait()
        try:
            new.append(store.add_events([ev]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        assert sorted(new) == [0] * (len(stores) - 1) + [1]
        assert stores[0].count_events("u_race") == 1
        with pytest.raises(EventConflict):
            stores[0].add_events([StoredEvent("u_race", "i2", "like", None, 1.0, "e_same")])
    finally:
        for s in stores:
            s.close()


def test_a_store_from_before_event_ids_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, user_pseudonym TEXT NOT "
        "NULL, item_id TEXT NOT NULL, type TEXT NOT NULL, value DOUBLE PRECISION, ts DOUBLE "
        "PRECISION NOT NULL)"
    )
    conn.execute(
        "INSERT INTO events (user_pseudonym, item_id, type, ts) VALUES ('u_o', 'i1', 'like', 1)"
    )
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.count_events() == 1
        ev = StoredEvent("u_o", "i2", "like", None, 2.0, "e_k")
        assert store.add_events([ev]) == 1 and store.add_events([ev]) == 0
        assert store.count_events() == 2
    finally:
        store.close()
