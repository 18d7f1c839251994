"""``/v1/events``: feedback, acknowledged only after a durable commit."""

from __future__ import annotations

from fastapi import APIRouter

from frugalrec.serve.deps import State, Writer
from frugalrec.serve.errors import ApiError
from frugalrec.serve.schemas import ErrorBody, EventBatchIn, EventsAck, EventsBody

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=EventsAck,
    status_code=201,
    responses={
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
    },
    summary="Store one event or a batch (all or nothing); answers after the commit",
)
def post_events(state: State, _writer: Writer, body: EventsBody) -> dict:
    batch = isinstance(body, EventBatchIn)
    events = body.events if isinstance(body, EventBatchIn) else [body]
    limit = state.settings.max_batch
    if len(events) > limit:
        raise ApiError(
            422, "invalid_request", f"events: at most {limit} events per batch", field="events"
        )
    return {"stored": state.history.add_events(events, batch), "durable": True}
