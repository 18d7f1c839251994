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

    def close(self) -> None:
        with self._rlock:
            self._rconn.close()
        super().close()
