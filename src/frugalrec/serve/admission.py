"""Admission control: overload shows up as fast refusals the client can retry (``503`` +
``Retry-After``), not as a queue whose wait grows without bound.

Two signals, per worker process:

- **Loop lag.** A heartbeat is due on the event loop every 2 ms. Requests that reach a
  saturated server wait in the kernel's socket buffers until the loop comes back to them,
  a wait no in-process counter sees; how far the loop is past the heartbeat's due time
  when a request is parsed is that wait. Past ``max_lag_ms`` new requests are refused
  until the loop catches up. (Measured at decision time, not when the heartbeat runs:
  asyncio runs a turn's I/O callbacks before its timers, so the requests that queued
  during a long turn are parsed before the heartbeat could report it.) Lag refuses only
  while a request of ours is in flight: with none, the loop was late for reasons outside
  the service (the OS, a collector, a background thread holding the GIL), nothing queued
  behind it, and refusing would relieve nothing. A client that sends one request at a time
  is never refused for lag.
- **In flight per lane.** ``write`` (``POST``/``DELETE`` under ``/v1`` other than
  ``/v1/query``: each waits for a durable commit) and ``read`` (everything else under
  ``/v1``): at most ``limits[lane]`` at once. Paths outside ``/v1`` (health, readiness,
  metrics, the page) are never refused.

A refusal is only cheap if it costs a small part of what serving costs, or at twice the
capacity refusing the excess alone would fill the core. So the decision is taken twice:

- ``shedding_protocol`` (what ``frugalrec serve`` runs): uvicorn's httptools protocol with
  the decision taken as soon as a request's headers are parsed, before any ASGI task,
  middleware or routing exists; a refusal is a few pre-built bytes written to the socket.
- ``AdmissionControl``, the ASGI middleware, for any other server (tests, another ASGI
  server); it steps aside for requests the protocol already admitted.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from frugalrec.serve.errors import error_body
from frugalrec.serve.metrics import ServiceMetrics

READ, WRITE = "read", "write"
#: Scope key set by the protocol for a request it admitted (its lane).
ADMITTED = "frugalrec.admitted"
#: Heartbeat period of the loop-lag signal.
BEAT_S = 0.002


def lane(method: str, path: str) -> str | None:
    """The lane of a request, or None when it is never shed."""
    if not path.startswith("/v1/"):
        return None
    if method in ("POST", "DELETE", "PUT", "PATCH") and path != "/v1/query":
        return WRITE
    return READ


class Admission:
    """The shared decision: ``enter(lane)`` -> admitted (then ``leave(lane)`` when done) or
    refused (counted in ``frugalrec_shed_total{lane}``); ``refusal(lane)`` is the answer.

    ``max_lag_ms`` 0 turns the loop-lag signal off (in-flight limits only)."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        read_limit: int,
        write_limit: int,
        max_lag_ms: float = 3.0,
        retry_after_s: int = 1,
    ) -> None:
        self.metrics = metrics
        self.limits = {READ: read_limit, WRITE: write_limit}
        # Touched only on the event loop: no lock needed.
        self.in_flight = {READ: 0, WRITE: 0}
        self.max_lag_s = max_lag_ms / 1e3
        self.retry_after = str(retry_after_s)
        self._due = 0.0  # when the heartbeat should next run (loop clock)
        self._beating: asyncio.AbstractEventLoop | None = None
        self._bodies = {ln: self._body(ln) for ln in (READ, WRITE)}

    def _body(self, which: str) -> bytes:
        return json.dumps(
            error_body(
                "overloaded",
                f"the service is at its limit for {which} requests; retry after the "
                "Retry-After seconds (events: with the same event_id)",
                None,
            )
        ).encode()

    def refusal(self, which: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """(ASGI headers, body) of the 503 for ``which``."""
        body = self._bodies[which]
        return [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", self.retry_after.encode()),
        ], body

    def enter(self, which: str) -> bool:
        """Admit one request of lane ``which`` (True) or refuse and count it (False). Call
        on the event loop."""
        loop = asyncio.get_running_loop()
        self._beat_on(loop)
        if (self.in_flight[READ] + self.in_flight[WRITE] and self._lagging(loop)) or (
            self.in_flight[which] >= self.limits[which]
        ):
            self.metrics.shed.labels(which).inc()
            return False
        self.in_flight[which] += 1
        return True

    def leave(self, which: str) -> None:
        self.in_flight[which] -= 1

    # ---- the loop-lag signal -------------------------------------------------------------
    def _lagging(self, loop: asyncio.AbstractEventLoop) -> bool:
        return bool(self.max_lag_s) and loop.time() - self._due > self.max_lag_s

    def _beat_on(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._beating is loop or not self.max_lag_s:
            return
        self._beating = loop
        self._beat(loop)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._beating is not loop or loop.is_closed():
            return
        self._due = loop.time() + BEAT_S
        loop.call_at(self._due, self._beat, loop)


class AdmissionControl:
    """ASGI middleware: ``Admission`` for servers that do not run ``shedding_protocol``; a
    refused request is answered 503 + Retry-After before any work (no routing, no body)."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or ADMITTED in scope:
            await self.app(scope, receive, send)
            return
        which = lane(scope["method"], scope["path"])
        if which is None:
            await self.app(scope, receive, send)
            return
        if not self.admission.enter(which):
            headers, body = self.admission.refusal(which)
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            # A cheap recommendation runs on the event loop without awaiting: without this
            # yield, each request would finish before the next started and the in-flight
            # count would never pass 1 while requests queued behind the loop.
            await asyncio.sleep(0)
            await self.app(scope, receive, send)
        finally:
            self.admission.leave(which)


def shedding_protocol(admission: Admission, metrics: ServiceMetrics) -> type:
    """uvicorn's httptools protocol with ``admission`` decided when a request's headers are
    parsed. For ``uvicorn.run(..., http=...)``."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class SheddingHttpToolsProtocol(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            scope = cycle.scope
            which = lane(scope["method"], scope["path"])
            if which is None:
                super()._start_asgi_task(cycle, app)
                return
            t0 = time.perf_counter()
            if not admission.enter(which):
                self._refuse(cycle, which, t0)
                return
            scope[ADMITTED] = which
            # As uvicorn's own (0.55) but with the lane released when the task ends however
            # it ends (a cancelled task never runs a middleware's finally).
            if self.config.reset_contextvars:
                task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
            else:
                task = self.loop.create_task(cycle.run_asgi(app))
            task.add_done_callback(self.tasks.discard)
            task.add_done_callback(lambda _t: admission.leave(which))
            self.tasks.add(task)

        def _refuse(self, cycle: Any, which: str, t0: float) -> None:
            headers, body = admission.refusal(which)
            # The same bytes uvicorn writes for the middleware's refusal.
            out = [STATUS_LINE[503]]
            for name, value in [*cycle.default_headers, *headers]:
                out += [name.lower(), b": ", value, b"\r\n"]
            if not cycle.keep_alive:
                out.append(b"connection: close\r\n")
            out += [b"\r\n", body]
            # Nothing of this request will be read or answered again (its body, if any,
            # is skipped by the parser callbacks of a complete cycle).
            cycle.response_started = cycle.response_complete = True
            self.transport.write(b"".join(out))
            if not cycle.keep_alive:
                self.transport.close()
            metrics.observe(
                "unmatched", cycle.scope["method"], "none", 503, time.perf_counter() - t0
            )
            self.on_response_complete()

    return SheddingHttpToolsProtocol
