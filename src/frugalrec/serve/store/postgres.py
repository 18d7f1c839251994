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

    def _has_column(self, cur: Any, table: str, column: str) -> bool:
        cur.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s AND column_name = %s",
            (table, column),
        )
        return cur.fetchone() is not None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self._rlock, self._rconn.transaction(), self._rconn.cursor() as cur:
            yield cur

    needs_compaction_after_forget = True

    def compact(self) -> bool:
        """``VACUUM FULL`` of the tables that held the user (each is rewritten into a new file
        and the old one unlinked, so dead rows leave the relation files), then a
        ``CHECKPOINT`` where the role may (superuser or ``pg_checkpoint``).

        Runs on a connection of its own, so the store's connections stay free; the rewrite
        takes each table's exclusive lock, briefly on a small store (schedule it on a large
        one). It waits at most ``lock_timeout`` (200 ms) for that lock, because readers queue
        behind a waiting exclusive request, and returns False then, or when the role does not
        own a table (PostgreSQL skips it with only a warning). Older WAL segments keep the
        rows until PostgreSQL recycles them (``SECURITY.md``)."""
        import psycopg

        conn = self._connect()
        skipped: list[str] = []
        conn.add_notice_handler(
            lambda d: (
                skipped.append(d.message_primary or "")
                if "skipping" in (d.message_primary or "")
                else None
            )
        )
        try:
            conn.execute("SET lock_timeout = '200ms'")
            for table in ("events", "users"):
                conn.execute(f"VACUUM FULL {table}")
            try:
                conn.execute("CHECKPOINT")
            except psycopg.errors.InsufficientPrivilege:
                pass
        except psycopg.errors.LockNotAvailable:
            return False
        finally:
            conn.close()
        return not skipped

    def close(self) -> None:
        with self._rlock:
            self._rconn.close()
        super().close()
