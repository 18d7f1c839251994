"""The store interface behaves the same on SQLite and on a real PostgreSQL server (started
and stopped by this test session); the service runs unchanged on both."""

from __future__ import annotations

from pathlib import Path

import pytest

from frugalrec.serve.store import StoredEvent, StoreError, open_store
from serve_helpers import AUTH, item_ids, retrain

# The shared service fixtures (make_client, the pseudonym key, store_url: SQLite and a real
# PostgreSQL).
pytest_plugins = ("serve_fixtures",)


def _ev(user: str, item: str, type_: str = "like", value=None, ts: float = 1.0) -> StoredEvent:
    return StoredEvent(user, item, type_, value, ts)


def test_store_contract(store_url):
    store = open_store(store_url)
    try:
        assert store.ping()
        assert (
            store.add_events(
                [_ev("u_a", "i1"), _ev("u_a", "i2", "rate", 4.5, 2.0), _ev("u_b", "i1", "dislike")]
            )
            == 3
        )
        assert store.count_events() == 3 and store.count_events("u_a") == 2
        got = store.user_events("u_a")
        assert [(e.item, e.type, e.value, e.ts) for e in got] == [
            ("i1", "like", None, 1.0),
            ("i2", "rate", 4.5, 2.0),
        ]
        assert [e.user for e in store.all_events()] == ["u_a", "u_a", "u_b"]
        store.sync_items([("i1", "One"), ("i2", "Two")])
        store.sync_items([("i1", "One again")])  # idempotent
        assert store.forget_user("u_a") == 2
        assert store.count_events("u_a") == 0 and store.count_events() == 1
        assert store.forgotten_users() == {"u_a"}
        assert store.forget_user("u_a") == 0
        assert store.register_model("/m/1", "a" * 64, "ease", 3) == 1
        assert store.register_model("/m/2", "b" * 64, "ease", 4) == 2
        assert [(m.version, m.sha256, m.n_events) for m in store.models()] == [
            (1, "a" * 64, 3),
            (2, "b" * 64, 4),
        ]
    finally:
        store.close()


def test_failed_batch_rolls_back(store_url):
    store = open_store(store_url)
    try:
        store.add_events([_ev("u_a", "i1")])
        # The third row violates NOT NULL: the whole batch must vanish.
        bad = [_ev("u_x", "i1"), _ev("u_x", "i2"), StoredEvent("u_x", None, "like", None, 1.0)]  # type: ignore[arg-type]
        with pytest.raises(Exception):  # noqa: B017 - driver-specific integrity error
            store.add_events(bad)
        assert store.count_events() == 1 and store.count_events("u_x") == 0
        assert store.ping()  # the connection is usable after the rollback
    finally:
        store.close()


def test_data_survives_reopening(store_url):
    store = open_store(store_url)
    store.add_events([_ev("u_a", "i1"), _ev("u_a", "i2")])
    store.close()
    again = open_store(store_url)
    try:
        assert again.count_events("u_a") == 2
    finally:
        again.close()


def test_bad_urls_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


def test_service_runs_the_same_on_both_stores(make_client, store_url):
    c = make_client(store_url=store_url)
    before = item_ids(c.get("/v1/users/u3/recommendations"))
    r = c.post(
        "/v1/events",
        json={
            "events": [
                {"user_id": "u3", "item_id": before[0], "type": "dislike"},
                {"user_id": "u3", "item_id": "i70", "type": "like"},
            ]
        },
        headers=AUTH,
    )
    assert r.status_code == 201
    after = item_ids(c.get("/v1/users/u3/recommendations"))
    assert before[0] not in after and after != before
    status = retrain(c)
    assert status["state"] == "done" and status["serving_version"] == 2
    assert before[0] not in item_ids(c.get("/v1/users/u3/recommendations"))
    assert c.delete("/v1/users/u3", headers=AUTH).json()["events_deleted"] == 2
    assert c.get("/readyz").status_code == 200
    # The retrain after a forget compacts the store: on PostgreSQL the dead rows then leave
    # its files (SQLite zeroes them at the forget already; tests/test_privacy_forget.py).
    assert retrain(c)["state"] == "done"
    if store_url.startswith("postgresql"):
        pseudonym = c.app.state.service.pseudonym("u3").encode()
        assert _postgres_db_bytes(store_url).count(pseudonym) == 2  # forgotten_users + pkey


def _postgres_db_bytes(url: str) -> bytes:
    """Every relation file of the database at ``url``, after a checkpoint flushed them."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        db_oid = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
    return b"".join(f.read_bytes() for f in (data_dir / "base" / str(db_oid)).iterdir())


@pytest.mark.parametrize("compact", [False, True])
def test_postgres_forget_then_compact_leaves_no_bytes_in_the_relation_files(
    fresh_postgres, compact: bool
):
    gone, kept = "p" + "a" * 40, "p" + "b" * 40
    store = open_store(fresh_postgres)
    store.add_events([_ev(u, f"i{j}", ts=float(j)) for u in (gone, kept) for j in range(6)])
    assert _postgres_db_bytes(fresh_postgres).count(gone.encode()) >= 6  # the test can fail
    store.forget_user(gone)
    if compact:
        assert store.compact()
    assert store.count_events() == 6 and gone in store.forgotten_users()
    store.close()
    n = _postgres_db_bytes(fresh_postgres).count(gone.encode())
    if compact:
        # What must stay: the pseudonym in forgotten_users and its primary-key index.
        assert n == 2
    else:
        assert n > 2  # dead rows linger until the rewrite: why compact() exists


def test_postgres_compact_gives_up_on_a_busy_table_without_blocking(fresh_postgres):
    import time

    import psycopg

    store = open_store(fresh_postgres)
    store.add_events([_ev("p1", "i1")])
    with psycopg.connect(fresh_postgres) as other:  # a long transaction reading events
        other.execute("SELECT COUNT(*) FROM events").fetchone()
        t0 = time.perf_counter()
        assert store.compact() is False
        assert time.perf_counter() - t0 < 5.0  # lock_timeout, not an indefinite wait
        # The store's own connections were never held: reads and writes go on.
        assert store.count_events() == 1
        store.add_events([_ev("p2", "i2")])
    assert store.compact() is True  # once the reader is gone
    store.close()
