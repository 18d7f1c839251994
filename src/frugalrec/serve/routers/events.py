"""``/v1/events``: feedback, acknowledged only after a durable commit."""

from __future__ import annotations

from fastapi import APIRouter

from frugalrec.serve.deps import State, Writer
from frugalrec.serve.errors import ApiError
from frugalrec.serve.schemas import REFUSALS, ErrorBody, EventBatchIn, EventsAck, EventsBody

router = APIRouter(prefix="/v1", tags=["events"], responses=REFUSALS)


@router.post(
    "/events",
    response_model=EventsAck,
    status_code=201,
    responses={
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        413: {"model": ErrorBody},
        409: {
            "model": ErrorBody,
            "description": "an event reuses an event_id this user already sent for a "
            "different event (item, type or value); nothing was stored",
        },
        422: {
            "model": ErrorBody,
            "description": "a field is invalid, or an item_id is not in the catalogue "
            "(the field names the first one); nothing was stored",
        },
    },
    summary="Store one event or a batch (all or nothing); answers after the commit",
    description="Idempotent per event with `event_id`: a retry of an event (or of a batch) "
    "whose event_id this user already sent stores nothing new and gets the same answer, so "
    "a client that saw a timeout or a 503 retries safely.",
)
async def post_events(state: State, _writer: Writer, body: EventsBody) -> dict:
    batch = isinstance(body, EventBatchIn)
    events = body.events if isinstance(body, EventBatchIn) else [body]
    limit = state.settings.max_batch
    if len(events) > limit:
        raise ApiError(
            422, "invalid_request", f"events: at most {limit} events per batch", field="events"
        )
    return {"stored": await state.history.add_events(events, batch), "durable": True}
