"""The online path of one ``PipelineConfig``: score or retrieve -> top-K -> [re-rank].

Every call records per-stage wall seconds, so the same object serves requests and is
profiled by ``bench``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import scipy.sparse as sp

from frugalrec.models.base import Recommender, mask_seen, top_k
from frugalrec.pipeline.config import PipelineConfig


class RecommendPipeline:
    """A fitted model plus its retrieval structure, answering batches of histories.

    ``retrieval="exact"`` with a dot-product model (``user_vectors``/``item_matrix``)
    searches an :class:`~frugalrec.pipeline.retrieval.ExactRetriever`: the code the exact
    scaling curves measure, so what the planner extrapolates is what serves. Other models
    score every item (``fold_in``) and select with :func:`~frugalrec.models.base.top_k`;
    ``hnsw``/``ivfpq`` need a dot-product model and search an index. Seen items are always
    excluded; every path applies the same tie policy.
    """

    def __init__(self, config: PipelineConfig, model: Recommender) -> None:
        self.config = config
        self.model = model
        self.retriever: Any = None
        self.stage_seconds: dict[str, list[float]] = defaultdict(list)

    def build(self) -> RecommendPipeline:
        """Build the retrieval index (exact or ANN) when the model has a dot-product view.
        Returns ``self``."""
        items = self.model.item_matrix()
        if self.config.retrieval == "exact" and items is None:
            return self
        if items is None:
            raise ValueError(
                f"retrieval {self.config.retrieval!r} needs a dot-product model; "
                f"{self.model.name!r} only supports exact scoring"
            )
        from frugalrec.pipeline.retrieval import config_from_dict, make_retriever

        cfg = config_from_dict({"kind": self.config.retrieval, **self.config.retrieval_config})
        self.retriever = make_retriever(cfg).build(np.ascontiguousarray(items, dtype=np.float32))
        return self

    def recommend(
        self, history: sp.csr_matrix, k: int | None = None, items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (int64 [n, k], float32 [n, k]) for CSR histories [n, n_items]."""
        k = k or self.config.k
        history = sp.csr_matrix(history, dtype=np.float32)
        if self.retriever is not None and items is None:
            t0 = time.perf_counter()
            uv = self.model.user_vectors(history)
            t1 = time.perf_counter()
            ids, scores = self.retriever.search(np.ascontiguousarray(uv, np.float32), k, history)
            t2 = time.perf_counter()
            self.stage_seconds["user_vector"].append(t1 - t0)
            self.stage_seconds["retrieve"].append(t2 - t1)
            return ids, scores
        t0 = time.perf_counter()
        s = self.model.fold_in(history)
        if items is not None:
            s = s[:, items]
        s = np.array(s, dtype=np.float32, copy=True)
        t1 = time.perf_counter()
        mask_seen(s, history, items)
        ids, scores = top_k(s, k, items)
        ids = np.where(np.isfinite(scores), ids, -1)
        t2 = time.perf_counter()
        self.stage_seconds["score"].append(t1 - t0)
        self.stage_seconds["topk"].append(t2 - t1)
        return ids, scores

    def reset_timings(self) -> None:
        self.stage_seconds.clear()
