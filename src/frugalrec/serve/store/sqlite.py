"""SQLite store: the embedded default (one file, WAL mode)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from frugalrec.serve.store.base import SQLStore, StoreError


class SQLiteStore(SQLStore):
    """``sqlite:///path/to/file.db``.

    WAL lets readers proceed during a write. ``synchronous=FULL`` fsyncs the WAL at every
    commit: an event is acknowledged only once it would survive a power cut, not merely a
    process crash (NORMAL would survive a SIGKILL but could lose the last commits on power
    loss). The cost is one fsync per request that writes, a few ms, paid only by writes.
    """

    def __init__(self, url: str) -> None:
        self._rlock = threading.Lock()
        if not url.startswith("sqlite:///"):
            raise StoreError(f"not a SQLite URL: {url!r} (expected sqlite:///path)")
        self.path = Path(url[len("sqlite:///") :])
        if not self.path.name:
            raise StoreError(f"SQLite URL has no file name: {url!r}")
        super().__init__(url)
        # A second connection for reads: in WAL mode readers never wait for a writer's
        # fsync, so a recommendation is not queued behind an event commit.
        self._rconn = self._connect()

    def _connect(self) -> Any:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA foreign_keys=ON")
            # A forgotten user's rows are overwritten with zeros, not just unlinked: free pages
            # of a deleted row would otherwise keep its bytes in the file.
            conn.execute("PRAGMA secure_delete=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        return conn

    def _has_column(self, cur: Any, table: str, column: str) -> bool:
        cur.execute(f"PRAGMA table_info({table})")
        return any(r[1] == column for r in cur.fetchall())

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self._rlock:
            cur = self._rconn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            finally:
                cur.execute("COMMIT")
                cur.close()

    def forget_user(self, user: str) -> int:
        n = super().forget_user(user)
        # The zeroed pages went to the WAL, whose older frames still hold the rows: copy the
        # WAL into the file and truncate it. A reader mid-transaction can block it (it then
        # happens at the next forget or the SQLite auto-checkpoint); never an error.
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
        return n

    def compact(self) -> bool:
        """``VACUUM`` with ``secure_delete`` on a connection of its own, then a truncating
        checkpoint; False when another process holds the file busy (a running service)."""
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("VACUUM")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            return not busy
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()

    def close(self) -> None:
        with self._rlock:
            self._rconn.close()
        super().close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()
