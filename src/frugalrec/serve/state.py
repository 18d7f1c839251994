"""The service's state: a thin composition of its parts, built once per app (eagerly, so
an app is ready when created).

- ``history`` (``serve/history.py``): pseudonyms, users' stored-event overlays and the
  per-user caches; events (idempotent by ``event_id``) and forgets.
- ``responder`` (``serve/serving.py``): the model version being served and the read
  requests it answers (recommendations, similar items, queries).
- ``retrainer`` (``serve/retrainer.py``): the first version, background retrains with the
  atomic swap, purging and compaction after a forget.
- ``llm_tier`` (``serve/llm_tier.py``): the generative model and the cascade per version,
  only with the LLM tier.

Real-time loop: a user's serving history is (their row in the served model, unless they
were forgotten) + their stored positive events - their disliked items, rebuilt from the
store after every event and folded in by the model (no retraining).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalrec.data.dataset import Dataset
from frugalrec.llm.guard import Guard
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.privacy import Pseudonymiser
from frugalrec.serve.catalogue import load_serving_dataset
from frugalrec.serve.history import UserHistory
from frugalrec.serve.llm_tier import LLMTier
from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.retrainer import Retrainer, RetrainJob
from frugalrec.serve.serving import Responder, ServingModel
from frugalrec.serve.settings import ServeSettings
from frugalrec.serve.store import Store, open_store

DEFAULT_CONFIG = PipelineConfig(model="ease", model_config={"l2": 300.0})

__all__ = ["DEFAULT_CONFIG", "RetrainJob", "ServiceState", "ServingModel"]


def load_config(path: Path | None) -> PipelineConfig:
    """The served PipelineConfig: ``path`` (JSON), or EASE by default."""
    if path is None:
        return DEFAULT_CONFIG
    try:
        cfg = PipelineConfig.from_json(Path(path).read_text())
        cfg.validate()
    except (OSError, ValueError, TypeError) as exc:  # unreadable, not JSON, bad field
        raise ValueError(f"--config {path}: {exc}") from exc
    if cfg.reranker not in ("none", "llm"):
        raise ValueError(f"{path}: reranker {cfg.reranker!r} is not served (none | llm)")
    return cfg


class ServiceState:
    """Everything the routers need: settings, metrics, dataset, store and the four parts."""

    # ``frugalrec forget`` reads the served config the same way.
    _load_config = staticmethod(load_config)

    def __init__(
        self, settings: ServeSettings, dataset: Dataset | None = None, llm: Any = None
    ) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.config = load_config(settings.pipeline_config)
        self.dataset = dataset if dataset is not None else load_serving_dataset(settings.dataset)
        self.store: Store = open_store(settings.store_url)
        pseudonymiser = Pseudonymiser.from_environment(settings.pseudonym_key_file)
        ds = self.dataset
        encoder, item_vectors = None, None
        if self.config.encoder != "none":
            from frugalrec.serve.training import catalogue_vectors

            encoder, item_vectors = catalogue_vectors(self.config, ds)
        self.store.sync_items(
            list(
                zip(
                    [str(i) for i in ds.items_vocab.ids],
                    ds.items["title"].astype(str).tolist(),
                    strict=True,
                )
            )
        )
        self.guard = Guard(ds.items)
        # The LLM (``llm`` overrides the packaged model, for tests) is loaded only when the
        # LLM tier is asked for.
        self.llm_tier: LLMTier | None = None
        if settings.rerank == "llm" or self.config.reranker == "llm":
            self.llm_tier = LLMTier(settings, ds, llm)
        self.intent_llm = self._intent_llm(settings, llm)
        self.history = UserHistory(
            self.store, ds, pseudonymiser, self.metrics, settings.result_cache_size
        )
        self.responder = Responder(
            settings, self.config, ds, self.history, self.metrics, self.guard,
            encoder, item_vectors, self.llm_tier, self.intent_llm,
        )  # fmt: skip
        self.retrainer = Retrainer(
            settings, self.config, ds, pseudonymiser.pseudonyms(ds.users_vocab.ids),
            item_vectors, self.store, self.history, self.metrics, self.responder.start,
        )  # fmt: skip
        self.responder.start(self.retrainer.initial_model())
        self.metrics.events_in_store.set(self.store.count_events())
        self.ready = True

    def _intent_llm(self, settings: ServeSettings, llm: Any) -> Any:
        """The query parser's LLM (``settings.intent_llm``): the LLM tier's model when it
        is the same one (one worker, not two), ``llm`` when given (tests), else loaded."""
        name = settings.intent_llm
        if name is None:
            return None
        # shared only when it is the plain model: an adapter was trained to answer letters
        if self.llm_tier is not None and settings.llm_model == name and not settings.llm_adapter:
            return self.llm_tier.llm
        if llm is not None:
            return llm
        from frugalrec.llm.runtime import load_llm

        return load_llm(name)

    # ---- what routers and tests read ---------------------------------------------------------
    @property
    def serving(self) -> ServingModel:
        """The model version being served now."""
        return self.responder.serving

    @property
    def llm(self) -> Any:
        return None if self.llm_tier is None else self.llm_tier.llm

    @property
    def encoder(self) -> Any:
        return self.responder.encoder

    @property
    def tier(self) -> str:
        """Tier that scores recommendations: "text" when the model reads item vectors."""
        return self.responder.tier

    @property
    def job(self) -> RetrainJob:
        return self.retrainer.job

    def pseudonym(self, user_id: str) -> str:
        return self.history.pseudonym(user_id)

    def close(self) -> None:
        self.history.close()
        self.store.close()
        # A model that runs in a worker process holds one: let it go with the service.
        close_llm = getattr(self.llm, "close", None)
        if callable(close_llm):
            close_llm()
