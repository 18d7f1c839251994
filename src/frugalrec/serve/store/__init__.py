"""Persistent storage behind one interface: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from frugalrec.serve.store.base import (
    EVENT_TYPES,
    EventConflict,
    ModelVersion,
    Store,
    StoredEvent,
    StoreError,
)


def open_store(url: str) -> Store:
    """A store for ``sqlite:///path`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        from frugalrec.serve.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from frugalrec.serve.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unknown store URL {url!r}: use sqlite:///path or postgresql://...")


__all__ = [
    "EVENT_TYPES",
    "EventConflict",
    "ModelVersion",
    "Store",
    "StoreError",
    "StoredEvent",
    "open_store",
]
