"""API keys (hashed, constant-time compared), rate limits per key and per anonymous client
(keyed hash of the address), body size limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frugalrec.privacy.pseudonyms import Pseudonymiser
from frugalrec.serve.errors import ApiError, error_body
from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.settings import API_KEYS_ENV


class ApiKeys:
    """Accepted keys as SHA-256 digests. ``identify`` hashes the presented key and compares
    it with every stored digest using ``hmac.compare_digest`` (no early exit that would
    leak which prefix matched); the digest, never the key, names the caller afterwards."""

    def __init__(self, digests: frozenset[str]) -> None:
        self._digests = tuple(sorted(digests))

    def __bool__(self) -> bool:
        return bool(self._digests)

    def identify(self, authorization: str | None) -> str:
        """Key id (first 12 hex chars of its digest) for an ``Authorization`` header.

        Raises ApiError 401 (missing or not Bearer) or 403 (unknown key, or none configured).
        """
        if not authorization:
            raise ApiError(
                401, "unauthorized", "missing Authorization: Bearer <key>", field="authorization"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401, "unauthorized", "Authorization must be 'Bearer <key>'", field="authorization"
            )
        if not self._digests:
            raise ApiError(
                403,
                "forbidden",
                f"no API keys are configured on this server; set {API_KEYS_ENV}",
                field="authorization",
            )
        presented = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        match = None
        for d in self._digests:
            if hmac.compare_digest(presented, d):
                match = d
        if match is None:
            raise ApiError(403, "forbidden", "API key not accepted", field="authorization")
        return match[:12]


class RateLimiter:
    """Token bucket per key: ``rate`` tokens/s, at most ``burst`` banked. At most
    ``max_keys`` buckets are held: past that, buckets that have refilled (idle keys, which
    a fresh bucket would treat the same) are dropped, so many clients cannot grow memory."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000, who: str = "key") -> None:
        self.rate, self.burst = rate, float(burst)
        self.max_keys, self.who = max_keys, who
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        self._buckets = {
            k: (tokens, last)
            for k, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate < self.burst
        }
        if len(self._buckets) >= self.max_keys * 3 // 4:
            # Still mostly active keys: keep the most recent half (the rest restart with a
            # full bucket: lenient, but memory stays bounded, and each O(n) prune frees at
            # least a quarter of the slots, so its cost is amortised over new keys).
            recent = sorted(self._buckets.items(), key=lambda kv: kv[1][1])
            self._buckets = dict(recent[len(recent) - self.max_keys // 2 :])

    def take(self, key: str) -> None:
        """Spend one token or raise ApiError 429 with a Retry-After hint."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._prune(now)
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise ApiError(
                    429,
                    "rate_limited",
                    f"rate limit of {self.rate:g} requests/s per {self.who} exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            self._buckets[key] = (tokens - 1.0, now)


class ClientKeys(Pseudonymiser):
    """Rate-limit keys for anonymous callers: the users' keyed pseudonym mechanism over the
    client address, with a random per-process key, so the raw address is never held and
    the key links nothing across restarts."""

    prefix = "anon:"

    def __init__(self) -> None:
        super().__init__(secrets.token_bytes(32))

    def key(self, host: str | None) -> str:
        return self.pseudonym(host or "-")


class RateLimits:
    """ASGI middleware: the rate limits, applied before routing, body reading or any other
    work, so that a refusal (429 with ``Retry-After``, 401/403 for a bad key) stays cheap
    however busy the service is.

    Under ``/v1``: a request with ``Authorization`` spends a token of its API key's bucket
    (an unknown key is refused here); one without spends a token of its client address's
    anonymous bucket (then the endpoint decides whether it needed a key). The key id goes
    into the request state for the endpoint's dependency."""

    def __init__(
        self,
        app: ASGIApp,
        api_keys: ApiKeys,
        keys: RateLimiter,
        anonymous: RateLimiter,
        client_keys: ClientKeys,
        metrics: ServiceMetrics,
    ) -> None:
        self.app, self.api_keys, self.keys, self.anonymous = app, api_keys, keys, anonymous
        self.client_keys, self.metrics = client_keys, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            if authorization:
                key_id = self.api_keys.identify(authorization)
                self.keys.take(key_id)
                scope.setdefault("state", {})["key_id"] = key_id
            else:
                client = scope.get("client")
                self.anonymous.take(self.client_keys.key(client[0] if client else None))
        except ApiError as exc:
            if exc.status == 429:
                self.metrics.rate_limited.labels("key" if authorization else "client").inc()
            await send_json_error(send, exc.status, exc.code, exc.message, exc.field, exc.headers)
            return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """ASGI middleware: request bodies over ``max_bytes`` get 413 with a JSON body, whether
    announced by Content-Length or streamed chunked. The body is read (bounded) before the
    app runs, so an oversized request never reaches a handler."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                await send_json_error(
                    send, 400, "bad_request", "invalid Content-Length", "content-length"
                )
                return
            if too_big:
                await self._reject(send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        await send_json_error(
            send, 413, "payload_too_large", f"request body exceeds {self.max_bytes} bytes", "body"
        )


async def send_json_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    field: str | None,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer from a middleware with the service's JSON error body (no app involved)."""
    body = json.dumps(error_body(code, message, field)).encode()
    raw: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
