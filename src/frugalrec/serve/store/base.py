"""The store interface: events, users, items, forgotten users and the model registry.

One SQL implementation (``SQLStore``) serves SQLite and PostgreSQL: the dialects differ
only in connection set-up, placeholders and the auto-increment column. Every write is one
transaction, so a rejected batch writes nothing and an acknowledged one is committed.
Users are stored only as pseudonyms; the store never sees a raw user id.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

EVENT_TYPES = ("view", "click", "like", "dislike", "rate")


@dataclass(frozen=True)
class StoredEvent:
    """One feedback event as stored: ``user`` is a pseudonym, ``item`` an external item id,
    ``ts`` seconds since the epoch, ``event_key`` the keyed hash of the client's
    ``event_id`` (None without one): unique per user, so a retry is stored once."""

    user: str
    item: str
    type: str
    value: float | None
    ts: float
    event_key: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    """One registered model artifact (directory ``path``, SHA-256 of its arrays)."""

    version: int
    created_at: float
    path: str
    sha256: str
    model: str
    n_events: int


class StoreError(RuntimeError):
    """The store cannot be opened or used (bad URL, unreachable server)."""


class EventConflict(StoreError):
    """``events[index]`` reuses its user's ``event_key`` for a different event (item, type
    or value); the transaction was rolled back."""

    def __init__(self, index: int) -> None:
        super().__init__(f"events[{index}]: event_key already used for a different event")
        self.index = index


class Store(ABC):
    """What the service needs from persistent storage (thread-safe)."""

    url: str

    @abstractmethod
    def ping(self) -> bool:
        """True when the store answers a trivial query."""

    @abstractmethod
    def add_events(self, events: Sequence[StoredEvent]) -> int:
        """Store ``events`` in one transaction (all or nothing); return how many were new.

        An event whose ``(user, event_key)`` is already stored (a retry, or a repeat in the
        same batch) is not stored again; one that reuses the key for a different event
        raises :class:`EventConflict` and nothing is written. Returns only after the commit
        is durable.
        """

    @abstractmethod
    def user_events(self, user: str) -> list[StoredEvent]:
        """Events of one pseudonymous user, oldest first."""

    @abstractmethod
    def all_events(self) -> list[StoredEvent]:
        """Every stored event, oldest first (for retraining)."""

    @abstractmethod
    def count_events(self, user: str | None = None) -> int:
        """Number of stored events (of one user, or all)."""

    @abstractmethod
    def forget_user(self, user: str) -> int:
        """Delete the user's events and user row and remember the pseudonym as forgotten
        (so base-dataset rows of that user are no longer served or trained on). Returns the
        number of events deleted."""

    @abstractmethod
    def forgotten_users(self) -> set[str]:
        """Pseudonyms of forgotten users."""

    #: Whether deleted rows stay in the database's files until :meth:`compact` rewrites
    #: them (the service then compacts after the first retrain that follows a forget).
    needs_compaction_after_forget: bool = False

    @abstractmethod
    def compact(self) -> bool:
        """Rewrite storage so deleted rows leave no bytes in the database's files. False
        when it could not finish now (busy, or not permitted): some tables may have been
        rewritten already; calling again later is safe."""

    @abstractmethod
    def sync_items(self, items: Sequence[tuple[str, str]]) -> None:
        """Insert catalogue items ``(item_id, title)`` not yet stored."""

    @abstractmethod
    def register_model(self, path: str, sha256: str, model: str, n_events: int) -> int:
        """Add a model version (the next integer) and return it."""

    @abstractmethod
    def models(self) -> list[ModelVersion]:
        """Registered model versions, oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class SQLStore(Store):
    """Shared SQL for both dialects; subclasses provide ``_connect`` and dialect bits.

    One connection guarded by a lock: the service's writes are small and serialised by the
    database anyway, and reads are mostly answered from the service's in-memory caches.
    """

    placeholder = "?"
    serial_pk = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._conn: Any = self._connect()
        self._create_schema()

    # ---- dialect hooks ---------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """Yield a cursor inside one transaction; commit on success, roll back on error."""

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A cursor for reads; by default the write connection under the lock."""
        with self._lock, self._transaction() as cur:
            yield cur

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _create_schema(self) -> None:
        statements = [
            f"""CREATE TABLE IF NOT EXISTS events (
                id {self.serial_pk},
                user_pseudonym TEXT NOT NULL,
                item_id TEXT NOT NULL,
                type TEXT NOT NULL,
                value DOUBLE PRECISION,
                ts DOUBLE PRECISION NOT NULL,
                event_key TEXT)""",
            "CREATE INDEX IF NOT EXISTS events_user ON events (user_pseudonym, id)",
            """CREATE TABLE IF NOT EXISTS users (
                pseudonym TEXT PRIMARY KEY,
                first_seen DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS items (
                item_id TEXT PRIMARY KEY,
                title TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS forgotten_users (
                pseudonym TEXT PRIMARY KEY,
                forgotten_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS models (
                version INTEGER PRIMARY KEY,
                created_at DOUBLE PRECISION NOT NULL,
                path TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                model TEXT NOT NULL,
                n_events INTEGER NOT NULL)""",
        ]
        with self._lock, self._transaction() as cur:
            for s in statements:
                cur.execute(s)
            # Stores created before event ids: add the column (NULL for old rows).
            if not self._has_column(cur, "events", "event_key"):
                cur.execute("ALTER TABLE events ADD COLUMN event_key TEXT")
            # The idempotency key. NULLs are distinct in a unique index (SQLite and
            # PostgreSQL), so events sent without an event_id are never merged.
            cur.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS events_user_event_key "
                "ON events (user_pseudonym, event_key)"
            )

    @abstractmethod
    def _has_column(self, cur: Any, table: str, column: str) -> bool:
        """Whether ``table`` has ``column`` (inside the schema transaction)."""

    # ---- interface -------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            with self._reading() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() is not None
        except Exception:
            return False

    def add_events(self, events: Sequence[StoredEvent]) -> int:
        if not events:
            return 0
        now = time.time()
        plain = [(e.user, e.item, e.type, e.value, e.ts) for e in events if e.event_key is None]
        # In key order: two batches sharing keys then wait for each other in one order and
        # cannot deadlock on the unique index (PostgreSQL, several processes).
        keyed = sorted(
            ((i, e) for i, e in enumerate(events) if e.event_key is not None),
            key=lambda ie: (ie[1].user, ie[1].event_key or "", ie[0]),
        )
        users = sorted({e.user for e in events})
        new = len(plain)
        with self._lock, self._transaction() as cur:
            if plain:
                cur.executemany(
                    self._sql(
                        "INSERT INTO events (user_pseudonym, item_id, type, value, ts) "
                        "VALUES (?, ?, ?, ?, ?)"
                    ),
                    plain,
                )
            for i, e in keyed:
                # The unique index decides, inside this transaction: a concurrent retry on
                # another connection waits for this commit and then finds the row.
                cur.execute(
                    self._sql(
                        "INSERT INTO events (user_pseudonym, item_id, type, value, ts, event_key) "
                        "VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (user_pseudonym, event_key) DO NOTHING"
                    ),
                    (e.user, e.item, e.type, e.value, e.ts, e.event_key),
                )
                if cur.rowcount == 1:
                    new += 1
                    continue
                cur.execute(
                    self._sql(
                        "SELECT item_id, type, value FROM events "
                        "WHERE user_pseudonym = ? AND event_key = ?"
                    ),
                    (e.user, e.event_key),
                )
                row = cur.fetchone()
                if row is None or (row[0], row[1], row[2]) != (e.item, e.type, e.value):
                    raise EventConflict(i)
            cur.executemany(
                self._sql(
                    "INSERT INTO users (pseudonym, first_seen) VALUES (?, ?) "
                    "ON CONFLICT (pseudonym) DO NOTHING"
                ),
                [(u, now) for u in users],
            )
        return new

    def _events(self, where: str, params: tuple[Any, ...]) -> list[StoredEvent]:
        with self._reading() as cur:
            cur.execute(
                self._sql(
                    "SELECT user_pseudonym, item_id, type, value, ts FROM events "
                    f"{where} ORDER BY id"
                ),
                params,
            )
            rows = cur.fetchall()
        return [StoredEvent(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]

    def user_events(self, user: str) -> list[StoredEvent]:
        return self._events("WHERE user_pseudonym = ?", (user,))

    def all_events(self) -> list[StoredEvent]:
        return self._events("", ())

    def count_events(self, user: str | None = None) -> int:
        with self._reading() as cur:
            if user is None:
                cur.execute("SELECT COUNT(*) FROM events")
            else:
                cur.execute(
                    self._sql("SELECT COUNT(*) FROM events WHERE user_pseudonym = ?"), (user,)
                )
            row = cur.fetchone()
        return int(row[0])

    def forget_user(self, user: str) -> int:
        with self._lock, self._transaction() as cur:
            cur.execute(self._sql("DELETE FROM events WHERE user_pseudonym = ?"), (user,))
            n = int(cur.rowcount)
            cur.execute(self._sql("DELETE FROM users WHERE pseudonym = ?"), (user,))
            cur.execute(
                self._sql(
                    "INSERT INTO forgotten_users (pseudonym, forgotten_at) VALUES (?, ?) "
                    "ON CONFLICT (pseudonym) DO NOTHING"
                ),
                (user, time.time()),
            )
        return n

    def forgotten_users(self) -> set[str]:
        with self._reading() as cur:
            cur.execute("SELECT pseudonym FROM forgotten_users")
            return {r[0] for r in cur.fetchall()}

    def sync_items(self, items: Sequence[tuple[str, str]]) -> None:
        with self._lock, self._transaction() as cur:
            cur.executemany(
                self._sql(
                    "INSERT INTO items (item_id, title) VALUES (?, ?) "
                    "ON CONFLICT (item_id) DO NOTHING"
                ),
                list(items),
            )

    def register_model(self, path: str, sha256: str, model: str, n_events: int) -> int:
        with self._lock, self._transaction() as cur:
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM models")
            version = int(cur.fetchone()[0]) + 1
            cur.execute(
                self._sql(
                    "INSERT INTO models (version, created_at, path, sha256, model, n_events) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (version, time.time(), path, sha256, model, n_events),
            )
        return version

    def models(self) -> list[ModelVersion]:
        with self._reading() as cur:
            cur.execute(
                "SELECT version, created_at, path, sha256, model, n_events FROM models "
                "ORDER BY version"
            )
            rows = cur.fetchall()
        return [ModelVersion(int(r[0]), float(r[1]), r[2], r[3], r[4], int(r[5])) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
