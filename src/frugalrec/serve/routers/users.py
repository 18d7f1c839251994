"""``/v1/users``: recommendations for a user; forgetting a user (admin)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from frugalrec.serve.deps import Reader, State, Writer
from frugalrec.serve.schemas import REFUSALS, ErrorBody, ForgetResult, RecommendationList

router = APIRouter(prefix="/v1/users", tags=["users"], responses=REFUSALS)
UserPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="your own user id (pseudonymised before storage)",
    ),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.get(
    "/{user_id}/recommendations",
    response_model=None,
    responses={200: {"model": RecommendationList}, **_ERRORS},
    summary="Top-k items for a user, with scores, optional explanations and the cost",
)
async def recommendations(
    request: Request,
    state: State,
    _reader: Reader,
    user_id: UserPath,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    explain: bool = False,
    budget_ms: Annotated[float | None, Query(gt=0, le=60_000)] = None,
) -> Response:
    if state.llm is not None:
        # The LLM stage may take seconds of model time: keep it off the event loop.
        payload, tier = await run_in_threadpool(
            state.responder.recommend, user_id, k, explain, budget_ms
        )
    else:
        # Runs on the event loop: a cache hit takes microseconds and a miss ~1 ms of numpy
        # plus a WAL read that never waits for a writer; a thread-pool hop would cost more.
        payload, tier = state.responder.recommend(user_id, k, explain, budget_ms)
    request.state.tier = tier
    # The payload is built from plain floats/ints/strings in the documented shape (tested);
    # re-validating it through the response model cost ~0.3 ms per request, the hottest path.
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


@router.delete(
    "/{user_id}",
    response_model=ForgetResult,
    responses=_ERRORS,
    summary="Forget a user: events, cached history and results (admin)",
)
def forget_user(state: State, _writer: Writer, user_id: UserPath) -> dict:
    return {"user_id": user_id, "events_deleted": state.history.forget(user_id)}
