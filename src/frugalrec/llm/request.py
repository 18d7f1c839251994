"""One request end to end: cheap list -> cascade (maybe LLM re-rank) -> evidence -> explanations.

This is what ``frugalrec recommend`` and the chat session call. Every answer carries its
per-stage cost, and every item its ``explanation``, ``evidence`` and ``explainer``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.llm.cascade import Cascade, CascadeAnswer, CascadeConfig, relative_margin
from frugalrec.llm.evidence import EvidenceBuilder
from frugalrec.llm.explainers import ChoosingExplainer, explained_rows
from frugalrec.llm.guard import Guard
from frugalrec.llm.reranker import LLMReranker, RerankerConfig
from frugalrec.llm.runtime import LLM
from frugalrec.models.base import Recommender, mask_seen, top_k
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.pipeline.recommend import RecommendPipeline

DEFAULT_EASE_L2 = 300.0  # best on ml-100k's random valid split (BENCHMARKS.md)


def history_in_order(ds: Dataset, user: int, mask: np.ndarray | None = None) -> np.ndarray:
    """The user's item indices, oldest first (by timestamp; stable for ties)."""
    sel = ds.user == user
    if mask is not None:
        sel &= mask
    items, ts = ds.item[sel], ds.timestamp[sel]
    return np.asarray(items[np.argsort(ts, kind="stable")], dtype=np.int64)


class LLMTier:
    """A fitted cheap model plus the optional LLM stages over one catalogue."""

    def __init__(
        self,
        ds: Dataset,
        model: Recommender,
        llm: LLM | None = None,
        reranker: RerankerConfig | None = None,
        cascade: CascadeConfig | None = None,
        llm_explanations: bool = False,
    ) -> None:
        self.ds = ds
        self.model = model
        self.llm = llm
        self.pipeline = RecommendPipeline(
            PipelineConfig(model=model.name, threads=1), model
        ).build()
        rr = LLMReranker(llm, ds.items, reranker) if llm is not None and reranker else None
        self.cascade = Cascade(self.pipeline, rr, cascade or CascadeConfig())
        self.evidence = EvidenceBuilder(model, ds.items)
        self.guard = Guard(ds.items)
        # The LLM chooses evidence facts under a grammar; it writes no word of the sentence.
        self.explainer = ChoosingExplainer(llm) if llm and llm_explanations else None
        # Genre strings once per catalogue (titles and years come from the evidence builder):
        # describing an answer then costs no DataFrame lookups.
        tbl = ds.items
        self._genres = tbl["genres"].astype(str).to_numpy() if "genres" in tbl.columns else None

    def answer(
        self,
        history: np.ndarray,
        k: int = 10,
        explain: bool = True,
        allowed: np.ndarray | None = None,
        query_genres: set[str] | None = None,
        boost: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Recommend for a history (item indices, oldest first). ``allowed`` (bool
        [n_items]) hard-filters items; ``boost`` (float32 [n_items]) is added to the cheap
        scores (chat constraints). Returns items + route + per-stage cost (ms)."""
        t0 = time.perf_counter()
        n = self.ds.n_items
        history = np.asarray(history, dtype=np.int64)
        H = sp.csr_matrix(
            (np.ones(len(history), np.float32), history, [0, len(history)]), shape=(1, n)
        )
        H.sum_duplicates()
        if allowed is None and boost is None:
            ans = self.cascade.recommend(H, k, history_order=history, start=t0)
        else:
            ans = self._constrained(H, history, k, allowed, boost, t0)
        t1 = time.perf_counter()
        items = [int(i) for i in ans.ids if i >= 0]
        out_items = self._describe(items, ans.scores)
        if ans.llm_prob is not None and ans.llm_candidates is not None:
            # What the LLM said about each item (softmax over the K labels).
            cands = ans.llm_candidates
            for row, i in zip(out_items, items, strict=True):
                hit = np.flatnonzero(cands == i)
                row["llm_prob"] = float(ans.llm_prob[hit[0]]) if hit.size else None
        cost = dict(ans.stage_ms)
        cost.pop("total_ms", None)
        if explain and items:
            ev = self.evidence.build(history, np.array(items), query_genres)
            t2 = time.perf_counter()
            cost["evidence_ms"] = (t2 - t1) * 1e3
            explained = explained_rows(ev, self.guard, self.explainer)
            cost["explain_ms"] = (time.perf_counter() - t2) * 1e3
            for row, ex in zip(out_items, explained, strict=True):
                row.update(ex)
        cost["total_ms"] = (time.perf_counter() - t0) * 1e3
        return {"items": out_items, "route": ans.to_dict(), "cost_ms": cost}

    def _constrained(
        self,
        H: sp.csr_matrix,
        history: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        boost: np.ndarray | None,
        t0: float,
    ) -> CascadeAnswer:
        """Cheap scoring with hard filters and boosts, then the same cascade logic."""
        s = np.array(self.model.fold_in(H), dtype=np.float32, copy=True)
        if boost is not None:
            s += boost[None, :].astype(np.float32)
        if allowed is not None:
            s[:, ~allowed] = -np.inf
        mask_seen(s, H, None)
        ids, scores = top_k(s, k, None)
        ids = np.where(np.isfinite(scores), ids, -1)
        ms = (time.perf_counter() - t0) * 1e3
        return CascadeAnswer(
            ids[0], scores[0], False, "constrained", float(relative_margin(scores)[0]),
            {"cheap_ms": ms},
        )  # fmt: skip

    def _describe(self, items: list[int], scores: np.ndarray) -> list[dict[str, Any]]:
        rows = []
        for rank, i in enumerate(items):
            score = float(scores[rank]) if rank < len(scores) else math.nan
            rows.append(
                {
                    "rank": rank + 1,
                    "item": str(self.ds.items_vocab.ids[i]),
                    "title": str(self.evidence.titles[i]),
                    "year": self.evidence.years[i],
                    "genres": str(self._genres[i]) if self._genres is not None else "",
                    "score": score if math.isfinite(score) else None,
                }
            )
        return rows


def fit_cheap_model(ds: Dataset, name: str = "ease") -> Recommender:
    """The cheap stage: EASE (l2=300) by default, any registered model by name."""
    from frugalrec.models.registry import model_class

    cls = model_class(name)
    if cls.uses_item_vectors:
        raise ValueError(f"model {name!r} needs item vectors; the LLM tier uses a CF model")
    return (cls(l2=DEFAULT_EASE_L2) if name == "ease" else cls()).fit(ds)
