"""Group commit: events of concurrent requests share one durable transaction, each request
stays all or nothing, and nobody is answered before the commit holding their events."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from frugalrec.serve.store import EventConflict, StoredEvent, open_store
from frugalrec.serve.writer import GroupCommit


def _ev(user: str, item: str, key: str | None = None, ts: float = 1.0) -> StoredEvent:
    return StoredEvent(user, item, "like", None, ts, key)


class _Gated:
    """The store, with its first commit held until the test opens the gate."""

    def __init__(self, store) -> None:
        self.store, self.gate, self.entered = store, threading.Event(), threading.Event()
        self.calls: list[int] = []

    def add_events(self, rows):
        self.calls.append(len(rows))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.gate.wait(30)
        return self.store.add_events(rows)


def test_queued_requests_share_one_commit_and_wait_for_it(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    gated = _Gated(store)
    counted: list[tuple[int, int]] = []
    writer = GroupCommit(gated, lambda new, rows: counted.append((new, rows)))  # type: ignore[arg-type]

    async def main() -> list[bool]:
        first = asyncio.create_task(writer.add([_ev("u1", "i1", "k1")]))
        await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait, 30)
        # Five requests arrive while the first commit is in progress.
        rest = [
            asyncio.create_task(writer.add([_ev(f"u{j}", "i2", f"k{j}"), _ev(f"u{j}", "i3")]))
            for j in range(2, 7)
        ]
        await asyncio.sleep(0.05)
        # Nobody is answered before their commit.
        done_early = [t.done() for t in [first, *rest]]
        gated.gate.set()
        await asyncio.gather(first, *rest)
        return done_early

    try:
        assert asyncio.run(main()) == [False] * 6
        # One commit for the first request, one for the five that queued behind it.
        assert gated.calls == [1, 10]
        assert counted == [(1, 1), (10, 10)]
        assert store.count_events() == 11
    finally:
        writer.close()
        store.close()


def test_a_conflict_refuses_only_its_own_request(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    store.add_events([_ev("u1", "i1", "dup")])
    gated = _Gated(store)
    writer = GroupCommit(gated)  # type: ignore[arg-type]

    async def main() -> list[BaseException | None]:
        hold = asyncio.create_task(writer.add([_ev("u9", "i9")]))
        await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait, 30)
        reqs = [
            [_ev("u2", "i1", "a"), _ev("u2", "i2", "b")],
            # Same user and event key as stored, a different item: a conflict.
            [_ev("u3", "i4", "ok"), _ev("u1", "i2", "dup")],
            [_ev("u4", "i3", "c")],
        ]
        tasks = [asyncio.create_task(writer.add(r)) for r in reqs]
        await asyncio.sleep(0.05)
        gated.gate.set()
        await hold
        out: list[BaseException | None] = []
        for t in tasks:
            try:
                await t
                out.append(None)
            except EventConflict as exc:
                out.append(exc)
        return out

    try:
        errs = asyncio.run(main())
        assert errs[0] is None and errs[2] is None
        assert isinstance(errs[1], EventConflict) and errs[1].index == 1
        # The conflicting request stored nothing (not even its valid first event).
        users = sorted(e.user for e in store.all_events())
        assert users == ["u1", "u2", "u2", "u4", "u9"]
    finally:
        writer.close()
        store.close()


def test_a_store_failure_reaches_every_waiting_request(tmp_path: Path):
    class Broken:
        def add_events(self, rows):
            raise RuntimeError("disk full")

    writer = GroupCommit(Broken())  # type: ignore[arg-type]

    async def main() -> None:
        with pytest.raises(RuntimeError, match="disk full"):
            await writer.add([_ev("u1", "i1")])

    try:
        asyncio.run(main())
    finally:
        writer.close()
