"""Load shedding and rate limits: past the in-flight limit a request is refused at once
(503 + Retry-After, JSON, counted), before any work; 429s are answered before any work and
always carry Retry-After; keys get at least the anonymous limits by default."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from serve_helpers import AUTH, ServerThread

# The shared service fixtures (make_client, the pseudonym key).
pytest_plugins = ("serve_fixtures",)


def _metric(c: Any, name: str, label: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name) and label in line:
            return float(line.split()[-1])
    return 0.0


def test_a_full_write_lane_refuses_at_once_and_reads_go_on(make_client):
    """Writers block inside the handler (the store is slow): the third writer is refused
    with 503 + Retry-After while the first two are still in flight, reads are unaffected."""
    c = make_client(max_in_flight_writes=2)
    writer = c.app.state.service.history.writer
    release, entered = threading.Event(), threading.Semaphore(0)
    real = writer.add

    async def slow_add(rows):
        # The commit waits for the test (off the event loop, which must stay free).
        entered.release()
        assert await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
        await real(rows)

    writer.add = slow_add
    ev = {"user_id": "u1", "item_id": "i1", "type": "like"}
    answers: list[Any] = []
    writers = [
        threading.Thread(target=lambda i=i: answers.append(
            c.post("/v1/events", json={**ev, "event_id": f"w{i}"}, headers=AUTH)))
        for i in range(2)
    ]  # fmt: skip
    for t in writers:
        t.start()
    assert entered.acquire(timeout=30) and entered.acquire(timeout=30)
    shed = c.post("/v1/events", json={**ev, "event_id": "w2"}, headers=AUTH)
    # Answered while both writers are still blocked: nothing waited behind them.
    assert not release.is_set() and len(answers) == 0
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert shed.headers["content-type"] == "application/json"
    assert shed.json()["error"] == "overloaded"
    # The other lane, health and metrics are not blocked by a full write lane.
    assert c.get("/v1/users/u1/recommendations").status_code == 200
    assert c.get("/healthz").status_code == 200
    assert _metric(c, "frugalrec_shed_total", 'lane="write"') == 1
    release.set()
    for t in writers:
        t.join(30)
    assert sorted(r.status_code for r in answers) == [201, 201]
    # The refused event was not stored; its retry (same event_id) is, once the lane is free.
    assert c.app.state.service.store.count_events() == 2
    assert c.post("/v1/events", json={**ev, "event_id": "w2"}, headers=AUTH).status_code == 201
    assert c.app.state.service.store.count_events() == 3


async def _burst(port: int, paths: list[str]) -> list[tuple[int, dict[str, str], float]]:
    """One request per connection, all connections open first, then every request written
    at once; (status, headers, arrival order index) per request."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in paths]
    order = iter(range(len(paths)))

    async def one(conn: Any, path: str) -> tuple[int, dict[str, str], float]:
        reader, writer = conn
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        arrived = next(order)
        headers = dict(h.lower().split(": ", 1) for h in head[1:] if ": " in h)
        await reader.readexactly(int(headers["content-length"]))
        writer.close()
        return int(head[0].split()[1]), headers, arrived

    return await asyncio.gather(*(one(c, p) for c, p in zip(conns, paths, strict=True)))


def test_the_read_queue_is_bounded_on_the_event_loop(make_client, monkeypatch):
    """Recommendations run on the event loop without awaiting, so without admission every
    request that arrives while the loop is busy would wait its turn. Here each one holds
    the loop for 30 ms; of 24 requests that arrive meanwhile at most the limit are served
    per turn and the rest are refused in that turn, before any queued one has run."""
    # The in-flight bound alone (the loop-lag signal has its own test below).
    c = make_client(max_in_flight=3, max_loop_lag_ms=0)
    responder = c.app.state.service.responder
    real = responder.recommend
    ran: list[str] = []

    def slow(user_id, k, explain_, budget_ms):
        time.sleep(0.03)  # model time on the loop
        ran.append(user_id)
        return real(user_id, k, explain_, budget_ms)

    monkeypatch.setattr(responder, "recommend", slow)
    with ServerThread(c.app) as srv:
        got = asyncio.run(_burst(srv.port, [f"/v1/users/u{i}/recommendations" for i in range(24)]))
    codes = [g[0] for g in got]
    assert set(codes) <= {200, 503} and codes.count(503) >= 1, codes
    assert len(ran) == codes.count(200)  # a refused request never reached the handler
    shed = [g for g in got if g[0] == 503]
    assert all(h["retry-after"] == "1" for _, h, _ in shed)
    # Refusals came back before the served requests queued in the same turn finished: the
    # first answer to arrive is a 503 unless the very first turn held a single request.
    served_last = max(a for code, _, a in got if code == 200)
    assert min(a for _, _, a in shed) < served_last


def test_429_is_answered_before_any_work_with_retry_after(make_client, monkeypatch):
    c = make_client(
        anonymous_rate_limit_per_s=0.001,
        anonymous_rate_limit_burst=1,
        rate_limit_per_s=0.001,
        rate_limit_burst=1,
        max_body_bytes=1024,
    )
    calls: list[str] = []
    responder = c.app.state.service.responder
    real = responder.recommend
    monkeypatch.setattr(responder, "recommend", lambda *a: (calls.append(a[0]), real(*a))[1])
    assert c.get("/v1/users/u1/recommendations").status_code == 200
    r = c.get("/v1/users/u2/recommendations")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "rate_limited"
    assert calls == ["u1"]  # the refused request never reached the handler
    # A key has its own bucket; once spent, even an oversized body is refused by the rate
    # limit before it is read (429, not 413).
    assert c.post("/v1/events", json={"user_id": "u1", "item_id": "i1", "type": "view"},
                  headers=AUTH).status_code == 201  # fmt: skip
    big = {**AUTH, "content-type": "application/json"}
    r = c.post("/v1/events", content=b"x" * 4096, headers=big)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert _metric(c, "frugalrec_rate_limited_total", 'who="client"') == 1
    assert _metric(c, "frugalrec_rate_limited_total", 'who="key"') == 1
    # Health and metrics are never rate-limited.
    assert c.get("/healthz").status_code == 200


def test_a_bad_key_is_refused_before_any_work(make_client):
    c = make_client()
    r = c.get("/v1/users/u1/recommendations", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403 and r.json()["field"] == "authorization"
    r = c.post("/v1/events", json={"user_id": "u1", "item_id": "i1", "type": "view"})
    assert r.status_code == 401
    assert c.get("/v1/users/u1/recommendations", headers=AUTH).status_code == 200


def test_keys_get_at_least_the_anonymous_limits_by_default():
    from frugalrec.cli import build_parser
    from frugalrec.serve.settings import ServeSettings

    s = ServeSettings()
    assert s.rate_limit_per_s >= s.anonymous_rate_limit_per_s
    assert s.rate_limit_burst >= s.anonymous_rate_limit_burst
    args = build_parser().parse_args(["serve"])
    assert args.rate_limit >= args.anonymous_rate_limit
    assert args.rate_burst >= 2 * args.anonymous_rate_limit  # the CLI's anonymous burst
    assert args.max_in_flight == s.max_in_flight
    assert args.max_in_flight_writes == s.max_in_flight_writes
    assert args.max_loop_lag_ms == s.max_loop_lag_ms


def test_serve_help_says_what_each_limit_protects(capsys):
    from frugalrec.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "runaway or leaked key" in text
    assert "open reads from one scraper" in text
    assert "503 + Retry-After" in text


def test_openapi_lists_refusals_and_strict_bools(make_client):
    c = make_client()
    spec = c.get("/openapi.json").json()
    post = spec["paths"]["/v1/events"]["post"]["responses"]
    assert {"409", "422", "429", "503"} <= set(post)
    assert "Retry-After" in post["503"]["headers"] and "Retry-After" in post["429"]["headers"]
    assert "event_id" in spec["components"]["schemas"]["EventIn"]["properties"]
    r = c.post("/v1/query", json={"text": "comedy", "explain": 0})
    assert r.status_code == 422 and r.json()["field"] == "explain"
    assert c.post("/v1/query", json={"text": "comedy", "explain": True}).status_code == 200


def _read_answer(s: Any) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _raw_get(port: int, path: str) -> bytes:
    """One GET on a fresh connection; the whole raw answer (status line, headers, body)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return _read_answer(s)


def _parts(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (h.partition(": ") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_the_protocol_refuses_with_the_middlewares_answer_before_any_task(make_client):
    """`frugalrec serve` refuses in the HTTP protocol, when the headers are parsed: the same
    status, headers and body as the middleware's refusal, counted the same, and no ASGI task
    (so no middleware, no handler) ever exists for it."""
    c = make_client(max_in_flight=2)
    admission = c.app.state.admission
    with ServerThread(c.app) as srv:
        assert _parts(_raw_get(srv.port, "/v1/users/u1/recommendations"))[0] == 200
        # The lane is released when the task ends, which may be just after the client has
        # read its answer: wait for it, or the line below races that release.
        deadline = time.monotonic() + 10
        while admission.in_flight["read"] or srv.server.server_state.tasks:
            assert time.monotonic() < deadline, "the first request never finished"
            time.sleep(0.005)
        admission.in_flight["read"] = 2  # the read lane is full
        tasks_before = len(srv.server.server_state.tasks)
        code, headers, body = _parts(_raw_get(srv.port, "/v1/users/u1/recommendations"))
        assert len(srv.server.server_state.tasks) == tasks_before
        # Health is never shed, even with the lane full.
        assert _parts(_raw_get(srv.port, "/healthz"))[0] == 200
        metrics = _parts(_raw_get(srv.port, "/metrics"))[2].decode()
        admission.in_flight["read"] = 0
    # The middleware's refusal of the same request (TestClient has no protocol).
    admission.in_flight["read"] = 2
    via_middleware = c.get("/v1/users/u1/recommendations")
    admission.in_flight["read"] = 0
    assert code == via_middleware.status_code == 503
    assert body == via_middleware.content
    for h in ("content-type", "content-length", "retry-after"):
        assert headers[h] == via_middleware.headers[h], h
    assert json.loads(body)["error"] == "overloaded"
    assert 'frugalrec_shed_total{lane="read"} 1.0' in metrics


def test_a_late_event_loop_refuses_what_queued_behind_it(make_client, monkeypatch):
    """The in-flight count cannot see requests waiting in the socket queue while the loop
    is busy; the loop-lag signal does: one request holds the loop for 80 ms, the requests
    that arrive meanwhile are refused (the in-flight limit is far away), and once the loop
    has caught up requests are served again. The slow request has left by the time the
    eight are parsed, so the first of them finds nothing in flight and is admitted (lag
    alone never refuses on an idle server); every later one is refused."""
    c = make_client(max_in_flight=1000, max_loop_lag_ms=5)
    responder = c.app.state.service.responder
    real = responder.recommend
    started = threading.Event()

    def slow(user_id, k, explain_, budget_ms):
        if user_id == "slow":
            started.set()
            time.sleep(0.08)  # model time on the loop
        return real(user_id, k, explain_, budget_ms)

    monkeypatch.setattr(responder, "recommend", slow)
    import socket

    with ServerThread(c.app) as srv:
        # Keep-alive connections, opened and used once before (as a client pool is).
        pool = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(8)]
        for s in pool:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            _read_answer(s)
        first = threading.Thread(target=_raw_get, args=(srv.port, "/v1/users/slow/recommendations"))
        first.start()
        assert started.wait(10)
        for i, s in enumerate(pool):  # sent while the loop is held
            s.sendall(f"GET /v1/users/u{i}/recommendations HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = [_parts(_read_answer(s))[0] for s in pool]
        first.join(30)
        for s in pool:
            s.close()
        time.sleep(0.05)
        after = _parts(_raw_get(srv.port, "/v1/users/u1/recommendations"))[0]
    assert sorted(got) in ([503] * 8, [200] + [503] * 7), got
    assert after == 200


def test_lag_alone_never_refuses_a_request_when_nothing_is_in_flight():
    """Known answer on the decision itself: the loop is 1 s late; with nothing in flight
    the request is admitted (nothing of ours queued behind the delay), the next one, with
    the first still in flight, is refused for the lag."""
    from frugalrec.serve.admission import READ, Admission
    from frugalrec.serve.metrics import ServiceMetrics

    async def decide() -> list[bool]:
        adm = Admission(ServiceMetrics(), read_limit=100, write_limit=100, max_lag_ms=3.0)
        loop = asyncio.get_running_loop()
        assert adm.enter(READ)  # starts the heartbeat
        adm.leave(READ)
        adm._due = loop.time() - 1.0  # the heartbeat is a second overdue
        return [adm.enter(READ), adm.enter(READ)]

    assert asyncio.run(decide()) == [True, False]


def test_a_sequential_client_is_never_refused_while_a_thread_holds_the_gil(make_client):
    """A background Python thread (a retrain, a fold-in) holds the GIL for up to the switch
    interval (5 ms) at a time, so the event loop runs late by more than the 3 ms default
    though no request waits behind it. A client sending one request at a time must be
    served every time (CI once saw a 503 here)."""
    import socket

    c = make_client(max_in_flight=6, max_loop_lag_ms=3)
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    hog = threading.Thread(target=spin, daemon=True)
    with ServerThread(c.app) as srv:
        hog.start()
        try:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                codes = []
                for i in range(60):
                    path = f"/v1/users/u{i % 5}/recommendations"
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    codes.append(_parts(_read_answer(s))[0])
        finally:
            stop.set()
            hog.join(10)
    assert codes == [200] * 60, codes
