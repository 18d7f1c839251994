"""The model version being served and the read requests it answers: recommendations,
similar items, natural-language queries.

``Responder.current`` is replaced by one assignment (``start``); a request reads it once and
keeps that version to the end, so a swap never mixes two versions in one answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.llm.evidence import EvidenceBuilder
from frugalrec.llm.explainers import explained_rows
from frugalrec.llm.guard import Guard
from frugalrec.llm.intent import IntentParser
from frugalrec.models.base import top_k
from frugalrec.models.registry import model_class
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.pipeline.query import (
    catalogue_categories,
    load_category_words,
    parse_query,
    score_query,
)
from frugalrec.pipeline.recommend import RecommendPipeline
from frugalrec.serve.errors import ApiError
from frugalrec.serve.history import UserHistory
from frugalrec.serve.llm_tier import LLMTier
from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.schemas import QueryIn
from frugalrec.serve.settings import ServeSettings
from frugalrec.serve.training import TrainedModel

# Cascade outcomes that depend on the moment (another request held the LLM, the model
# overran or failed): the cheap answer is served but not cached, so a retry may do better.
TRANSIENT_ROUTES = ("llm_busy", "budget_overrun", "llm_error", "fallback")


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


class Responder:
    """Answers recommendations, similar items and queries from the current version."""

    def __init__(
        self,
        settings: ServeSettings,
        config: PipelineConfig,
        dataset: Dataset,
        history: UserHistory,
        metrics: ServiceMetrics,
        guard: Guard,
        encoder: Any = None,
        item_vectors: np.ndarray | None = None,
        llm_tier: LLMTier | None = None,
        intent_llm: Any = None,
    ) -> None:
        self.settings, self.config, self.dataset = settings, config, dataset
        self.history, self.metrics, self.guard = history, metrics, guard
        self.encoder, self.item_vectors, self.llm_tier = encoder, item_vectors, llm_tier
        ds = dataset
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
        # The catalogue's own category words, read once (not re-read per request).
        self.categories = catalogue_categories(ds.items) if "genres" in ds.items else None
        # Natural-language requests: the rules, then (``intent_llm``) the LLM where they
        # leave a request open, over the catalogue's categories and its own words.
        words = load_category_words(settings.category_words) if settings.category_words else None
        self.intent_parser = IntentParser(
            self.categories or (), self.year_span, intent_llm, words=words
        )
        self.words = words
        self.tier = "text" if model_class(config.model).uses_item_vectors else "cheap"
        self._local = threading.local()
        self.current: ServingModel | None = None

    def start(self, trained: TrainedModel) -> ServingModel:
        """Serve ``trained`` from now on (the atomic swap) and return its ServingModel."""
        # The evidence builder normalises the item vectors here, not in a request.
        evidence = EvidenceBuilder(trained.model, self.dataset.items)
        serving = ServingModel(trained, self.config, evidence)
        if self.config.retrieval != "exact":
            serving.retriever = RecommendPipeline(self.config, trained.model).build().retriever
        if self.llm_tier is not None:
            previous = None if self.current is None else self.current.cascade
            serving.cascade = self.llm_tier.cascade_for(self.config, trained.model, previous)
        self.current = serving
        self.metrics.model_version.set(trained.version)
        return serving

    @property
    def serving(self) -> ServingModel:
        if self.current is None:  # pragma: no cover - ServiceState starts one at once
            raise RuntimeError("no model version is being served")
        return self.current

    # ---- shared steps --------------------------------------------------------------------
    def _pipeline(self, serving: ServingModel) -> RecommendPipeline:
        """A pipeline per thread and version: stage timings stay per request."""
        pipe: RecommendPipeline | None = getattr(self._local, "pipe", None)
        if pipe is None or pipe.model is not serving.model:
            pipe = RecommendPipeline(self.config, serving.model)
            pipe.retriever = serving.retriever
            self._local.pipe = pipe
        pipe.reset_timings()
        return pipe

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
        p = self.history.pseudonym(user_id)
        serving = self.serving
        cascade = serving.cascade
        results = self.history.results
        # With the LLM tier the answer depends on the budget; without it, it does not.
        key = (p, k, explain_, serving.version, budget_ms if cascade is not None else None)
        gen = results.generation(p)
        cached = results.get(key)
        self.metrics.cache_lookup(cached is not None)
        if cached is not None:
            c_items, c_tier, c_route, c_fired, c_cold = cached
            cost = self._cost(
                c_tier, serving, {"cache_ms": 0.0}, t0, "hit", budget_ms, c_route, c_fired
            )
            payload = {"user_id": user_id, "items": c_items, "cold_start": c_cold, "cost": cost}
            return payload, "cache"
        stages: dict[str, float] = {}
        t = time.perf_counter()
        hist, disliked = self.history.of(p, serving)
        stages["history_ms"] = (time.perf_counter() - t) * 1e3
        route: str | None = None if cascade is None else "no_history"
        why: str | None = None
        fired = False
        cold = len(hist) == 0
        if cold:
            # Nothing personal to go on (new or forgotten user): the model's own answer for a
            # user it does not know, with room to drop the disliked items afterwards.
            t = time.perf_counter()
            ids, scores = serving.model.recommend(np.array([-1]), k + len(disliked))
            stages["cold_start_ms"] = (time.perf_counter() - t) * 1e3
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
                    serving, ids[keep], scores[keep], k, self.history.order(p, hist),
                    t0, budget_ms, stages,
                )  # fmt: skip
        keep = (ids >= 0) & ~np.isin(ids, disliked)
        ids, scores = ids[keep][:k], scores[keep][:k]
        items = [self._item(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]
        if explain_ and items:
            self._explain(serving, items, ids, hist, stages)
        tier = "llm" if fired else self.tier
        if route not in TRANSIENT_ROUTES:
            results.put(key, (items, tier, route, fired, cold), gen)
        cost = self._cost(tier, serving, stages, t0, "miss", budget_ms, route, fired, why)
        return {"user_id": user_id, "items": items, "cold_start": cold, "cost": cost}, tier

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
        t0 = time.perf_counter()
        serving = self.serving
        stages: dict[str, float] = {}
        t = time.perf_counter()
        # parse_query scrubs PII first; ``intent.raw`` is the scrubbed request.
        if self.intent_parser.llm is not None and self.categories:
            intent = self.intent_parser.parse(q.text)
            if self.intent_parser.last_used_llm:
                stages["intent_llm_ms"] = self.intent_parser.last_ms
        else:
            intent = parse_query(q.text, self.year_span, self.categories, self.words)
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
        p = None if q.user_id is None else self.history.pseudonym(q.user_id)
        if p is not None:
            t = time.perf_counter()
            hist, disliked = self.history.of(p, serving)
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
                serving, ids, vals, q.k, self.history.order(p, hist), t0, q.budget_ms, stages
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
            "text": intent.raw,
            "user_id": q.user_id,
            "intent": intent.to_dict(),
            "items": items,
            "cold_start": len(hist) == 0,
            "cost": self._cost(tier, serving, stages, t0, "none", q.budget_ms, route, fired, why),
        }
        return payload, tier
