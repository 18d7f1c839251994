"""Open-loop load generator for ``frugalrec serve``: mixed traffic at a fixed offered rate.

80% recommendations, 15% events, 5% natural-language queries (by default). Requests are
scheduled on a fixed clock (open loop) and each is timed from its *scheduled* send time, so
a slow server (or a late client) cannot slow the offered load down and hide its latency.
Every event carries an ``event_id``; a share of them (``retry_share``) is deliberately sent
twice, as a client retrying after a timeout would. Afterwards every acknowledged event is
looked up in the store: lost acknowledged events and duplicates among the retried ones are
counted. Shed requests (503, load shedding) are counted apart from errors, with their own
latency.

    python -m frugalrec.bench.loadtest --duration 60 --rate 200 --out docs/bench/load_test.json
    python -m frugalrec.bench.loadtest --sweep --out docs/bench/capacity.json

``--sweep`` finds the capacity (the highest offered rate at which recommendation p99 stays
within 50 ms with at most 1% of requests shed) and then runs 0.5x, 1x, 2x and 3x of it.

Starts its own server (fresh SQLite store in a temp dir, or a throw-away PostgreSQL with
``--postgres``, from a source checkout; ml-100k; default EASE pipeline or ``--config``)
unless ``--url`` points at a running one (then the store check needs ``--store``).
``run(...)`` is the same measurement as a function returning the summary dict.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

QUERIES = [
    "a funny animated movie for kids, no horror",
    "romantic comedy from the 90s",
    "dark crime thriller",
    "classic western",
    "science fiction adventure, not too scary",
    "a war drama from the 80s",
    "musicals",
    "a mystery without romance",
]
EVENT_TYPES = ["view", "click", "like", "dislike", "rate"]
SHED = 503
P99_TARGET_MS = 50.0
MAX_SHED_AT_CAPACITY = 0.01


class RawHTTP:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    httpx's async pool spends more CPU per request than the server under test when hundreds
    of requests are in flight on two cores; this client costs a few microseconds of Python
    per request, so the numbers measure the server, not the load generator.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        hostport = url.split("://", 1)[1].rstrip("/")
        host, _, port = hostport.partition(":")
        self.host, self.port, self.timeout = host, int(port or 80), timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.reconnects = 0

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        reused = bool(self._idle)
        try:
            return await self._send(method, path, body, headers, reused)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            # The server closed an idle keep-alive connection before reading this request
            # (nothing was processed): retry once on a new connection, as HTTP clients do.
            self.reconnects += 1
            return await self._send(method, path, body, headers, False)

    async def _send(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None, reuse: bool
    ) -> tuple[int, bytes]:
        if reuse and self._idle:
            conn = self._idle.pop()
        else:
            conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        if body:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            status, payload, keep = await asyncio.wait_for(self._read(reader), self.timeout)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append(conn)
        else:
            writer.close()
        return status, payload

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        status = int(line.split()[1])
        length, keep = 0, True
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
        return status, await reader.readexactly(length), keep

    async def close(self) -> None:
        for _, w in self._idle:
            w.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    """``lscpu``'s model name (where the numbers were taken)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def spawn_server(
    workdir: Path,
    serve_args: list[str],
    env: dict[str, str] | None = None,
    ready_s: float = 180.0,
    server_cpus: set[int] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``frugalrec serve SERVE_ARGS`` in a subprocess on a free loopback port with a fresh
    pseudonym key and one thread (``env`` adds or overrides variables), logging to
    ``workdir/server.log``; returns (process, url) once ``/readyz`` answers. The caller stops
    the process. Raises RuntimeError (with the log's tail) if it exits or is not ready."""
    import httpx

    port = _free_port()
    full_env = {
        **os.environ,
        "FRUGALREC_PSEUDONYM_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "OPENBLAS_NUM_THREADS": "1",
        "FRUGALREC_THREADS": "1",
        **(env or {}),
    }
    cmd = [sys.executable, "-c", "import sys; from frugalrec.cli import main; sys.exit(main())",
           "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args]  # fmt: skip
    with open(workdir / "server.log", "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    if server_cpus:
        # Set before the server starts its threads, which inherit it.
        os.sched_setaffinity(proc.pid, server_cpus)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not become ready in {ready_s:g} s")


@contextlib.contextmanager
def started_server(
    workdir: Path,
    key: str,
    dataset: str = "ml-100k",
    store: str | None = None,
    config: str | None = None,
    rate_limit: float = 1e6,
    server_args: list[str] | None = None,
    server_cpus: set[int] | None = None,
) -> Iterator[tuple[str, str]]:
    """``frugalrec serve`` in a subprocess on a free port; yields (url, store url). The rate
    limits are lifted by default: one load generator stands in for many clients, and the
    measurement is of capacity and shedding, not of the per-client limits."""
    store = store or f"sqlite:///{workdir / 'load.db'}"
    args = [
        "--dataset", dataset, "--store", store, "--model-dir", str(workdir / "models"),
        "--rate-limit", str(rate_limit), "--rate-burst", str(int(rate_limit * 2)),
        "--anonymous-rate-limit", str(rate_limit),
    ]  # fmt: skip
    if config:
        args += ["--config", config]
    args += server_args or []
    try:
        proc, url = spawn_server(
            workdir, args, {"FRUGALREC_API_KEYS": key}, server_cpus=server_cpus
        )
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc
    try:
        yield url, store
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def pct(xs: list[float]) -> dict[str, float]:
    """n, p50, p99 and max (ms) of latencies in ms ({} when empty)."""
    if not xs:
        return {}
    a = np.array(xs)
    return {
        "n": len(xs),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


async def run_load(
    url: str,
    key: str,
    rate: float,
    duration: float,
    users: list[str],
    items: list[str],
    mix: tuple[float, ...],
    seed: int,
    ts_base: float = 1.7e9,
    retry_share: float = 0.1,
) -> dict[str, Any]:
    """Offer ``rate`` requests/s for ``duration`` s; latencies from each request's scheduled
    send time. Events carry ``event_id``; ``retry_share`` of them are sent a second time
    right after the first answer (same event_id), whatever that answer was."""
    rng = random.Random(seed)
    n = int(rate * duration)
    kinds = rng.choices(["rec", "event", "query"], weights=mix, k=n)
    lat: dict[str, list[float]] = {"rec": [], "event": [], "query": []}
    served: dict[str, list[float]] = {"rec": [], "event": [], "query": []}
    shed_ms: list[float] = []
    server_ms: list[float] = []
    statuses: dict[str, dict[int, int]] = {"rec": {}, "event": {}, "query": {}}
    errors: list[str] = []
    acked: list[tuple[str, float]] = []
    retried: list[tuple[str, float]] = []
    late: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    client = RawHTTP(url)

    def record(kind: str, code: int, payload: bytes, ms: float) -> None:
        lat[kind].append(ms)
        statuses[kind][code] = statuses[kind].get(code, 0) + 1
        if code == SHED:
            shed_ms.append(ms)
        elif 200 <= code < 300:
            served[kind].append(ms)
        else:
            errors.append(f"{kind} {code} {payload[:200]!r}")

    async def call(kind: str, due: float, *request: Any) -> tuple[int, bytes]:
        try:
            code, payload = await client.request(*request)
        except (TimeoutError, OSError, ValueError, IndexError) as exc:
            code, payload = 0, f"{type(exc).__name__}: {exc}".encode()
        record(kind, code, payload, (time.perf_counter() - due) * 1e3)
        return code, payload

    async def one(i: int, kind: str, due: float) -> None:
        if kind == "rec":
            user = rng.choice(users)
            path = f"/v1/users/{quote(user, safe='')}/recommendations?k=10"
            code, payload = await call(kind, due, "GET", path)
            if code == 200:
                server_ms.append(json.loads(payload)["cost"]["total_ms"])
        elif kind == "event":
            item = rng.choice(items)
            ev: dict[str, Any] = {
                "user_id": rng.choice(users),
                "item_id": item,
                "type": rng.choice(EVENT_TYPES),
                "ts": ts_base + i * 1e-3,
                # Unique per run (its ts_base) and event: a reused id would be a conflict.
                "event_id": f"load-{ts_base:.0f}-{i}",
            }
            if ev["type"] == "rate":
                ev["value"] = float(rng.randint(1, 5))
            body = json.dumps(ev).encode()
            code, _ = await call(kind, due, "POST", "/v1/events", body, headers)
            ok = code == 201
            if rng.random() < retry_share:
                retried.append((item, ev["ts"]))
                again, _ = await call(
                    kind, time.perf_counter(), "POST", "/v1/events", body, headers
                )
                ok = ok or again == 201
            if ok:
                acked.append((item, ev["ts"]))
        else:
            q: dict[str, Any] = {"text": rng.choice(QUERIES), "k": 10}
            if rng.random() < 0.5:
                q["user_id"] = rng.choice(users)
            await call(kind, due, "POST", "/v1/query", json.dumps(q).encode())

    tasks = []
    t0 = time.perf_counter()
    for i, kind in enumerate(kinds):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late.append(-delay * 1e3)
        tasks.append(asyncio.create_task(one(i, kind, due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    await client.close()
    total = sum(len(v) for v in lat.values())
    all_served = [x for v in served.values() for x in v]
    return {
        "requests": n,
        "wall_s": round(wall, 2),
        "achieved_rps": round(n / wall, 1),
        "errors": len(errors),
        "error_samples": errors[:10],
        "latency_client": {k: pct(v) for k, v in lat.items()},
        "rec_server_total_ms": pct(server_ms),
        "statuses": {k: {str(c): m for c, m in v.items()} for k, v in statuses.items()},
        "stale_keepalive_retries": client.reconnects,
        "scheduler_late_p99_ms": round(float(np.percentile(late, 99)), 2) if late else 0.0,
        "answers": total,
        "shed": len(shed_ms),
        "shed_share": round(len(shed_ms) / total, 4) if total else 0.0,
        "served_rps": round(len(all_served) / wall, 1),
        "latency_served": {**{k: pct(v) for k, v in served.items()}, "all": pct(all_served)},
        "latency_shed": pct(shed_ms),
        "events_sent_twice": len(retried),
        "acked": acked,
        "retried": retried,
    }


def run_load_compiled(
    url: str,
    key: str,
    rate: float,
    duration: float,
    users: list[str],
    items: list[str],
    mix: tuple[float, ...],
    seed: int,
    ts_base: float = 1.7e9,
    retry_share: float = 0.1,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    """``run_load``'s measurement with the compiled engine (``loadgen.c``) sending: the same
    mix, event ids and retries, chosen here; the same summary keys."""
    from frugalrec.bench import loadgen

    hostport = url.split("://", 1)[1].rstrip("/")
    host, _, port = hostport.partition(":")
    rng = random.Random(seed)
    n = int(rate * duration)
    kinds = rng.choices(["rec", "event", "query"], weights=mix, k=n)
    headers = {"Authorization": f"Bearer {key}"}
    reqs: list[loadgen.Request] = []
    events: dict[int, tuple[str, float]] = {}
    for i, kind in enumerate(kinds):
        due = i / rate
        if kind == "rec":
            path = f"/v1/users/{quote(rng.choice(users), safe='')}/recommendations?k=10"
            reqs.append(loadgen.Request(due, loadgen.http_request("GET", path, host)))
        elif kind == "event":
            item = rng.choice(items)
            ev: dict[str, Any] = {
                "user_id": rng.choice(users),
                "item_id": item,
                "type": rng.choice(EVENT_TYPES),
                "ts": ts_base + i * 1e-3,
                "event_id": f"load-{ts_base:.0f}-{i}",
            }
            if ev["type"] == "rate":
                ev["value"] = float(rng.randint(1, 5))
            raw = loadgen.http_request("POST", "/v1/events", host, json.dumps(ev).encode(), headers)
            reqs.append(loadgen.Request(due, raw, resend=rng.random() < retry_share))
            events[i] = (item, ev["ts"])
        else:
            q: dict[str, Any] = {"text": rng.choice(QUERIES), "k": 10}
            if rng.random() < 0.5:
                q["user_id"] = rng.choice(users)
            reqs.append(
                loadgen.Request(
                    due, loadgen.http_request("POST", "/v1/query", host, json.dumps(q).encode())
                )
            )
    ans, engine = loadgen.run(host, int(port), reqs, cpus=cpus)
    lat: dict[str, list[float]] = {"rec": [], "event": [], "query": []}
    served: dict[str, list[float]] = {"rec": [], "event": [], "query": []}
    statuses: dict[str, dict[int, int]] = {"rec": {}, "event": {}, "query": {}}
    shed_ms: list[float] = []
    errors: list[str] = []
    ok_events: set[int] = set()
    for row in ans:
        idx, code, ms = int(row["idx"]), int(row["status"]), float(row["latency_ms"])
        kind = kinds[idx]
        lat[kind].append(ms)
        statuses[kind][code] = statuses[kind].get(code, 0) + 1
        if code == SHED:
            shed_ms.append(ms)
        elif 200 <= code < 300:
            served[kind].append(ms)
            if kind == "event":
                ok_events.add(idx)
        else:
            errors.append(f"{kind} {code}")
    rec_ok = (ans["status"] == 200) & np.array([kinds[int(i)] == "rec" for i in ans["idx"]])
    server_ms = [float(x) for x in ans["server_total_ms"][rec_ok] if x >= 0]
    first = ans[ans["attempt"] == 0]
    wall = float(engine["wall_s"])
    total = len(ans)
    all_served = [x for v in served.values() for x in v]
    retried_idx = [i for i, r in enumerate(reqs) if r.resend]
    return {
        "engine": "compiled",
        "requests": n,
        "wall_s": round(wall, 2),
        "achieved_rps": round(n / wall, 1) if wall else 0.0,
        "errors": len(errors),
        "error_samples": errors[:10],
        "latency_client": {k: pct(v) for k, v in lat.items()},
        "rec_server_total_ms": pct(server_ms),
        "statuses": {k: {str(c): m for c, m in v.items()} for k, v in statuses.items()},
        "stale_keepalive_retries": int(engine["reconnects"]),
        # When each request's first byte left, relative to its schedule (waits for a free
        # connection included) and the engine's own timer lateness.
        "scheduler_late_p99_ms": round(float(engine["send_late_p99_ms"]), 3),
        "send_late_p99_ms": round(float(np.percentile(first["send_late_ms"], 99)), 3)
        if len(first)
        else 0.0,
        "answers": total,
        "shed": len(shed_ms),
        "shed_share": round(len(shed_ms) / total, 4) if total else 0.0,
        "served_rps": round(len(all_served) / wall, 1) if wall else 0.0,
        "latency_served": {**{k: pct(v) for k, v in served.items()}, "all": pct(all_served)},
        "latency_shed": pct(shed_ms),
        "events_sent_twice": len(retried_idx),
        "acked": [events[i] for i in sorted(ok_events)],
        "retried": [events[i] for i in retried_idx],
    }


def resolve_engine(engine: str) -> str:
    """ "auto" -> "compiled" when ``loadgen.c`` builds here, else "python"."""
    if engine not in ("auto", "compiled", "python"):
        raise ValueError(f"engine must be auto, compiled or python, not {engine!r}")
    if engine == "python":
        return engine
    from frugalrec.bench import loadgen

    try:
        loadgen.binary()
    except loadgen.LoadgenUnavailable as exc:
        if engine == "compiled":
            raise
        print(f"loadtest: {exc}; using the Python engine", file=sys.stderr)
        return "python"
    return "compiled"


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def rec_buckets(
    metrics_text: str,
    endpoint: str = "/v1/users/{user_id}/recommendations",
    status: str = "200",
) -> dict[float, float]:
    """Cumulative counts per histogram bound of the server-side latency of ``endpoint``
    answered with ``status`` (all tiers; default: recommendations, 200). Shed requests are
    never routed: their endpoint is "unmatched", status 503."""
    out: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("frugalrec_request_seconds_bucket{"):
            continue
        if f'endpoint="{endpoint}"' not in line or f'status="{status}"' not in line:
            continue
        le = line.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def server_p99_bound_ms(before: dict[float, float], after: dict[float, float]) -> float | None:
    """Upper histogram bound (ms) holding 99% of this run's recommendations, server-side."""
    delta = {b: after.get(b, 0.0) - before.get(b, 0.0) for b in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for bound in sorted(delta):
        if delta[bound] >= 0.99 * total:
            return bound * 1e3
    return None


def _counter(metrics_text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def check_store(
    store_url: str,
    acked: list[tuple[str, float]],
    retried: list[tuple[str, float]] | None = None,
    ts_range: tuple[float, float] | None = None,
) -> dict[str, int]:
    """Acknowledged events looked up one by one by (item, ts): how many are missing; how
    many extra copies the retried ones left; stored events in ``ts_range`` never acked."""
    from frugalrec.serve.store import open_store

    store = open_store(store_url)
    try:
        copies: dict[tuple[str, float], int] = {}
        for e in store.all_events():
            k = (e.item, round(e.ts, 6))
            copies[k] = copies.get(k, 0) + 1
        total = store.count_events()
    finally:
        store.close()
    acked_keys = {(item, round(ts, 6)) for item, ts in acked}
    out = {
        "events_acked": len(acked),
        "events_in_store": total,
        "acked_missing": sum(copies.get(k, 0) == 0 for k in acked_keys),
        "events_retried": len(retried or []),
        "duplicates_among_retried": sum(
            max(0, copies.get((item, round(ts, 6)), 0) - 1) for item, ts in retried or []
        ),
        # Every stored copy beyond the first, whatever the event: event_ids make it 0.
        "duplicates_stored": sum(c - 1 for c in copies.values() if c > 1),
    }
    if ts_range is not None:
        lo, hi = ts_range
        run = {k for k in copies if lo <= k[1] < hi}
        out["events_acked_run"] = sum(lo <= k[1] < hi for k in acked_keys)
        out["events_in_store_run"] = len(run)
        # Stored but never acknowledged: the client gave up (timeout) after the commit; with
        # event_id its retry is harmless.
        out["stored_not_acked"] = len(run - acked_keys)
    return out


def run(
    url: str,
    key: str,
    rate: float,
    duration: float,
    users: list[str],
    items: list[str],
    mix: tuple[float, ...] = (80.0, 15.0, 5.0),
    seed: int = 0,
    warmup: float = 5.0,
    store_url: str | None = None,
    retry_share: float = 0.1,
    ts_base: float = 1.7e9,
    engine: str = "auto",
) -> dict[str, Any]:
    """One measurement against the server at ``url``: a warm-up at the same rate (not
    counted), then ``duration`` s at ``rate``; the summary dict (with the store check when
    ``store_url`` is given). ``engine``: "compiled" (``loadgen.c``), "python" (asyncio), or
    "auto" (compiled where a C compiler is at hand)."""
    import httpx

    engine = resolve_engine(engine)

    def load(secs: float, sd: int, base: float) -> dict[str, Any]:
        if engine == "compiled":
            return run_load_compiled(url, key, rate, secs, users, items, mix, sd, base,
                                     retry_share)  # fmt: skip
        out: dict[str, Any] = _run(
            run_load(url, key, rate, secs, users, items, mix, sd, base, retry_share)
        )
        return {"engine": "python", **out}

    warm: dict[str, Any] = {"acked": [], "retried": []}
    if warmup > 0:
        warm = load(warmup, seed + 1, ts_base - 5e5)
    load_start = _loadavg()
    metrics_before = httpx.get(url + "/metrics").text
    res = load(duration, seed, ts_base)
    load_end = _loadavg()
    metrics = httpx.get(url + "/metrics").text
    acked, retried = res.pop("acked"), res.pop("retried")
    summary: dict[str, Any] = {
        "rate": rate,
        "duration_s": duration,
        "warmup_s": warmup,
        "mix": list(mix),
        "retry_share": retry_share,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        **res,
    }
    if store_url:
        # Every event acknowledged in the warm-up and the measured run, looked up one by one.
        summary["store_check"] = check_store(
            store_url,
            warm["acked"] + acked,
            warm["retried"] + retried,
            (ts_base, ts_base + rate * duration * 1e-3 + 1),
        )
    cache_line = [ln for ln in metrics.splitlines() if ln.startswith("frugalrec_cache_hit_ratio")]
    summary["cache_hit_ratio"] = float(cache_line[0].split()[-1]) if cache_line else None
    # Server-side view (request in to response out, no client queueing), histogram resolution.
    summary["rec_server_p99_bound_ms"] = server_p99_bound_ms(
        rec_buckets(metrics_before), rec_buckets(metrics)
    )
    # Server-side time of a refusal (in to out of the app), histogram resolution.
    summary["shed_server_p99_bound_ms"] = server_p99_bound_ms(
        rec_buckets(metrics_before, "unmatched", "503"), rec_buckets(metrics, "unmatched", "503")
    )
    summary["server_shed"] = _counter(metrics, "frugalrec_shed_total") - _counter(
        metrics_before, "frugalrec_shed_total"
    )
    return summary


def within_target(summary: dict[str, Any]) -> bool:
    """Capacity criterion: recommendation p99 (all answers, from the scheduled send) within
    50 ms, at most 1% of requests shed, no errors."""
    rec = summary["latency_client"].get("rec") or {}
    return (
        bool(rec)
        and rec["p99_ms"] <= P99_TARGET_MS
        and summary["shed_share"] <= MAX_SHED_AT_CAPACITY
        and summary["errors"] == 0
    )


def targets_at(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets at 2x capacity, each with its number."""
    served = summary["latency_served"]["all"]
    shed = summary["latency_shed"]
    check = summary.get("store_check", {})
    return {
        "served_p99_ms": served.get("p99_ms"),
        "served_p99_ok": bool(served) and served["p99_ms"] <= P99_TARGET_MS,
        "shed_p99_ms": shed.get("p99_ms"),
        "shed_under_10ms_ok": (not shed) or shed["p99_ms"] < 10.0,
        "acked_missing": check.get("acked_missing"),
        "no_acked_event_lost_ok": check.get("acked_missing") == 0,
        "duplicates_among_retried": check.get("duplicates_among_retried"),
        "no_duplicates_ok": check.get("duplicates_among_retried") == 0,
    }


def sweep(
    url: str,
    key: str,
    users: list[str],
    items: list[str],
    mix: tuple[float, ...],
    store_url: str | None,
    step_s: float = 8.0,
    final_s: float = 20.0,
    start_rate: float = 250.0,
    max_rate: float = 20_000.0,
    retry_share: float = 0.1,
    progress: bool = True,
    engine: str = "auto",
) -> dict[str, Any]:
    """Capacity search (doubling up from ``start_rate``, or halving down to 10/s when it
    already misses; then bisection to 5%), then 0.5x/1x/2x/3x of it."""
    steps: list[dict[str, Any]] = []
    ts_base = [1.7e9]

    def measure(rate: float, duration: float) -> dict[str, Any]:
        ts_base[0] += 1e6  # each run's events have their own ts range
        s = run(url, key, rate, duration, users, items, mix, seed=len(steps),
                warmup=2.0, store_url=store_url, retry_share=retry_share,
                ts_base=ts_base[0], engine=engine)  # fmt: skip
        rec = s["latency_client"].get("rec") or {}
        if progress:
            print(
                f"  {rate:8.0f}/s offered: rec p99 {rec.get('p99_ms')} ms, served p99 "
                f"{s['latency_served']['all'].get('p99_ms')} ms, shed {s['shed_share']:.1%}, "
                f"errors {s['errors']}, load {s['loadavg_end'][0]}",
                file=sys.stderr,
            )
        return s

    good, bad = 0.0, None
    rate = start_rate
    while rate <= max_rate:
        s = measure(rate, step_s)
        steps.append({"rate": rate, "ok": within_target(s), "summary": s})
        if not steps[-1]["ok"]:
            bad = rate
            break
        good = rate
        rate *= 2
    while good == 0 and bad is not None and bad / 2 >= 10:
        rate = bad / 2
        s = measure(rate, step_s)
        steps.append({"rate": rate, "ok": within_target(s), "summary": s})
        if steps[-1]["ok"]:
            good = rate
        else:
            bad = rate
    if bad is not None and good > 0:
        lo, hi = good, bad
        while (hi - lo) / lo > 0.05:
            mid = round((lo + hi) / 2)
            s = measure(mid, step_s)
            steps.append({"rate": mid, "ok": within_target(s), "summary": s})
            lo, hi = (mid, hi) if steps[-1]["ok"] else (lo, mid)
        good = lo
    capacity = good
    runs = {}
    for mult in (0.5, 1.0, 2.0, 3.0):
        if capacity <= 0:
            break
        runs[f"{mult:g}x"] = measure(capacity * mult, final_s)
    out: dict[str, Any] = {
        "capacity_rps": capacity,
        "capacity_rule": (
            f"highest offered open-loop rate with recommendation p99 <= {P99_TARGET_MS:g} ms "
            f"(from the scheduled send), <= {MAX_SHED_AT_CAPACITY:.0%} shed, 0 errors; "
            f"search steps of {step_s:g} s"
        ),
        "search": [
            {
                "rate": st["rate"],
                "ok": st["ok"],
                "rec_p99_ms": (st["summary"]["latency_client"].get("rec") or {}).get("p99_ms"),
                "shed_share": st["summary"]["shed_share"],
            }
            for st in steps
        ],
        "runs": runs,
    }
    if "2x" in runs:
        out["targets_at_2x"] = targets_at(runs["2x"])
    return out


def table(result: dict[str, Any]) -> str:
    """The capacity table as Markdown (BENCHMARKS.md)."""
    rows = [
        "| load | offered/s | achieved/s | served/s | served p50 / p99 ms | rec p99 ms (all) "
        "| shed share | shed p50 / p99 ms | errors | acked / stored (run) | lost | dup. retried "
        "| client late p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result["runs"].items():
        sv, sh = s["latency_served"]["all"], s["latency_shed"]
        rec = s["latency_client"].get("rec") or {}
        chk = s.get("store_check", {})
        rows.append(
            f"| {name} | {s['rate']:.0f} | {s['achieved_rps']:.0f} | {s['served_rps']:.0f} "
            f"| {sv.get('p50_ms', '-')} / {sv.get('p99_ms', '-')} | {rec.get('p99_ms', '-')} "
            f"| {s['shed_share']:.1%} | {sh.get('p50_ms', '-')} / {sh.get('p99_ms', '-')} "
            f"| {s['errors']} | {chk.get('events_acked_run', '-')} / "
            f"{chk.get('events_in_store_run', '-')} | {chk.get('acked_missing', '-')} "
            f"| {chk.get('duplicates_among_retried', '-')} | {s['scheduler_late_p99_ms']} |"
        )
    return "\n".join(rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (offered)")
    p.add_argument(
        "--warmup", type=float, default=5.0, help="seconds at the same rate, not counted"
    )
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--config", help="PipelineConfig JSON for the server")
    p.add_argument("--url", help="use a running server instead of starting one")
    p.add_argument("--key", help="API key of that server (default: $FRUGALREC_API_KEYS' first)")
    p.add_argument("--store", help="store URL of that server, to check acknowledged events")
    p.add_argument(
        "--postgres",
        action="store_true",
        help="the started server stores in a throw-away PostgreSQL (Debian postgresql)",
    )
    p.add_argument("--mix", default="80,15,5", help="rec,event,query percentages")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--retry-share", type=float, default=0.1, help="share of events sent twice (event_id)"
    )
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra option for the started server, e.g. --server-arg=--max-in-flight=64",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="find the capacity, then run 0.5x, 1x, 2x and 3x of it (one JSON)",
    )
    p.add_argument("--step", type=float, default=8.0, help="--sweep: seconds per search step")
    p.add_argument("--start-rate", type=float, default=250.0, help="--sweep: first rate tried")
    p.add_argument(
        "--server-cpus",
        help="pin the server to these CPUs (e.g. 0) and the generator to --client-cpus, so "
        "the generator's own CPU time neither slows the server nor makes its sends late",
    )
    p.add_argument("--client-cpus", help="CPUs of the load generator (with --server-cpus)")
    p.add_argument(
        "--engine",
        choices=["auto", "compiled", "python"],
        default="auto",
        help="who sends: the compiled open-loop engine (loadgen.c, built with cc on first "
        "use; keeps its schedule at thousands of requests/s on one core), the asyncio one, "
        "or auto (compiled where cc exists)",
    )
    p.add_argument("--json", action="store_true", help="print only the JSON")
    p.add_argument("--out", type=Path, help="write the summary JSON here")
    return p


def _cpus(text: str | None) -> set[int] | None:
    """ "0,2-3" -> {0, 2, 3}; None for no pinning."""
    if not text:
        return None
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    server_cpus = _cpus(args.server_cpus)
    client_cpus = _cpus(args.client_cpus)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    # A SIGTERM unwinds like Ctrl-C, so the server started here is stopped with it.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    mix = tuple(float(x) for x in args.mix.split(","))
    if len(mix) != 3:
        raise SystemExit("--mix needs three numbers")
    from frugalrec.serve.catalogue import load_serving_dataset

    ds = load_serving_dataset(args.dataset)
    users = [str(u) for u in ds.users_vocab.ids] + [f"new-user-{i}" for i in range(100)]
    items = [str(i) for i in ds.items_vocab.ids]
    workdir = Path(tempfile.mkdtemp(prefix="frugalrec-load-"))
    key = (
        args.key
        or (os.environ.get("FRUGALREC_API_KEYS", "").split(",")[0])
        or secrets.token_urlsafe(24)
    )
    head: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "dataset": args.dataset,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "loadavg_before": _loadavg(),
        "server_args": args.server_arg,
        "server_cpus": sorted(server_cpus) if server_cpus else None,
        "client_cpus": sorted(client_cpus) if client_cpus else None,
    }
    with contextlib.ExitStack() as stack:
        store_url = args.store
        if args.url:
            url = args.url.rstrip("/")
        else:
            pg_url = None
            if args.postgres:
                # The tests' throw-away server (initdb + pg_ctl in a temp dir), from a checkout.
                tests = Path(__file__).resolve().parents[3] / "tests"
                if not (tests / "pg_server.py").is_file():
                    raise SystemExit("--postgres needs a source checkout (tests/pg_server.py)")
                sys.path.insert(0, str(tests))
                from pg_server import postgres_server

                pg_url, reason = stack.enter_context(postgres_server())
                if pg_url is None:
                    raise SystemExit(f"--postgres: no server could start ({reason})")
            url, store_url = stack.enter_context(
                started_server(workdir, key, args.dataset, pg_url, args.config,
                               server_args=args.server_arg, server_cpus=server_cpus)
            )  # fmt: skip
        if args.sweep:
            result = sweep(url, key, users, items, mix, store_url, args.step, args.duration,
                           args.start_rate, retry_share=args.retry_share,
                           progress=not args.json, engine=args.engine)  # fmt: skip
            summary = {**head, **result, "loadavg_after": _loadavg()}
        else:
            one = run(url, key, args.rate, args.duration, users, items, mix, args.seed,
                      args.warmup, store_url, args.retry_share, engine=args.engine)  # fmt: skip
            summary = {**head, **one}
    text = json.dumps(summary, indent=2)
    if args.sweep and not args.json:
        print(table(summary), file=sys.stderr)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.sweep:
        return 0 if all(summary.get("targets_at_2x", {"x": False}).values()) else 1
    check = summary.get("store_check", {})
    ok = (
        summary["errors"] == 0
        and check.get("acked_missing", 0) == 0
        and check.get("duplicates_among_retried", 0) == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
