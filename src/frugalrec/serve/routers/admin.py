"""``/v1/admin``: background retrain with an atomic swap; model versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from frugalrec.serve.deps import State, Writer
from frugalrec.serve.schemas import REFUSALS, ErrorBody, ModelVersionOut, RetrainStatus

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=REFUSALS)
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    409: {"model": ErrorBody},
}


def _status(state: State) -> dict:
    job = state.job
    return {
        "state": job.state,
        "serving_version": state.serving.version,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "new_version": job.new_version,
        "error": job.error,
    }


@router.post(
    "/retrain",
    response_model=RetrainStatus,
    status_code=202,
    responses=_ERRORS,
    summary="Retrain on the dataset plus all stored events; swap atomically when done",
)
def retrain(state: State, _writer: Writer) -> dict:
    state.retrainer.start()
    return _status(state)


@router.get(
    "/retrain",
    response_model=RetrainStatus,
    responses=_ERRORS,
    summary="Status of the last retrain",
)
def retrain_status(state: State, _writer: Writer) -> dict:
    return _status(state)


@router.get(
    "/models",
    response_model=list[ModelVersionOut],
    responses=_ERRORS,
    summary="Registered model versions with checksums",
)
def models(state: State, _writer: Writer) -> list[dict]:
    serving = state.serving.version
    return [
        {
            "version": m.version,
            "created_at": m.created_at,
            "model": m.model,
            "sha256": m.sha256,
            "n_events": m.n_events,
            "serving": m.version == serving,
        }
        for m in state.store.models()
    ]
