"""``ServeSettings``: the one typed settings object of the service.

Built from the command line or the environment (``ServeSettings.from_environment``);
tests build it directly. API keys are held only as SHA-256 digests: a raw key never sits in
the settings object, a log line or a repr.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_KEYS_ENV = "FRUGALREC_API_KEYS"
API_KEY_FILE_ENV = "FRUGALREC_API_KEY_FILE"


def hash_key(raw: str) -> str:
    """Hex SHA-256 of one API key (what the service keeps in memory)."""
    return hashlib.sha256(raw.strip().encode("utf-8")).hexdigest()


def read_key_file(path: str | os.PathLike[str]) -> list[str]:
    """Keys from a file: one per line, blank lines and ``#`` comments ignored."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{API_KEY_FILE_ENV}: {p} is not a file")
    lines = [ln.split("#", 1)[0].strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln]


def default_store_url() -> str:
    from frugalrec._io import cache_dir

    return f"sqlite:///{cache_dir('serve') / 'frugalrec.db'}"


class ServeSettings(BaseModel):
    """Everything ``create_app`` needs. Immutable; unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = Field(
        "ml-100k",
        description="ml-100k, synthetic (small, for tests), or a data-source spec (JSON of the "
        "user's files)",
    )
    pipeline_config: Path | None = Field(None, description="PipelineConfig JSON (default EASE)")
    store_url: str = Field(default_factory=default_store_url)
    model_dir: Path | None = Field(
        None, description="where model versions are saved (default: beside the store)"
    )
    api_key_hashes: frozenset[str] = Field(
        frozenset(), description="SHA-256 hex digests of accepted API keys"
    )
    read_requires_key: bool = Field(False, description="reads need a key too")
    # What each limit protects. Per API key: the service from one runaway or leaked key
    # (a backend's retry loop); per anonymous client address: open reads from one scraper.
    # Neither is a capacity guard (one client rarely fills the service; many always can):
    # that is the in-flight limit below. A key gets at least the anonymous limits: a backend
    # calling with its key must not be throttled harder than an anonymous browser.
    rate_limit_per_s: float = Field(
        1000.0, gt=0, description="sustained requests/s per API key (at least the anonymous)"
    )
    rate_limit_burst: int = Field(2000, ge=1, description="token-bucket size per API key")
    # Open reads are limited per client address (behind a proxy: per proxy, so set the
    # proxy's own limit there).
    anonymous_rate_limit_per_s: float = Field(
        1000.0, gt=0, description="sustained anonymous requests/s per client address"
    )
    anonymous_rate_limit_burst: int = Field(
        2000, ge=1, description="token-bucket size per client address"
    )
    # Admission control (load shedding) per worker process: past these many requests in
    # flight the next is answered 503 + Retry-After at once. What is admitted in one turn of
    # the event loop runs one after another, and every request that arrives meanwhile waits
    # in the socket queue, so a turn's length is about limit x the server time of one
    # request (~0.45 ms): 6 keeps the refusals of a server offered twice its capacity under
    # 10 ms (BENCHMARKS.md, "Service capacity and load shedding"); writes wait for a
    # group commit. Scale with the server time per request.
    max_in_flight: int = Field(
        6, ge=1, description="reads in flight per worker before 503 (load shedding)"
    )
    max_in_flight_writes: int = Field(
        8, ge=1, description="writes in flight per worker before 503 (load shedding)"
    )
    # The wait no in-flight count sees: requests queued in the kernel while the event loop
    # is busy. Past this lateness of the loop's heartbeat, new requests are refused until it
    # catches up (0: off).
    max_loop_lag_ms: float = Field(
        3.0, ge=0, description="event-loop lag before 503 (load shedding); 0 turns it off"
    )
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    max_batch: int = Field(1000, ge=1)
    cors_origins: tuple[str, ...] = ()
    result_cache_size: int = Field(20_000, ge=0)
    pseudonym_key_file: Path | None = None
    explain_by_default: bool = False
    # The LLM tier (off unless asked for: the model is loaded only then).
    rerank: Literal["none", "llm"] = Field(
        "none", description="llm: cascade to a one-pass LLM re-ranker when the cheap one is unsure"
    )
    llm_model: str = Field("smollm2-135m", description="packaged LLM for the re-ranker")
    llm_adapter: Path | None = Field(
        None,
        description="a LoRA adapter folder for llm_model (python -m frugalrec.bench.lora train)",
    )
    llm_adapter_runtime: Literal["llama-cpp", "transformers"] = Field(
        "llama-cpp",
        description="llama-cpp: the adapter as a GGUF adapter (loads in 0.2 s, fits the "
        "worker's restart budget); transformers: peft on the float32 base",
    )
    llm_candidates: int = Field(10, ge=1, le=26, description="cheap candidates the LLM re-ranks")
    llm_weight: float = Field(0.3, ge=0.0, le=1.0, description="LLM share of the blended score")
    llm_margin: float = Field(
        0.355,
        ge=0.0,
        description="fire only when the cheap relative top-1/top-K margin is below this "
        "(0.355: its median over ml-100k test users, BENCHMARKS.md)",
    )
    llm_budget_ms: float = Field(
        2000.0, gt=0, le=60_000, description="budget of a request that names none"
    )
    # Natural-language queries: rules first; this LLM only where they leave a request open
    # (as ``frugalrec query --llm``). None: rules (+ encoder) only, no model loaded.
    intent_llm: str | None = Field(
        None,
        description="LLM (llm registry) asked under the catalogue's grammar where the query "
        "rules leave a request open; the re-ranker's model is shared when it is the same",
    )
    category_words: Path | None = Field(
        None,
        description="the catalogue's own category-word table (JSON, see "
        "frugalrec.pipeline.query.load_category_words) on top of the packaged one",
    )

    @field_validator("llm_model", "intent_llm")
    @classmethod
    def _registered_llm(cls, v: str | None) -> str | None:
        if v is not None:
            from frugalrec.llm.registry import llm_names

            if v not in llm_names():
                raise ValueError(f"unknown LLM {v!r}; registered: {', '.join(llm_names())}")
        return v

    @model_validator(mode="after")
    def _adapter_matches_model(self) -> ServeSettings:
        if self.llm_adapter is not None:
            from frugalrec.llm.lora import check_adapter

            check_adapter(self.llm_adapter, self.llm_model)  # ValueError names the file
        return self

    @field_validator("api_key_hashes")
    @classmethod
    def _hex_digests(cls, v: frozenset[str]) -> frozenset[str]:
        for h in v:
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise ValueError("api_key_hashes must be lowercase hex SHA-256 digests")
        return v

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("store_url must start with sqlite:/// or postgresql://")
        return v

    @classmethod
    def from_environment(cls, api_keys: list[str] | None = None, **overrides: Any) -> ServeSettings:
        """Settings with keys from ``api_keys``, else ``$FRUGALREC_API_KEYS``
        (comma-separated) and ``$FRUGALREC_API_KEY_FILE``; ``overrides`` set other fields."""
        raw: list[str] = list(api_keys or [])
        if not raw:
            raw = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
            key_file = os.environ.get(API_KEY_FILE_ENV)
            if key_file:
                raw += read_key_file(key_file)
        for k in raw:
            if len(k) < 16:
                raise ValueError("API keys must be at least 16 characters")
        return cls(api_key_hashes=frozenset(hash_key(k) for k in raw), **overrides)

    def resolved_model_dir(self) -> Path:
        """Model versions directory: ``model_dir``, or beside a SQLite file, or the cache."""
        if self.model_dir is not None:
            return self.model_dir
        if self.store_url.startswith("sqlite:///"):
            db = Path(self.store_url[len("sqlite:///") :])
            return db.parent / f"{db.name}.models"
        from frugalrec._io import cache_dir

        return cache_dir("serve", "models")
