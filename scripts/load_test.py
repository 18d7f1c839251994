"""Load test of ``frugalrec serve``: open-loop mixed traffic at a fixed rate on loopback.

80% recommendations, 15% events, 5% natural-language queries (by default). Requests are
scheduled on a fixed clock (open loop), so a slow server cannot slow the offered load down
and hide its own latency. Afterwards every acknowledged event is looked up in the store.

    python scripts/load_test.py --duration 60 --rate 200 --out docs/bench/load_test.json

Starts its own server (fresh SQLite store in a temp dir, or a throw-away PostgreSQL with
``--postgres``; ml-100k; default EASE pipeline or ``--config``) unless ``--url`` points at a
running one (then the store check needs ``--store``).
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
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
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


def start_server(
    args: argparse.Namespace, workdir: Path, key: str
) -> tuple[subprocess.Popen, str, str]:
    port = _free_port()
    store = args.server_store or f"sqlite:///{workdir / 'load.db'}"
    env = {
        **os.environ,
        "FRUGALREC_API_KEYS": key,
        "FRUGALREC_PSEUDONYM_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "OPENBLAS_NUM_THREADS": "1",
        "FRUGALREC_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-c",
        "import sys; from frugalrec.cli import main; sys.exit(main())",
        "serve",
        "--dataset",
        args.dataset,
        "--port",
        str(port),
        "--store",
        store,
        "--model-dir",
        str(workdir / "models"),
        "--rate-limit",
        str(max(100.0, args.rate)),
        "--rate-burst",
        str(int(max(200, args.rate * 2))),
        # Reads are anonymous and all come from this one address.
        "--anonymous-rate-limit",
        str(max(1000.0, args.rate * 2)),
    ]
    if args.config:
        cmd += ["--config", args.config]
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url, store
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready in 180 s")


async def run_load(
    url: str,
    key: str,
    rate: float,
    duration: float,
    users: list[str],
    items: list[str],
    mix: tuple[float, float, float],
    seed: int,
    ts_base: float = 1.7e9,
) -> dict[str, Any]:
    rng = random.Random(seed)
    n = int(rate * duration)
    kinds = rng.choices(["rec", "event", "query"], weights=mix, k=n)
    lat: dict[str, list[float]] = {"rec": [], "event": [], "query": []}
    server_ms: list[float] = []
    statuses: dict[str, dict[int, int]] = {"rec": {}, "event": {}, "query": {}}
    errors: list[str] = []
    acked: list[tuple[str, float]] = []
    late: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    client = RawHTTP(url)

    async def one(i: int, kind: str) -> None:
        t = time.perf_counter()
        try:
            if kind == "rec":
                user = rng.choice(users)
                code, payload = await client.request(
                    "GET", f"/v1/users/{quote(user, safe='')}/recommendations?k=10"
                )
                if code == 200:
                    server_ms.append(json.loads(payload)["cost"]["total_ms"])
            elif kind == "event":
                item = rng.choice(items)
                ev: dict[str, Any] = {
                    "user_id": rng.choice(users),
                    "item_id": item,
                    "type": rng.choice(EVENT_TYPES),
                    "ts": ts_base + i * 1e-3,
                }
                if ev["type"] == "rate":
                    ev["value"] = float(rng.randint(1, 5))
                code, payload = await client.request(
                    "POST", "/v1/events", json.dumps(ev).encode(), headers
                )
                if code == 201:
                    acked.append((item, ev["ts"]))
            else:
                body: dict[str, Any] = {"text": rng.choice(QUERIES), "k": 10}
                if rng.random() < 0.5:
                    body["user_id"] = rng.choice(users)
                code, payload = await client.request("POST", "/v1/query", json.dumps(body).encode())
            if code >= 400:
                errors.append(f"{kind} {code} {payload[:200]!r}")
        except (TimeoutError, OSError, ValueError, IndexError) as exc:
            code = 0
            errors.append(f"{kind} {type(exc).__name__}: {exc}")
        lat[kind].append((time.perf_counter() - t) * 1e3)
        statuses[kind][code] = statuses[kind].get(code, 0) + 1

    tasks = []
    t0 = time.perf_counter()
    for i, kind in enumerate(kinds):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late.append(-delay * 1e3)
        tasks.append(asyncio.create_task(one(i, kind)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    await client.close()
    reconnects = client.reconnects

    def pct(xs: list[float]) -> dict[str, float]:
        if not xs:
            return {}
        a = np.array(xs)
        return {
            "n": len(xs),
            "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2),
        }

    return {
        "requests": n,
        "wall_s": round(wall, 2),
        "achieved_rps": round(n / wall, 1),
        "errors": len(errors),
        "error_samples": errors[:10],
        "latency_client": {k: pct(v) for k, v in lat.items()},
        "rec_server_total_ms": pct(server_ms),
        "statuses": {k: {str(c): m for c, m in v.items()} for k, v in statuses.items()},
        "stale_keepalive_retries": reconnects,
        "scheduler_late_p99_ms": round(float(np.percentile(late, 99)), 2) if late else 0.0,
        "acked": acked,
    }


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def rec_buckets(metrics_text: str) -> dict[float, float]:
    """Cumulative counts per histogram bound of the server-side recommendation latency
    (all tiers, status 200)."""
    out: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("frugalrec_request_seconds_bucket{"):
            continue
        if (
            'endpoint="/v1/users/{user_id}/recommendations"' not in line
            or 'status="200"' not in line
        ):
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


def check_store(store_url: str, acked: list[tuple[str, float]]) -> dict[str, int]:
    from frugalrec.serve.store import open_store

    store = open_store(store_url)
    try:
        present = {(e.item, round(e.ts, 6)) for e in store.all_events()}
        total = store.count_events()
    finally:
        store.close()
    missing = sum((item, round(ts, 6)) not in present for item, ts in acked)
    return {"events_acked": len(acked), "events_in_store": total, "acked_missing": missing}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    p.add_argument("--out", type=Path, help="write the summary JSON here")
    args = p.parse_args()
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
    load_before = _loadavg()
    with contextlib.ExitStack() as stack:
        args.server_store = None
        if args.postgres and not args.url:
            # The tests' throw-away server: initdb + pg_ctl in a temp dir, stopped at the end.
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from pg_server import postgres_server

            pg_url, reason = stack.enter_context(postgres_server())
            if pg_url is None:
                raise SystemExit(f"--postgres: no server could start ({reason})")
            args.server_store = pg_url
        return _measure(args, key=key, users=users, items=items, mix=mix,
                        workdir=workdir, load_before=load_before)  # fmt: skip


def _measure(
    args: argparse.Namespace, key: str, users: list[str], items: list[str],
    mix: tuple[float, ...], workdir: Path, load_before: list[float],
) -> int:  # fmt: skip
    proc = None
    if args.url:
        url, store_url = args.url.rstrip("/"), args.store
    else:
        proc, url, store_url = start_server(args, workdir, key)
    try:
        warm_acked: list[tuple[str, float]] = []
        if args.warmup > 0:
            warm = _run(
                run_load(url, key, args.rate, args.warmup, users, items, mix, args.seed + 1, 1.6e9)
            )
            warm_acked = warm["acked"]
        load_start = _loadavg()
        buckets_before = rec_buckets(httpx.get(url + "/metrics").text)
        res = _run(run_load(url, key, args.rate, args.duration, users, items, mix, args.seed))
        load_end = _loadavg()
        metrics = httpx.get(url + "/metrics").text
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    acked = res.pop("acked")
    summary: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv),
        "dataset": args.dataset,
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "mix": mix,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        **res,
    }
    if store_url:
        # Every event acknowledged in the warm-up and the measured run, looked up one by one.
        summary["store_check"] = check_store(store_url, warm_acked + acked)
    cache_line = [ln for ln in metrics.splitlines() if ln.startswith("frugalrec_cache_hit_ratio")]
    summary["cache_hit_ratio"] = float(cache_line[0].split()[-1]) if cache_line else None
    # Server-side view (request in to response out, no client queueing), histogram resolution.
    summary["rec_server_p99_bound_ms"] = server_p99_bound_ms(buckets_before, rec_buckets(metrics))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    ok = summary["errors"] == 0 and summary.get("store_check", {}).get("acked_missing", 0) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
