"""Group commit: the events of concurrent requests written by one thread in one transaction.

Why: each event request used to take its own transaction on a worker thread, serialised by
the store's write lock. Under load the serving loop holds the interpreter lock almost all
the time, and every store call of a worker thread waits for it again, so eight concurrent
events queued behind one another at tens of milliseconds each. One writer thread that takes
everything queued since its last commit pays those waits (and the durable commit) once per
batch instead of once per request. A request is still answered only after the commit that
holds its events is durable, and each request stays all or nothing: when a combined batch
hits a conflict (an ``event_id`` reused for a different event), its requests are committed
again one by one, so only the offending request is refused.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from frugalrec.serve.store import EventConflict, Store, StoredEvent

_STOP = object()


class GroupCommit:
    """``await add(rows)`` returns once ``rows`` are durably committed (or raises what the
    store raised for them, e.g. :class:`EventConflict`).

    ``on_commit(new, rows)`` is called from the writer thread after every commit (counters).
    ``max_rows`` bounds one transaction.
    """

    def __init__(
        self,
        store: Store,
        on_commit: Callable[[int, int], None] | None = None,
        max_rows: int = 2048,
    ) -> None:
        self.store, self.on_commit, self.max_rows = store, on_commit, max_rows
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.commits = 0  # transactions committed (tests, metrics)

    async def add(self, rows: Sequence[StoredEvent]) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._ensure_thread()
        self._queue.put((list(rows), fut, loop))
        await fut

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="frugalrec-writer", daemon=True)
                t.start()
                self._thread = t

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                return
            group = [item]
            n = len(item[0])
            while n < self.max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                group.append(nxt)
                n += len(nxt[0])
            self._commit(group)

    def _commit(self, group: list[tuple[list[StoredEvent], Any, Any]]) -> None:
        errors: list[BaseException | None]
        try:
            self._store([r for rows, _, _ in group for r in rows])
            errors = [None] * len(group)
        except EventConflict:
            if len(group) == 1:
                errors = [sys.exc_info()[1]]
            else:
                errors = []
                for rows, _, _ in group:
                    try:
                        self._store(rows)
                        errors.append(None)
                    except BaseException as one:
                        errors.append(one)
        except BaseException as exc:
            errors = [exc] * len(group)
        for (_, fut, loop), err in zip(group, errors, strict=True):
            loop.call_soon_threadsafe(_resolve, fut, err)

    def _store(self, rows: list[StoredEvent]) -> None:
        new = self.store.add_events(rows)
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit(new, len(rows))


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():  # the request was cancelled meanwhile
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(None)
