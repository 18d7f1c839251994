"""PostgreSQL store through the same interface (psycopg 3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from frugalrec.serve.store.base import SQLStore, StoreError


class PostgresStore(SQLStore):
    """``postgresql://user@host:port/dbname``.

    Commits are durable with PostgreSQL's default ``synchronous_commit=on`` (the WAL is
    flushed before COMMIT returns); the store sets it explicitly so a server-wide ``off``
    cannot silently weaken the acknowledgement.
    """

    placeholder = "%s"
    serial_pk = "BIGSERIAL PRIMARY KEY"

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the serve extra installs it
            raise StoreError(
                "PostgreSQL store needs psycopg: pip install 'psycopg[binary]'"
            ) from exc
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            conn.execute("SET synchronous_commit = on")
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return conn

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # Reads on their own connection: a recommendation never waits for an event's commit.
        self._rlock = threading.Lock()
        self._rconn = self._connect()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self._rlock, self._rconn.transaction(), self._rconn.cursor() as cur:
            yield cur

    def compact(self) -> bool:
        """``VACUUM FULL`` of the tables that held the user (each is rewritten into a new file
        and the old one unlinked, so dead rows leave the relation files), then a
        ``CHECKPOINT`` where the role may (superuser or ``pg_checkpoint``). The tables are
        locked for the rewrite: small here, but schedule it on a large store. Older WAL
        segments keep the rows until PostgreSQL recycles them (``SECURITY.md``)."""
        import psycopg

        with self._lock, self._rlock:
            try:
                for table in ("events", "users"):
                    self._conn.execute(f"VACUUM FULL {table}")
            except psycopg.errors.LockNotAvailable:
                return False
            try:
                self._conn.execute("CHECKPOINT")
            except psycopg.errors.InsufficientPrivilege:
                pass
        return True

    def close(self) -> None:
        with self._rlock:
            self._rconn.close()
        super().close()
