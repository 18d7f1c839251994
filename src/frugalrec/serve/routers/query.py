"""``/v1/query``: a natural-language request."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from frugalrec.serve.deps import Reader, State
from frugalrec.serve.schemas import REFUSALS, ErrorBody, QueryIn, QueryResult

router = APIRouter(prefix="/v1", tags=["query"], responses=REFUSALS)


@router.post(
    "/query",
    response_model=QueryResult,
    responses={422: {"model": ErrorBody}},
    summary="Recommend from free text (hard genre/year constraints + ranking)",
)
async def query(request: Request, state: State, _reader: Reader, body: QueryIn) -> dict:
    if state.encoder is not None or state.llm is not None:
        # Encoding the request (ms) or the LLM stage (s) is model time: off the event loop.
        payload, tier = await run_in_threadpool(state.responder.query, body)
    else:
        payload, tier = state.responder.query(body)  # rules only: sub-millisecond numpy
    request.state.tier = tier
    return payload
