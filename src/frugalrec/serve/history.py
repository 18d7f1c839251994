"""Users' serving histories and the writes that change them (events, forget).

A user's serving history is their row in the served model (unless they were forgotten)
plus their stored positive events minus their disliked items. The stored part is read from
the store once and cached per user; every write to a user bumps that user's generation in
both caches (history and results), so no reader puts a stale answer back.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from frugalrec.data.dataset import Dataset
from frugalrec.privacy import Pseudonymiser
from frugalrec.serve.cache import UserCache
from frugalrec.serve.errors import ApiError
from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.schemas import EventIn
from frugalrec.serve.store import EventConflict, Store, StoredEvent
from frugalrec.serve.training import is_positive
from frugalrec.serve.writer import GroupCommit


class UserHistory:
    """Pseudonyms, stored-event overlays, the per-user result cache, events and forgets."""

    def __init__(
        self,
        store: Store,
        dataset: Dataset,
        pseudonymiser: Pseudonymiser,
        metrics: ServiceMetrics,
        result_cache_size: int,
    ) -> None:
        self.store, self.dataset, self.metrics = store, dataset, metrics
        self.pseudonymiser = pseudonymiser
        self.forgotten: set[str] = store.forgotten_users()
        # Bumped by every forget: a retrain that saw it move refits (the user must not live
        # on in a version fitted while they were being forgotten).
        self.forget_count = 0
        self.overlays = UserCache(max(1024, result_cache_size))
        self.results = UserCache(result_cache_size)
        self.writer = GroupCommit(store, self._committed)

    def pseudonym(self, user_id: str) -> str:
        return self.pseudonymiser.pseudonym(user_id)

    def event_key(self, event_id: str) -> str:
        """What the store keeps of a client's ``event_id``: a keyed hash (the id is the
        client's string and may carry anything, so it is treated like a user id)."""
        return "e_" + self.pseudonymiser.pseudonym("\x00event_id\x00" + event_id)[2:]

    def invalidate(self, p: str) -> None:
        self.overlays.invalidate(p)
        self.results.invalidate(p)

    # ---- reads ---------------------------------------------------------------------------
    def overlay(self, p: str) -> tuple[np.ndarray, np.ndarray]:
        """(positive item indices, disliked item indices) from the user's stored events;
        the latest event per item wins; positives in the order of their latest event."""
        key = (p,)
        cached = self.overlays.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        gen = self.overlays.generation(p)
        events = self.store.user_events(p)
        latest: dict[int, bool] = {}
        if events:
            idx = self.dataset.items_vocab.index([e.item for e in events])
            for i, e in zip(idx.tolist(), events, strict=True):
                if i >= 0:
                    latest.pop(i, None)  # dict order = order of each item's latest event
                    latest[i] = is_positive(e.type, e.value)
        pos = np.array([i for i, ok in latest.items() if ok], dtype=np.int64)
        neg = np.array(sorted(i for i, ok in latest.items() if not ok), dtype=np.int64)
        self.overlays.put(key, (pos, neg), gen)
        return pos, neg

    def of(self, p: str, serving: Any) -> tuple[np.ndarray, np.ndarray]:
        """(serving history item indices, disliked item indices) of pseudonym ``p`` under
        the model version ``serving`` (a ``ServingModel``)."""
        pos, neg = self.overlay(p)
        row = serving.trained.user_rows.get(p)
        base = (
            serving.model.history_[row].indices.astype(np.int64)
            if row is not None and p not in self.forgotten
            else np.zeros(0, np.int64)
        )
        return np.setdiff1d(np.union1d(base, pos), neg), neg

    def order(self, p: str, hist: np.ndarray) -> np.ndarray:
        """``hist`` with the user's liked-by-event items last, most recent last (the base
        history in item order before them): what the LLM prompt shows."""
        pos, _ = self.overlay(p)
        return np.r_[np.setdiff1d(hist, pos), pos].astype(np.int64)

    # ---- writes --------------------------------------------------------------------------
    async def add_events(self, events: list[EventIn], batch: bool) -> int:
        """Validate against the catalogue, store durably (committed together with the
        events of concurrent requests, each request all or nothing), invalidate caches.
        Returns how many of ``events`` are now durably stored: an event whose ``event_id``
        the user already sent was stored by that first request and counts the same, so a
        retry is acknowledged exactly like the original.

        Nothing is written when any event is invalid or reuses an ``event_id`` of the same
        user for a different event (409).
        """
        idx = self.dataset.items_vocab.index([e.item_id for e in events])
        bad = np.flatnonzero(idx < 0)
        if len(bad):
            i = int(bad[0])
            name = f"events[{i}].item_id" if batch else "item_id"
            raise ApiError(
                422,
                "invalid_request",
                f"{name}: unknown item {events[i].item_id!r} ({len(bad)} unknown in total); "
                "nothing was stored",
                field=name,
            )
        now = time.time()
        rows = [
            StoredEvent(
                self.pseudonym(e.user_id),
                e.item_id,
                e.type,
                e.value,
                float(e.ts) if e.ts is not None else now,
                None if e.event_id is None else self.event_key(e.event_id),
            )
            for e in events
        ]
        try:
            await self.writer.add(rows)
        except EventConflict as exc:
            name = f"events[{exc.index}].event_id" if batch else "event_id"
            raise ApiError(
                409,
                "conflict",
                f"{name}: this user already sent a different event with this event_id; "
                "nothing was stored",
                field=name,
            ) from exc
        for p in {r.user for r in rows}:
            self.invalidate(p)
        return len(rows)

    def _committed(self, new: int, rows: int) -> None:
        """Counters after a durable commit (the writer thread; the counters are atomic)."""
        self.metrics.events.inc(new)
        self.metrics.events_in_store.inc(new)
        if new < rows:
            self.metrics.events_repeated.inc(rows - new)

    def close(self) -> None:
        """Commit what is queued and stop the writer (before the store closes)."""
        self.writer.close()

    def forget(self, user_id: str) -> int:
        """Delete the user's events and cached results; their dataset history stops being
        served now and leaves the model at the next version."""
        p = self.pseudonym(user_id)
        n = self.store.forget_user(p)
        self.forgotten.add(p)
        self.forget_count += 1
        self.invalidate(p)
        self.metrics.events_in_store.set(self.store.count_events())
        return n
