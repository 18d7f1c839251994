"""Cascade routing: the LLM re-ranker runs only where the cheap stage is unsure and the
request's latency budget allows it. Otherwise - or when the budget runs out, or the model
fails - the cheap answer stands. Never an error, never an item the cheap stage did not
propose.

Unsure = small relative margin between the cheap scores of the first and the K-th
candidate: ``(s_1 - s_K) / |s_1|``. Budget: before firing, the LLM's cost is estimated from
the prompt's token count times the measured milliseconds per prompt token (a running mean
over this runtime's calls, a prior before the first); the LLM fires only if the elapsed time
plus the estimate fits. If the call still overruns, its answer is dropped.

Fallback: whatever goes wrong with the model - its worker crashed, hung, ran out of memory or
is restarting (``LLMUnavailable``), the call was aborted at the deadline, or it raised - the
cheap answer stands with ``reason="fallback"`` and ``fallback_reason`` saying why
(``worker_crash:SIGSEGV``, ``timeout``, ``oom``, ``restarting``, ``error:ValueError``). The
model's deadline is the request's: start + budget.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from frugalrec._config import JsonConfig
from frugalrec.llm.reranker import LLMReranker
from frugalrec.llm.runtime import LLMUnavailable
from frugalrec.pipeline.recommend import RecommendPipeline


@dataclasses.dataclass(frozen=True, kw_only=True)
class CascadeConfig(JsonConfig):
    """``budget_ms``: whole-request latency budget (inf = none); ``margin``: fire when the
    relative top-1/top-K margin is below it (inf = always, 0 = never); ``prior_ms_per_token``:
    cost estimate before anything was measured; ``safety``: multiplier on the estimate."""

    budget_ms: float = math.inf
    margin: float = math.inf
    prior_ms_per_token: float = 8.0
    safety: float = 1.15


@dataclass
class CascadeAnswer:
    """One request's answer: item indices and scores (best first), whether the LLM fired
    (and was used), why, and per-stage wall ms."""

    ids: np.ndarray
    scores: np.ndarray
    fired: bool
    reason: str
    margin: float
    stage_ms: dict[str, float] = field(default_factory=dict)
    llm_prob: np.ndarray | None = None  # aligned with llm_candidates (the cheap top-K)
    llm_candidates: np.ndarray | None = None
    fallback_reason: str | None = None  # why the model failed, with reason "fallback"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "llm_fired": self.fired,
            "route": self.reason,
            "margin": self.margin,
            "stage_ms": {k: round(v, 3) for k, v in self.stage_ms.items()},
        }
        if self.fallback_reason is not None:
            out["fallback_reason"] = self.fallback_reason
        return out


def relative_margin(scores: np.ndarray) -> np.ndarray:
    """float64 [n]: (s_1 - s_K) / |s_1| over finite scores of each row (0 if < 2 finite)."""
    s = np.where(np.isfinite(scores), scores, np.nan).astype(np.float64)
    first = s[:, 0]
    last = np.nanmin(s, axis=1) if s.shape[1] else first
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (first - last) / np.maximum(np.abs(first), 1e-12)
    return np.nan_to_num(m, nan=0.0)


class Cascade:
    """Cheap pipeline -> (maybe) one-pass LLM re-ranker over its top ``reranker.K``."""

    def __init__(
        self,
        pipeline: RecommendPipeline,
        reranker: LLMReranker | None,
        config: CascadeConfig | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.reranker = reranker
        self.config = config or CascadeConfig()
        self._ms = 0.0
        self._tokens = 0
        # One forward pass at a time (the runtimes are not thread-safe, and ``deadline`` is
        # per model): a request that finds the LLM busy keeps its cheap answer ("llm_busy").
        self.lock = threading.Lock()

    def ms_per_token(self) -> float:
        """Measured mean wall ms per prompt token of this cascade's LLM calls (or the prior)."""
        if self._tokens == 0:
            return self.config.prior_ms_per_token
        return self._ms / self._tokens

    def calibrate(self, history: np.ndarray, candidates: np.ndarray, repeats: int = 2) -> float:
        """Measure ms per prompt token on a representative request (``repeats`` forward
        passes of a re-ranker prompt) so that budget decisions start from a measurement,
        not the prior. Returns the measured value."""
        if self.reranker is None:
            return self.ms_per_token()
        prompt = self.reranker.prompt(history, candidates[: self.reranker.config.candidates])
        n = self.reranker.llm.count_tokens(prompt)
        for _ in range(repeats):
            # Measured without the prefix cache: a conservative (cold) per-token cost.
            self.reranker.llm.reset_cache()
            t0 = time.perf_counter()
            self.reranker.llm.logits_for_next_token([prompt])
            self._ms += (time.perf_counter() - t0) * 1e3
            self._tokens += n
        return self.ms_per_token()

    def recommend(
        self,
        history: sp.csr_matrix,
        k: int,
        history_order: np.ndarray | None = None,
        start: float | None = None,
        budget_ms: float | None = None,
    ) -> CascadeAnswer:
        """Answer one request (``history`` CSR [1, n_items]).

        ``history_order``: the history's item indices, most recent last (for the prompt);
        ``start``: ``time.perf_counter()`` when the request arrived (default: now);
        ``budget_ms``: this request's budget (default: the config's).
        """
        t0 = start if start is not None else time.perf_counter()
        ids, scores = self.pipeline.recommend(history, k=self.depth(k))
        hist = history_order if history_order is not None else history.indices
        return self.route(ids, scores, k, hist, t0, budget_ms)

    def depth(self, k: int) -> int:
        """How many cheap candidates a request for ``k`` items needs (the LLM re-ranks K)."""
        return max(k, self.reranker.config.candidates) if self.reranker else k

    def route(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        k: int,
        history_order: np.ndarray,
        start: float,
        budget_ms: float | None = None,
    ) -> CascadeAnswer:
        """The routing decision over a cheap answer (``ids`` int64 / ``scores`` float32
        [1, >= depth(k)], best first; -1 / -inf for empty slots) computed since ``start``:
        keep it, or re-rank its head with the LLM when unsure and the budget allows."""
        t0 = start
        cfg = self.config
        if budget_ms is not None:
            cfg = dataclasses.replace(cfg, budget_ms=budget_ms)
        ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
        t1 = time.perf_counter()
        stage = {"cheap_ms": (t1 - t0) * 1e3}
        margin = float(relative_margin(scores)[0])
        cheap = CascadeAnswer(ids[0, :k], scores[0, :k], False, "", margin, stage)

        def done(reason: str) -> CascadeAnswer:
            cheap.reason = reason
            stage["total_ms"] = (time.perf_counter() - t0) * 1e3
            return cheap

        def fallback(why: str) -> CascadeAnswer:
            cheap.fallback_reason = why
            return done("fallback")

        if self.reranker is None:
            return done("no_llm")
        if margin >= cfg.margin:
            return done("confident")
        remaining = cfg.budget_ms - stage["cheap_ms"]
        # Cheapest possible call: the fixed instruction alone; skip even building the prompt
        # when that does not fit.
        if remaining <= self.ms_per_token() * 32:
            return done("budget")
        hist = history_order
        cand = ids[:, : self.reranker.config.candidates]
        # The lock comes before the first model call (counting the prompt's tokens is one,
        # in the worker): a request that finds the LLM busy answers at once.
        if not self.lock.acquire(blocking=False):
            return done("llm_busy")
        llm = self.reranker.llm
        llm.deadline = t0 + cfg.budget_ms / 1e3 if math.isfinite(cfg.budget_ms) else None
        t2 = time.perf_counter()
        try:
            prompt = self.reranker.prompt(hist, cand[0][cand[0] >= 0])
            n_tokens = llm.count_tokens(prompt)
            estimate = n_tokens * self.ms_per_token() * cfg.safety
            stage["estimate_ms"] = estimate
            if (time.perf_counter() - t0) * 1e3 + estimate > cfg.budget_ms:
                return done("budget")
            t2 = time.perf_counter()
            new_ids, new_scores, info = self.reranker.rerank(
                [hist], cand, scores[:, : self.reranker.config.candidates]
            )
        except LLMUnavailable as exc:  # worker crashed, hung, out of memory, restarting
            stage["llm_ms"] = (time.perf_counter() - t2) * 1e3
            return fallback(exc.reason)
        except TimeoutError:  # aborted at the deadline (an in-process model)
            stage["llm_ms"] = (time.perf_counter() - t2) * 1e3
            return fallback("timeout")
        except Exception as exc:  # the cheap answer stands whatever the model does
            stage["llm_ms"] = (time.perf_counter() - t2) * 1e3
            return fallback(f"error:{type(exc).__name__}")
        finally:
            llm.deadline = None
            t3 = time.perf_counter()
            self.lock.release()
        self._ms += (t3 - t2) * 1e3
        self._tokens += n_tokens
        stage["llm_ms"] = (t3 - t2) * 1e3
        if (t3 - t0) * 1e3 > cfg.budget_ms:
            return done("budget_overrun")
        stage["total_ms"] = (t3 - t0) * 1e3
        # The re-ranked head, then the cheap tail if k exceeds the re-ranked K.
        head = new_ids[0][new_ids[0] >= 0]
        tail = ids[0][(ids[0] >= 0) & ~np.isin(ids[0], head)]
        out = np.r_[head, tail].astype(np.int64)[:k]
        return CascadeAnswer(
            out,
            np.r_[new_scores[0][: len(head)], np.full(max(0, len(out) - len(head)), -np.inf)][
                : len(out)
            ].astype(np.float32),
            True,
            "llm",
            margin,
            stage,
            info["llm_prob"][0],
            cand[0],
        )
