"""The load generator (``frugalrec.bench.loadtest``) against a real server: it counts what
it sent, checks every acknowledged event in the store and finds no duplicate among the
events it deliberately sent twice (their event_id makes the retry harmless)."""

from __future__ import annotations

from frugalrec.serve.store import open_store
from serve_helpers import API_KEY, ServerThread

# The shared service fixtures (make_client, the pseudonym key).
pytest_plugins = ("serve_fixtures",)


def test_load_generator_checks_acks_and_retried_duplicates(make_client, tmp_path):
    from frugalrec.bench.loadtest import run, table, targets_at

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    c = make_client(store_url=store_url)
    ds = c.app.state.service.dataset
    users = [str(u) for u in ds.users_vocab.ids] + ["new-a", "new-b"]
    items = [str(i) for i in ds.items_vocab.ids]
    with ServerThread(c.app) as srv:
        s = run(
            f"http://127.0.0.1:{srv.port}", API_KEY, rate=60, duration=2.0, users=users,
            items=items, mix=(50, 45, 5), warmup=0.5, store_url=store_url, retry_share=0.5,
        )  # fmt: skip
    assert s["requests"] == 120 and s["errors"] == 0, s["error_samples"]
    check = s["store_check"]
    assert s["events_sent_twice"] > 0 and check["events_retried"] >= s["events_sent_twice"]
    assert check["acked_missing"] == 0 and check["duplicates_among_retried"] == 0
    assert check["duplicates_stored"] == 0
    # Every acknowledged event of the run is in the store, and nothing else of the run is.
    assert check["events_acked_run"] == check["events_in_store_run"] > 0
    store = open_store(store_url)  # the server's own closed with it
    try:
        assert store.count_events() == check["events_in_store"]
    finally:
        store.close()
    assert s["latency_served"]["rec"]["n"] == s["statuses"]["rec"]["200"]
    assert s["shed"] == 0 and s["latency_shed"] == {}
    t = targets_at(s)
    assert t["no_acked_event_lost_ok"] and t["no_duplicates_ok"]
    assert "| 1x |" in table({"runs": {"1x": s}})
