"""Dependency aliases: the state, and who may call (read / write / admin).

The rate limits and the key check itself run earlier, in the ``RateLimits`` middleware
(cheap refusals); these dependencies only decide whether an endpoint needs a key.
The dependencies are ``async``: they never block, and a sync dependency would cost a
thread-pool round trip per request (measured: ~1.3 ms of server CPU for /healthz).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from frugalrec.serve.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _authorise(request: Request, authorization: str | None) -> str:
    # The middleware identified (and rate-limited) a presented key; without one this
    # raises 401.
    key_id = (request.scope.get("state") or {}).get("key_id")
    if key_id is None:
        key_id = request.app.state.api_keys.identify(authorization)
    return str(key_id)


async def require_writer(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> str:
    """Key id of a valid API key (write and admin endpoints)."""
    return _authorise(request, authorization)


async def allow_reader(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> str | None:
    """Reads are open unless ``read_requires_key``; a presented key is still checked
    (and rate-limited per key, anonymous reads per client address, by the middleware)."""
    if request.app.state.service.settings.read_requires_key or authorization:
        return _authorise(request, authorization)
    return None


State = Annotated[ServiceState, Depends(get_state)]
Writer = Annotated[str, Depends(require_writer)]
Reader = Annotated[str | None, Depends(allow_reader)]
