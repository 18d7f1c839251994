"""Health, readiness, Prometheus metrics and the live latency summary."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from frugalrec.serve.deps import Reader, State
from frugalrec.serve.schemas import REFUSALS, Health, LatencyStats

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="A model is loaded and the store answers",
)
def readyz(state: State) -> Response:
    ok = state.ready and state.store.ping()
    body = {
        "status": "ready" if ok else "not ready",
        "model_version": state.serving.version,
        "store": state.store.url.split(":", 1)[0],
    }
    return JSONResponse(body, 200 if ok else 503)


@router.get("/metrics", summary="Prometheus exposition", response_class=Response)
async def metrics(state: State) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# Built-in reference data whose user ids are public numbers, not anybody's identity.
PUBLIC_ID_DATASETS = ("ml-100k", "synthetic")


def sample_users(dataset: str, ids: np.ndarray, n: int = 12) -> list[str]:
    """User ids the page may suggest: only from the built-in reference datasets. A user's own
    catalogue holds real ids (e-mail addresses in the example bookshop) that an anonymous
    reader must never see, so it suggests none."""
    if dataset not in PUBLIC_ID_DATASETS:
        return []
    return [str(u) for u in ids[:n]]


@router.get(
    "/v1/stats",
    response_model=LatencyStats,
    responses=REFUSALS,
    summary="Live p50/p99 per tier (the page's cost panel)",
)
async def stats(state: State, _reader: Reader) -> dict:
    m = state.metrics
    return {
        "tiers": m.latency_summary(),
        "model_version": state.serving.version,
        "events_in_store": int(m.events_in_store._value.get()),
        "cache_hit_ratio": (m._hits / m._lookups) if m._lookups else None,
        "sample_users": sample_users(state.settings.dataset, state.dataset.users_vocab.ids),
    }
