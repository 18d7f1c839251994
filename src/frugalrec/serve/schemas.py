"""Request (input) schemas, separate from the public (response) schemas.

Inputs forbid unknown fields so a typo is an error naming the field; responses describe
exactly what the service returns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
ItemId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
EventType = Literal["view", "click", "like", "dislike", "rate"]
# 2100-01-01: a timestamp past it is a unit mistake (ms instead of s), not a real event.
MAX_TS = 4_102_444_800.0


# ---- inputs ------------------------------------------------------------------------------
class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EventIn(_Input):
    """One feedback event. ``value`` is required for ``rate`` (0-5); ``ts`` in epoch seconds
    (default: now)."""

    user_id: UserId
    item_id: ItemId
    type: EventType
    value: float | None = Field(None, ge=-1e6, le=1e6, validate_default=True)
    ts: float | None = Field(None, ge=0, le=MAX_TS)

    @field_validator("value")
    @classmethod
    def _rate_needs_value(cls, v: float | None, info: ValidationInfo) -> float | None:
        if info.data.get("type") == "rate":
            if v is None:
                raise ValueError("required when type is 'rate'")
            if not 0.0 <= v <= 5.0:
                raise ValueError("a rating must lie in [0, 5]")
        return v


class EventBatchIn(_Input):
    """Several events, stored all-or-nothing."""

    events: list[EventIn] = Field(min_length=1)


def _event_shape(v: Any) -> str:
    return "batch" if isinstance(v, dict) and "events" in v else "single"


EventsBody = Annotated[
    Annotated[EventIn, Tag("single")] | Annotated[EventBatchIn, Tag("batch")],
    Discriminator(_event_shape),
]


class QueryIn(_Input):
    """A natural-language request, optionally personalised by a user's history."""

    text: str = Field(min_length=1, max_length=500)
    user_id: UserId | None = None
    k: int = Field(10, ge=1, le=100)
    explain: bool = False
    budget_ms: float | None = Field(
        None, gt=0, le=60_000, description="latency budget (used by the LLM tier's cascade)"
    )


# ---- public ------------------------------------------------------------------------------
class Cost(BaseModel):
    """What a request cost: per-stage milliseconds, the tier that answered ("cheap",
    "llm", ...), cache use; with the LLM tier, the cascade's ``route`` (llm, confident,
    budget, budget_overrun, llm_busy, fallback, no_history), whether the LLM fired and, for
    ``fallback``, why the LLM failed (``fallback_reason``: worker_crash:SIGSEGV, timeout,
    oom, restarting, error:...)."""

    tier: str
    pipeline: str
    model_version: int
    stages_ms: dict[str, float]
    total_ms: float
    cache: Literal["hit", "miss", "none"] = "none"
    budget_ms: float | None = None
    within_budget: bool | None = None
    route: str | None = None
    llm_fired: bool = False
    fallback_reason: str | None = None


class BecauseItem(BaseModel):
    title: str
    weight: float


class SharedGenre(BaseModel):
    genre: str
    share: float


class Evidence(BaseModel):
    """What the scorer used (``frugalrec.llm.evidence.Evidence.to_dict``): history items
    with their score contributions, genres shared with the history, request terms."""

    item_title: str
    because: list[BecauseItem]
    shared_genres: list[SharedGenre]
    query_terms: list[str]
    popular: bool


class Recommendation(BaseModel):
    item_id: str
    title: str
    score: float | None = Field(
        description="cheap score, or the blended score where the LLM re-ranked (null past its K)"
    )
    genres: str | None = None
    year: int | None = None
    explanation: str | None = None
    evidence: Evidence | None = None
    explainer: str | None = Field(None, description='"template" or the LLM\'s name')
    grounded: bool | None = Field(None, description="the guard passed the explanation")


class RecommendationList(BaseModel):
    user_id: str
    items: list[Recommendation]
    cost: Cost


class SimilarItems(BaseModel):
    item_id: str
    title: str
    items: list[Recommendation]
    cost: Cost


class QueryResult(BaseModel):
    text: str
    user_id: str | None
    intent: dict[str, Any]
    items: list[Recommendation]
    cost: Cost


class EventsAck(BaseModel):
    """Returned only after the events are durably committed."""

    stored: int
    durable: bool = True


class ForgetResult(BaseModel):
    user_id: str
    events_deleted: int


class RetrainStatus(BaseModel):
    state: Literal["idle", "running", "done", "failed"]
    serving_version: int
    started_at: float | None = None
    finished_at: float | None = None
    new_version: int | None = None
    error: str | None = None


class ModelVersionOut(BaseModel):
    version: int
    created_at: float
    model: str
    sha256: str
    n_events: int
    serving: bool


class Health(BaseModel):
    status: str
    model_version: int | None = None
    store: str | None = None


class LatencyStats(BaseModel):
    tiers: dict[str, dict[str, float]]
    model_version: int
    events_in_store: int
    cache_hit_ratio: float | None
    sample_users: list[str]


class ErrorBody(BaseModel):
    """Every 4xx answer: a code, a message and the field at fault (when there is one)."""

    error: str
    message: str
    field: str | None = None
    fields: list[dict[str, str]] | None = None
