"""``/v1/items``: item-to-item similarity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from frugalrec.serve.deps import Reader, State
from frugalrec.serve.schemas import REFUSALS, ErrorBody, SimilarItems

router = APIRouter(prefix="/v1/items", tags=["items"], responses=REFUSALS)


@router.get(
    "/{item_id}/similar",
    response_model=SimilarItems,
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    summary="Items most similar to one item (the model's item representation)",
)
async def similar(
    request: Request,
    state: State,
    _reader: Reader,
    item_id: Annotated[str, Path(min_length=1, max_length=128)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict:
    request.state.tier = state.tier
    return state.responder.similar(item_id, k)
