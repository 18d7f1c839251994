"""The compiled load generator against a tiny server whose answers are known."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest

from frugalrec.bench import loadgen


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the service speaks
    seen: ClassVar[list[tuple[str, str, bytes]]] = []
    lock = threading.Lock()

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _route(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.seen.append((method, self.path, body))
        if self.path.startswith("/status/"):
            self._answer(int(self.path.rsplit("/", 1)[1]), {"total_ms": 1.5})
        elif self.path == "/slow":
            time.sleep(0.2)
            self._answer(200, {"total_ms": 200.25})
        elif self.path == "/hang":
            time.sleep(2.0)
            self._answer(200, {})
        else:
            self._answer(200, {"echo": body.decode(), "total_ms": 0.5})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server():
    _Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _built() -> None:
    try:
        loadgen.binary()
    except loadgen.LoadgenUnavailable as e:  # the load test falls back to Python then
        pytest.skip(str(e))


def test_every_request_is_answered_once_with_its_own_status_and_retries_twice(server):
    _built()
    host = "127.0.0.1"
    statuses = [200, 201, 404, 429, 503]
    reqs = []
    for i in range(40):
        code = statuses[i % len(statuses)]
        if i % 4 == 0:
            raw = loadgen.http_request("POST", "/events", host, json.dumps({"i": i}).encode())
            reqs.append(loadgen.Request(due_s=i * 0.005, raw=raw, resend=True))
        else:
            raw = loadgen.http_request("GET", f"/status/{code}", host)
            reqs.append(loadgen.Request(due_s=i * 0.005, raw=raw))
    answers, summary = loadgen.run(host, server, reqs, max_conns=16, preopen=4)
    first = answers[answers["attempt"] == 0]
    again = answers[answers["attempt"] == 1]
    assert sorted(first["idx"].tolist()) == list(range(40))
    assert sorted(again["idx"].tolist()) == list(range(0, 40, 4))
    by_idx = {int(a["idx"]): int(a["status"]) for a in first}
    for i in range(40):
        assert by_idx[i] == (200 if i % 4 == 0 else statuses[i % len(statuses)]), i
    assert (again["status"] == 200).all()
    # The server saw each request once and each retried POST twice, bodies intact.
    posts = [b for m, _, b in _Handler.seen if m == "POST"]
    assert len(posts) == 20
    assert sorted(json.loads(b)["i"] for b in posts) == sorted(2 * list(range(0, 40, 4)))
    assert len(_Handler.seen) == 50
    # The body's total_ms is read back.
    gets = first[first["idx"] % 4 != 0]
    assert np.allclose(gets["server_total_ms"], 1.5)
    assert (first["latency_ms"] > 0).all() and (first["send_late_ms"] >= 0).all()
    assert isinstance(summary, dict)


def test_latency_counts_from_the_scheduled_send_and_a_timeout_is_status_zero(server):
    _built()
    host = "127.0.0.1"
    reqs = [
        loadgen.Request(due_s=0.0, raw=loadgen.http_request("GET", "/slow", host)),
        loadgen.Request(due_s=0.01, raw=loadgen.http_request("GET", "/hang", host)),
        loadgen.Request(due_s=0.02, raw=loadgen.http_request("GET", "/fast", host)),
    ]
    answers, _ = loadgen.run(host, server, reqs, max_conns=4, preopen=0, timeout_ms=600)
    rows = {int(a["idx"]): a for a in answers}
    assert rows[0]["status"] == 200 and rows[0]["latency_ms"] >= 200.0
    assert rows[0]["server_total_ms"] == pytest.approx(200.25)
    assert rows[1]["status"] == 0  # hung past the timeout
    assert rows[1]["latency_ms"] >= 600.0
    assert rows[2]["status"] == 200 and rows[2]["server_total_ms"] == pytest.approx(0.5)
    # A body without total_ms reads back as -1.
    hang = [loadgen.Request(due_s=0.0, raw=loadgen.http_request("GET", "/hang", host))]
    answers, _ = loadgen.run(host, server, hang, preopen=0, timeout_ms=5000)
    assert answers["status"].tolist() == [200] and answers["server_total_ms"].tolist() == [-1]
