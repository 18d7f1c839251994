"""Faults: SIGKILL the server mid-stream of events; every acknowledged event survives."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from robustness_helpers import API_KEY, PSEUDONYM_KEY, start_server

REPETITIONS = 5
WRITERS = 4


def _writer(
    base: str, wid: int, stop: threading.Event, acked: list[tuple[str, str, float]]
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    n = 0
    with httpx.Client(base_url=base, headers=headers, timeout=5.0) as client:
        while not stop.is_set():
            user = f"user-raw-{wid}-{n % 7}"
            item = f"i{(wid * 13 + n) % 80}"
            ts = 1_700_000_000.0 + wid * 1_000_000 + n
            body = (
                {"user_id": user, "item_id": item, "type": "click", "ts": ts}
                if n % 3
                else {"events": [{"user_id": user, "item_id": item, "type": "like", "ts": ts}]}
            )
            n += 1
            try:
                r = client.post("/v1/events", json=body)
            except httpx.HTTPError:
                return  # the server is gone: an unanswered request was never acknowledged
            if r.status_code == 201:
                acked.append((user, item, ts))


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    from frugalrec.privacy.pseudonyms import Pseudonymiser
    from frugalrec.serve.store import open_store

    pseudonymiser = Pseudonymiser(base64.urlsafe_b64decode(PSEUDONYM_KEY))
    store_url = f"sqlite:///{tmp_path / 'events.db'}"
    total_acked = total_lost = 0
    for rep in range(REPETITIONS):
        proc, base = start_server(tmp_path, store_url, f"serve-{rep}.log")
        acked: list[tuple[str, str, float]] = []
        stop = threading.Event()
        writers = [
            threading.Thread(target=_writer, args=(base, w + 10 * rep, stop, acked))
            for w in range(WRITERS)
        ]
        for t in writers:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: writers are still posting
        proc.wait(timeout=30)
        stop.set()
        for t in writers:
            t.join(timeout=30)
        assert len(acked) >= 40, "the writers got too few acknowledgements to test anything"
        # Restart on the same store: it must come up, and every acknowledged event be there.
        proc2, base2 = start_server(tmp_path, store_url, f"serve-{rep}-restart.log")
        try:
            assert httpx.get(f"{base2}/readyz", timeout=5.0).status_code == 200
            store = open_store(store_url)
            stored = {(e.user, e.item, e.ts) for e in store.all_events()}
            store.close()
        finally:
            proc2.terminate()
            proc2.wait(timeout=30)
        lost = [a for a in acked if (pseudonymiser.pseudonym(a[0]), a[1], a[2]) not in stored]
        total_acked += len(acked)
        total_lost += len(lost)
        assert lost == [], f"repetition {rep}: {len(lost)} acknowledged events lost"
    print(f"SIGKILL test: {REPETITIONS} repetitions, {total_acked} acknowledged, {total_lost} lost")
