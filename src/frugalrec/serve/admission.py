"""Admission control: a bounded number of requests in flight per lane, the excess answered
at once with ``503`` + ``Retry-After`` (load shedding), so that an overload shows up as
fast refusals the client can retry, not as a queue whose wait grows without bound.

Lanes: ``write`` (``POST``/``DELETE`` under ``/v1`` other than ``/v1/query``: each waits for
a durable commit) and ``read`` (everything else under ``/v1``). Paths outside ``/v1``
(health, readiness, metrics, the page) are never shed.

Why the ``sleep(0)``: a cheap recommendation runs on the event loop without awaiting, so
a request that had started would finish before the next one starts, and an in-flight
counter would never pass 1 while the loop's queue of started-but-waiting requests grew
without bound. Yielding once after admission makes every request that arrived in the same
loop turn count against the limit before any of them runs: the requests admitted per turn
are bounded, so is the wait of each, and the excess is refused in that same turn.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.security import send_json_error

READ, WRITE = "read", "write"


def lane(method: str, path: str) -> str | None:
    """The lane of a request, or None when it is never shed."""
    if not path.startswith("/v1/"):
        return None
    if method in ("POST", "DELETE", "PUT", "PATCH") and path != "/v1/query":
        return WRITE
    return READ


class AdmissionControl:
    """ASGI middleware: at most ``limits[lane]`` requests in flight per lane in this worker
    process; the next one is answered ``503 overloaded`` with ``Retry-After`` before any
    work (no routing, no body read) and counted in ``frugalrec_shed_total{lane}``."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        read_limit: int,
        write_limit: int,
        retry_after_s: int = 1,
    ) -> None:
        self.app, self.metrics = app, metrics
        self.limits = {READ: read_limit, WRITE: write_limit}
        # Touched only on the event loop (entry and exit of the ASGI call), never from a
        # worker thread: no lock needed.
        self.in_flight = {READ: 0, WRITE: 0}
        self.retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        which = lane(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if which is None:
            await self.app(scope, receive, send)
            return
        if self.in_flight[which] >= self.limits[which]:
            self.metrics.shed.labels(which).inc()
            await send_json_error(
                send,
                503,
                "overloaded",
                f"the service is at its limit of {self.limits[which]} {which} requests in "
                "flight; retry after the Retry-After seconds (events: with the same event_id)",
                None,
                {"Retry-After": self.retry_after},
            )
            return
        self.in_flight[which] += 1
        try:
            await asyncio.sleep(0)
            await self.app(scope, receive, send)
        finally:
            self.in_flight[which] -= 1
