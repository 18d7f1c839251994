"""The service's state: dataset, store, the model being served, caches, the retrain job.

Real-time loop: a user's serving history is (their row in the served model, unless they
were forgotten) + their stored positive events - their disliked items, rebuilt from the
store after every event and folded in by the model (no retraining). A retrain fits a new
version on the dataset plus every stored event and replaces ``self.serving`` with one
assignment: requests hold a reference to the version they started with, so none is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.llm.evidence import EvidenceBuilder
from frugalrec.llm.explainers import explained_rows
from frugalrec.llm.guard import Guard
from frugalrec.models.base import ModelArtifactError, top_k
from frugalrec.models.registry import model_class
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.pipeline.recommend import RecommendPipeline
from frugalrec.privacy import Pseudonymiser
from frugalrec.serve.cache import UserCache
from frugalrec.serve.catalogue import load_serving_dataset
from frugalrec.serve.errors import ApiError
from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.schemas import EventIn, QueryIn
from frugalrec.serve.settings import ServeSettings
from frugalrec.serve.store import Store, StoredEvent, open_store
from frugalrec.serve.training import (
    TrainedModel,
    fit_model,
    is_positive,
    load_version,
    save_version,
)

log = logging.getLogger("frugalrec.serve")

DEFAULT_CONFIG = PipelineConfig(model="ease", model_config={"l2": 300.0})
# Cascade outcomes that depend on the moment (another request held the LLM, the model
# overran or failed): the cheap answer is served but not cached, so a retry may do better.
TRANSIENT_ROUTES = ("llm_busy", "budget_overrun", "llm_error", "fallback")


def _scrubber() -> Any:
    """PII scrubbing for free text when the privacy module provides it (identity otherwise)."""
    try:
        from frugalrec.privacy.scrub import scrub_text
    except ImportError:  # pragma: no cover - scrubbing lands with the privacy work
        return lambda s: s
    return scrub_text


@dataclass
class ServingModel:
    """One model version as served: model, row map, retrieval index, the evidence builder
    of its explanations (its item vectors prepared when the version starts serving) and,
    with the LLM tier, its cascade."""

    trained: TrainedModel
    config: PipelineConfig
    evidence: EvidenceBuilder
    retriever: Any = None
    cascade: Any = None
    similar_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )

    @property
    def version(self) -> int:
        return self.trained.version

    @property
    def model(self) -> Any:
        return self.trained.model


@dataclass
class RetrainJob:
    state: str = "idle"
    started_at: float | None = None
    finished_at: float | None = None
    new_version: int | None = None
    error: str | None = None


class ServiceState:
    """Everything the routers need; built once per app (eagerly, so an app is ready when
    created)."""

    def __init__(
        self, settings: ServeSettings, dataset: Dataset | None = None, llm: Any = None
    ) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.config = self._load_config(settings.pipeline_config)
        self.llm_enabled = settings.rerank == "llm" or self.config.reranker == "llm"
        self.dataset = dataset if dataset is not None else load_serving_dataset(settings.dataset)
        self.store: Store = open_store(settings.store_url)
        self.pseudonymiser = Pseudonymiser.from_environment(settings.pseudonym_key_file)
        self.scrub = _scrubber()
        ds = self.dataset
        self.dataset_pseudonyms = self.pseudonymiser.pseudonyms(ds.users_vocab.ids)
        self.item_ids = np.asarray(ds.items_vocab.ids, dtype=object)
        self.titles: list[str] = ds.items["title"].astype(str).tolist()
        self.genres: list[str | None] = (
            ds.items["genres"].astype(str).tolist() if "genres" in ds.items else [None] * ds.n_items
        )
        years = ds.items["year"] if "year" in ds.items else None
        self.years: list[int | None] = (
            [None if pd.isna(y) else int(y) for y in years.astype(object).tolist()]
            if years is not None
            else [None] * ds.n_items
        )
        known = [y for y in self.years if y is not None]
        self.year_span = (min(known), max(known)) if known else None
        self.encoder: Any = None
        self.item_vectors: np.ndarray | None = None
        if self.config.encoder != "none":
            self._load_encoder()
        self.store.sync_items(
            list(zip(self.item_ids.astype(str).tolist(), self.titles, strict=True))
        )
        self.guard = Guard(ds.items)
        # The LLM (``llm`` overrides the packaged model, for tests) is loaded only when the
        # LLM tier is asked for.
        self.llm: Any = None
        if self.llm_enabled:
            if llm is None:
                from frugalrec.llm.runtime import load_llm

                llm = load_llm(settings.llm_model)
            self.llm = llm
        self.forgotten: set[str] = self.store.forgotten_users()
        self._forget_count = 0
        # A store whose deleted rows linger until rewritten (PostgreSQL) is compacted after the
        # first retrain that follows a forget; one that may hold rows from before a restart
        # counts as pending.
        self._compacted_at_forget = (
            -1 if self.store.needs_compaction_after_forget and self.forgotten else 0
        )
        self.history_cache = UserCache(max(1024, settings.result_cache_size))
        self.results = UserCache(settings.result_cache_size)
        self._local = threading.local()
        self._retrain_lock = threading.Lock()
        self.job = RetrainJob()
        self.serving = self._serving(self._initial_model())
        self.metrics.events_in_store.set(self.store.count_events())
        self.ready = True

    # ---- set-up ------------------------------------------------------------------------
    @staticmethod
    def _load_config(path: Path | None) -> PipelineConfig:
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

    @property
    def tier(self) -> str:
        """Tier that scores recommendations: "text" when the model reads item vectors."""
        return "text" if model_class(self.config.model).uses_item_vectors else "cheap"

    def _load_encoder(self) -> None:
        from frugalrec.serve.training import catalogue_vectors

        self.encoder, self.item_vectors = catalogue_vectors(self.config, self.dataset)

    def _initial_model(self) -> TrainedModel:
        """The newest registered version that matches the config and loads intact, else a
        fresh fit on the dataset plus stored events."""
        cls = model_class(self.config.model)
        wanted = cls.config_cls.from_dict(self.config.model_config)
        for entry in reversed(self.store.models()):
            if entry.model != self.config.model:
                continue
            try:
                trained = load_version(entry)
            except (ModelArtifactError, OSError, ValueError, KeyError) as exc:
                log.warning("model version %d refused: %s", entry.version, exc)
                continue
            if trained.model.config == wanted and trained.model.n_items_ == self.dataset.n_items:
                return trained
        return self._fit_and_register()

    def _fit_and_register(self) -> TrainedModel:
        for _ in range(3):
            seen_forgets = self._forget_count
            trained = fit_model(
                self.config,
                self.dataset,
                self.dataset_pseudonyms,
                self.store.all_events(),
                self.store.forgotten_users(),
                self.item_vectors,
            )
            # A user forgotten while we trained must not live on in the new version.
            if seen_forgets == self._forget_count:
                break
        return save_version(trained, self.settings.resolved_model_dir(), self.store)

    def _serving(self, trained: TrainedModel) -> ServingModel:
        # The evidence builder normalises the item vectors here, not in a request.
        evidence = EvidenceBuilder(trained.model, self.dataset.items)
        serving = ServingModel(trained, self.config, evidence)
        if self.config.retrieval != "exact":
            serving.retriever = RecommendPipeline(self.config, trained.model).build().retriever
        if self.llm is not None:
            serving.cascade = self._cascade(serving)
        self.metrics.model_version.set(trained.version)
        return serving

    def _cascade(self, serving: ServingModel) -> Any:
        """The LLM tier over this version: routing decisions only (the service runs the
        cheap stage itself); the per-token cost estimate carries over from the last version."""
        from frugalrec.llm.cascade import Cascade, CascadeConfig
        from frugalrec.llm.reranker import LLMReranker, RerankerConfig

        s = self.settings
        old = getattr(getattr(self, "serving", None), "cascade", None)
        reranker = (
            old.reranker
            if old is not None
            else LLMReranker(
                self.llm,
                self.dataset.items,
                RerankerConfig(candidates=s.llm_candidates, weight=s.llm_weight),
            )
        )
        cascade = Cascade(
            RecommendPipeline(self.config, serving.model),
            reranker,
            CascadeConfig(budget_ms=s.llm_budget_ms, margin=s.llm_margin),
        )
        if old is not None:
            cascade.lock, cascade._ms, cascade._tokens = old.lock, old._ms, old._tokens
        else:
            # Budget decisions start from this machine's measured ms per prompt token, not
            # the prior (which only ever updates when the LLM fires): two passes over the
            # most popular items as history and candidates.
            popular = np.argsort(-np.asarray(serving.model.item_popularity_), kind="stable")
            n = s.llm_candidates
            try:
                cascade.calibrate(popular[n : 2 * n], popular[:n], repeats=2)
            except Exception as exc:  # a failing model must not stop the cheap service
                log.warning("LLM calibration failed (%s); the cascade keeps its prior", exc)
        return cascade

    def _pipeline(self, serving: ServingModel) -> RecommendPipeline:
        """A pipeline per thread and version: stage timings stay per request."""
        pipe: RecommendPipeline | None = getattr(self._local, "pipe", None)
        if pipe is None or pipe.model is not serving.model:
            pipe = RecommendPipeline(self.config, serving.model)
            pipe.retriever = serving.retriever
            self._local.pipe = pipe
        pipe.reset_timings()
        return pipe

    # ---- users and histories -------------------------------------------------------------
    def pseudonym(self, user_id: str) -> str:
        return self.pseudonymiser.pseudonym(user_id)

    def _event_overlay(self, p: str) -> tuple[np.ndarray, np.ndarray]:
        """(positive item indices, disliked item indices) from the user's stored events;
        the latest event per item wins."""
        key = (p,)
        cached = self.history_cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        gen = self.history_cache.generation(p)
        events = self.store.user_events(p)
        latest: dict[int, bool] = {}
        if events:
            idx = self.dataset.items_vocab.index([e.item for e in events])
            for i, e in zip(idx.tolist(), events, strict=True):
                if i >= 0:
                    latest.pop(i, None)  # dict order = order of each item's latest event
                    latest[i] = is_positive(e.type, e.value)
        # Positive items in the order of their latest event (the LLM prompt shows the most
        # recent likes last).
        pos = np.array([i for i, ok in latest.items() if ok], dtype=np.int64)
        neg = np.array(sorted(i for i, ok in latest.items() if not ok), dtype=np.int64)
        self.history_cache.put(key, (pos, neg), gen)
        return pos, neg

    def history(self, p: str, serving: ServingModel) -> tuple[np.ndarray, np.ndarray]:
        """(serving history item indices, disliked item indices) of pseudonym ``p``."""
        pos, neg = self._event_overlay(p)
        row = serving.trained.user_rows.get(p)
        base = (
            serving.model.history_[row].indices.astype(np.int64)
            if row is not None and p not in self.forgotten
            else np.zeros(0, np.int64)
        )
        hist = np.setdiff1d(np.union1d(base, pos), neg)
        return hist, neg

    def history_order(self, p: str, hist: np.ndarray) -> np.ndarray:
        """``hist`` with the user's liked-by-event items last, most recent last (the base
        history in item order before them): what the LLM prompt shows."""
        pos, _ = self._event_overlay(p)
        return np.r_[np.setdiff1d(hist, pos), pos].astype(np.int64)

    def _row(self, items: np.ndarray) -> sp.csr_matrix:
        n = self.dataset.n_items
        return sp.csr_matrix(
            (np.ones(len(items), np.float32), items, np.array([0, len(items)])), shape=(1, n)
        )

    def _item(self, i: int, score: float) -> dict[str, Any]:
        return {
            "item_id": str(self.item_ids[i]),
            "title": self.titles[i],
            # A re-ranked list past the LLM's K has no blended score (as in the CLI).
            "score": round(float(score), 6) if np.isfinite(score) else None,
            "genres": self.genres[i],
            "year": self.years[i],
            "explanation": None,
            "evidence": None,
            "explainer": None,
            "grounded": None,
        }

    def _explain(
        self,
        serving: ServingModel,
        items: list[dict[str, Any]],
        ids: np.ndarray,
        hist: np.ndarray,
        stages: dict[str, float],
        query_genres: set[str] | None = None,
        year_range: tuple[int | None, int | None] | None = None,
    ) -> None:
        """Evidence first, then the template sentence (the LLM tier's code, zero model
        cost), into each item's ``explanation``, ``evidence``, ``explainer``, ``grounded``."""
        t = time.perf_counter()
        evidence = serving.evidence.build(hist, ids, query_genres, year_range)
        t1 = time.perf_counter()
        stages["evidence_ms"] = (t1 - t) * 1e3
        rows = explained_rows(evidence, self.guard, check_template=False)
        for item, row in zip(items, rows, strict=True):
            item.update(row)
        stages["explain_ms"] = (time.perf_counter() - t1) * 1e3

    def _route(
        self,
        serving: ServingModel,
        ids: np.ndarray,
        scores: np.ndarray,
        k: int,
        order: np.ndarray,
        t0: float,
        budget_ms: float | None,
        stages: dict[str, float],
    ) -> tuple[np.ndarray, np.ndarray, str, bool, str | None]:
        """The LLM tier's cascade over the cheap candidates (int64 / float32 [n], seen and
        disliked items already removed): (ids [<= k], scores, route, whether the LLM
        answered, why it fell back). Never raises: a budget that runs out or a failed LLM
        worker keeps the cheap list."""
        ans = serving.cascade.route(
            ids[None, :], scores[None, :], k, order, t0,
            self.settings.llm_budget_ms if budget_ms is None else budget_ms,
        )  # fmt: skip
        for name in ("estimate_ms", "llm_ms"):
            if name in ans.stage_ms:
                stages[name] = ans.stage_ms[name]
        keep = ans.ids >= 0
        if ans.fallback_reason is not None:
            self.metrics.llm_fallbacks.labels(ans.fallback_reason).inc()
        return ans.ids[keep], ans.scores[keep], ans.reason, ans.fired, ans.fallback_reason

    def _cost(
        self,
        tier: str,
        serving: ServingModel,
        stages: dict[str, float],
        t0: float,
        cache: str,
        budget_ms: float | None,
        route: str | None = None,
        llm_fired: bool = False,
        fallback_reason: str | None = None,
    ) -> dict[str, Any]:
        total = (time.perf_counter() - t0) * 1e3
        return {
            "tier": tier,
            "pipeline": self.config.name,
            "model_version": serving.version,
            "stages_ms": {k: round(v, 4) for k, v in stages.items()},
            "total_ms": round(total, 4),
            "cache": cache,
            "budget_ms": budget_ms,
            "within_budget": None if budget_ms is None else total <= budget_ms,
            "route": route,
            "llm_fired": llm_fired,
            "fallback_reason": fallback_reason,
        }

    # ---- recommendations ---------------------------------------------------------------
    def recommend(
        self, user_id: str, k: int, explain_: bool, budget_ms: float | None
    ) -> tuple[dict[str, Any], str]:
        """The user's top-``k`` and the tier label that answered (for metrics)."""
        t0 = time.perf_counter()
        p = self.pseudonym(user_id)
        serving = self.serving
        cascade = serving.cascade
        # With the LLM tier the answer depends on the budget; without it, it does not.
        key = (p, k, explain_, serving.version, budget_ms if cascade is not None else None)
        gen = self.results.generation(p)
        cached = self.results.get(key)
        self.metrics.cache_lookup(cached is not None)
        if cached is not None:
            c_items, c_tier, c_route, c_fired = cached
            cost = self._cost(
                c_tier, serving, {"cache_ms": 0.0}, t0, "hit", budget_ms, c_route, c_fired
            )
            return {"user_id": user_id, "items": c_items, "cost": cost}, "cache"
        stages: dict[str, float] = {}
        t = time.perf_counter()
        hist, disliked = self.history(p, serving)
        stages["history_ms"] = (time.perf_counter() - t) * 1e3
        route: str | None = None if cascade is None else "no_history"
        why: str | None = None
        fired = False
        if len(hist) == 0:
            # Nothing personal to go on (new or forgotten user): popularity, as Recommender.score.
            t = time.perf_counter()
            pop = np.array(serving.model.item_popularity_, dtype=np.float32)[None, :]
            pop[0, disliked] = -np.inf
            ids, scores = top_k(pop, k)
            stages["popularity_ms"] = (time.perf_counter() - t) * 1e3
            ids, scores = ids[0], scores[0]
        else:
            pipe = self._pipeline(serving)
            depth = k if cascade is None else cascade.depth(k)
            # Disliked items are left out of the history (so they are not masked as seen):
            # ask for enough extra candidates to drop them afterwards.
            ids, scores = pipe.recommend(self._row(hist), depth + len(disliked))
            for stage, secs in pipe.stage_seconds.items():
                stages[f"{stage}_ms"] = sum(secs) * 1e3
            ids, scores = ids[0], scores[0]
            if cascade is not None:
                keep = (ids >= 0) & ~np.isin(ids, disliked)
                ids, scores, route, fired, why = self._route(
                    serving, ids[keep], scores[keep], k, self.history_order(p, hist),
                    t0, budget_ms, stages,
                )  # fmt: skip
        keep = (ids >= 0) & ~np.isin(ids, disliked)
        ids, scores = ids[keep][:k], scores[keep][:k]
        items = [self._item(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]
        if explain_ and items:
            self._explain(serving, items, ids, hist, stages)
        tier = "llm" if fired else self.tier
        if route not in TRANSIENT_ROUTES:
            self.results.put(key, (items, tier, route, fired), gen)
        cost = self._cost(tier, serving, stages, t0, "miss", budget_ms, route, fired, why)
        return {"user_id": user_id, "items": items, "cost": cost}, tier

    def similar(self, item_id: str, k: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        idx = int(self.dataset.items_vocab.index([item_id])[0])
        if idx < 0:
            raise ApiError(404, "not_found", f"unknown item_id {item_id!r}", field="item_id")
        serving = self.serving
        hit = serving.similar_cache.get((idx, k))
        if hit is None:
            try:
                hit = serving.model.similar_items(np.array([idx]), k)
            except NotImplementedError as exc:
                raise ApiError(
                    409, "unsupported", f"model {serving.model.name!r} has no item similarity"
                ) from exc
            if len(serving.similar_cache) < 50_000:
                serving.similar_cache[(idx, k)] = hit
        ids, scores = hit
        items = [
            self._item(int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and np.isfinite(s)
        ]
        stages = {"similar_ms": (time.perf_counter() - t0) * 1e3}
        return {
            "item_id": item_id,
            "title": self.titles[idx],
            "items": items,
            "cost": self._cost(self.tier, serving, stages, t0, "none", None),
        }

    def query(self, q: QueryIn) -> tuple[dict[str, Any], str]:
        from frugalrec.pipeline.query import parse_query, score_query

        t0 = time.perf_counter()
        serving = self.serving
        stages: dict[str, float] = {}
        t = time.perf_counter()
        text = self.scrub(q.text)
        intent = parse_query(text, self.year_span)
        stages["parse_ms"] = (time.perf_counter() - t) * 1e3
        n = self.dataset.n_items
        if self.encoder is not None and self.item_vectors is not None:
            t = time.perf_counter()
            qv = self.encoder.encode([intent.text])[0]
            vectors = self.item_vectors
            stages["encode_ms"] = (time.perf_counter() - t) * 1e3
            tier = f"query-{self.config.encoder}"
        else:
            # Cheap tier: no encoder, the request is answered by its rules (genres, years),
            # the user's profile and popularity.
            qv, vectors = np.zeros(1, np.float32), np.zeros((n, 1), np.float32)
            tier = "query-rules"
        user_scores = None
        exclude = np.zeros(0, np.int64)
        hist = np.zeros(0, np.int64)
        p = None if q.user_id is None else self.pseudonym(q.user_id)
        if p is not None:
            t = time.perf_counter()
            hist, disliked = self.history(p, serving)
            if len(hist):
                user_scores = serving.model.fold_in(self._row(hist))[0]
            exclude = np.union1d(hist, disliked)
            stages["user_profile_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        scores = score_query(
            intent,
            qv,
            vectors,
            self.dataset.items,
            user_scores,
            popularity=serving.model.item_popularity_,
        )
        scores[exclude] = -np.inf
        cascade = serving.cascade
        depth = q.k if cascade is None else cascade.depth(q.k)
        ids, vals = top_k(scores[None, :], depth)
        keep = np.isfinite(vals[0])
        ids, vals = ids[0][keep], vals[0][keep]
        stages["rank_ms"] = (time.perf_counter() - t) * 1e3
        route: str | None = None if cascade is None else "no_history"
        why: str | None = None
        fired = False
        if cascade is not None and p is not None and len(hist) and len(ids):
            # The LLM judges the constrained candidates against the user's history.
            ids, vals, route, fired, why = self._route(
                serving, ids, vals, q.k, self.history_order(p, hist), t0, q.budget_ms, stages
            )
        ids, vals = ids[: q.k], vals[: q.k]
        items = [self._item(int(i), float(s)) for i, s in zip(ids, vals, strict=True)]
        if q.explain and items:
            self._explain(
                serving, items, ids, hist, stages,
                intent.include, (intent.year_min, intent.year_max),
            )  # fmt: skip
        tier = "llm" if fired else tier
        payload = {
            "text": text,
            "user_id": q.user_id,
            "intent": intent.to_dict(),
            "items": items,
            "cost": self._cost(tier, serving, stages, t0, "none", q.budget_ms, route, fired, why),
        }
        return payload, tier

    # ---- writes --------------------------------------------------------------------------
    def add_events(self, events: list[EventIn], batch: bool) -> int:
        """Validate against the catalogue, store in one transaction, invalidate caches.

        Nothing is written when any event is invalid.
        """
        idx = self.dataset.items_vocab.index([e.item_id for e in events])
        bad = np.flatnonzero(idx < 0)
        if len(bad):
            i = int(bad[0])
            name = f"events[{i}].item_id" if batch else "item_id"
            raise ApiError(
                422,
                "invalid_request",
                f"{name}: unknown item {events[i].item_id!r} ({len(bad)} unknown in total); "
                "nothing was stored",
                field=name,
            )
        now = time.time()
        rows = [
            StoredEvent(
                self.pseudonym(e.user_id),
                e.item_id,
                e.type,
                e.value,
                float(e.ts) if e.ts is not None else now,
            )
            for e in events
        ]
        n = self.store.add_events(rows)
        for p in {r.user for r in rows}:
            self.history_cache.invalidate(p)
            self.results.invalidate(p)
        self.metrics.events.inc(n)
        self.metrics.events_in_store.inc(n)
        return n

    def forget(self, user_id: str) -> int:
        """Delete the user's events and cached results; their dataset history stops being
        served now and leaves the model at the next version."""
        p = self.pseudonym(user_id)
        n = self.store.forget_user(p)
        self.forgotten.add(p)
        self._forget_count += 1
        self.history_cache.invalidate(p)
        self.results.invalidate(p)
        self.metrics.events_in_store.set(self.store.count_events())
        return n

    def _purge_forgotten_versions(self, current: int) -> None:
        """Delete the files of older model versions that still hold a forgotten user's
        history (the new version, fitted without them, is serving now)."""
        from frugalrec.serve.forget import purge_versions, versions_holding

        forgotten = self.store.forgotten_users()
        if not forgotten:
            return
        holding = versions_holding(self.store, forgotten)
        purge_versions(self.store, [v for v in holding if v != current])

    # ---- retraining ------------------------------------------------------------------------
    def start_retrain(self) -> RetrainJob:
        with self._retrain_lock:
            if self.job.state == "running":
                raise ApiError(409, "conflict", "a retrain is already running")
            self.job = RetrainJob(state="running", started_at=time.time())
        threading.Thread(target=self._retrain, name="frugalrec-retrain", daemon=True).start()
        return self.job

    def _retrain(self) -> None:
        job = self.job
        try:
            trained = self._fit_and_register()
            self.serving = self._serving(trained)  # the atomic swap
            self.results.clear()
            self._purge_forgotten_versions(trained.version)
            self._compact_after_forget()
            job.new_version = trained.version
            job.state = "done"
            self.metrics.retrains.labels("done").inc()
        except Exception as exc:  # reported through the job status, the old model serves on
            log.exception("retrain failed")
            job.error = f"{type(exc).__name__}: {exc}"
            job.state = "failed"
            self.metrics.retrains.labels("failed").inc()
        finally:
            job.finished_at = time.time()

    def _compact_after_forget(self) -> None:
        """Rewrite the store once per retrain that follows a forget, where deleted rows
        linger (PostgreSQL; SQLite zeroes them at the forget already). A failure is logged
        and retried at the next retrain: the new model already serves."""
        if not self.store.needs_compaction_after_forget:
            return
        seen = self._forget_count
        if seen == self._compacted_at_forget:
            return
        try:
            if self.store.compact():
                self._compacted_at_forget = seen
            else:
                log.warning("store compaction after forget deferred (busy); next retrain retries")
        except Exception as exc:  # never fail a retrain whose model is already serving
            log.warning("store compaction after forget failed (%s); next retrain retries", exc)

    def close(self) -> None:
        self.store.close()
