"""``/v1/query``: a natural-language request."""

from __future__ import annotations

from fastapi import APIRouter, Request

from frugalrec.serve.deps import Reader, State
from frugalrec.serve.schemas import ErrorBody, QueryIn, QueryResult

router = APIRouter(prefix="/v1", tags=["query"])


@router.post(
    "/query",
    response_model=QueryResult,
    responses={422: {"model": ErrorBody}},
    summary="Recommend from free text (hard genre/year constraints + ranking)",
)
def query(request: Request, state: State, _reader: Reader, body: QueryIn) -> dict:
    payload, tier = state.query(body)
    request.state.tier = tier
    return payload
