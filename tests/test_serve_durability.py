"""The power-loss promise of SECURITY.md rests on two settings, read back from the live
connections the store writes with: SQLite ``synchronous=FULL`` (WAL fsynced at every
commit) and PostgreSQL ``synchronous_commit=on`` (WAL flushed before COMMIT returns), even
where the server's own default is ``off``. A SIGKILL test cannot tell FULL from NORMAL."""

from __future__ import annotations

from frugalrec.serve.store import open_store

# The shared service fixtures (make_client, the pseudonym key, postgres fixtures).
pytest_plugins = ("serve_fixtures",)

SQLITE_FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def test_sqlite_store_commits_with_synchronous_full(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        for conn in (store._conn, store._rconn):
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == SQLITE_FULL
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_the_service_store_is_the_durable_one(make_client):
    store = make_client().app.state.service.store
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == SQLITE_FULL


def test_postgres_store_commits_with_synchronous_commit_on(fresh_postgres):
    import psycopg

    # A server (here: database) whose default is the unsafe one must not weaken the store.
    name = fresh_postgres.rsplit("/", 1)[1]
    with psycopg.connect(fresh_postgres, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        with psycopg.connect(fresh_postgres, autocommit=True) as other:
            assert other.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    store = open_store(fresh_postgres)
    try:
        for conn in (store._conn, store._rconn):
            assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        # Still on inside the write transaction the events go through.
        with store._lock, store._transaction() as cur:
            cur.execute("SHOW synchronous_commit")
            assert cur.fetchone()[0] == "on"
    finally:
        store.close()
