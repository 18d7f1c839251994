"""The LLM tier of the service: the generative model the cascade calls, its re-ranker, and
one cascade per served model version.

The model comes from ``frugalrec.llm.runtime.load_llm`` (anything with the ``LLM``
protocol: the packaged runtime, a worker client, a fake in tests); nothing here depends on
where it runs. A retrain rebinds the cascade to the new version (``Cascade.rebind``): the
lock and the measured cost per token carry over, so only the first version calibrates.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from frugalrec.data.dataset import Dataset
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.pipeline.recommend import RecommendPipeline
from frugalrec.serve.settings import ServeSettings

log = logging.getLogger("frugalrec.serve")


class LLMTier:
    """``llm`` (the model, loaded here unless given) and ``cascade_for`` a model version."""

    def __init__(self, settings: ServeSettings, dataset: Dataset, llm: Any = None) -> None:
        from frugalrec.llm.reranker import LLMReranker, RerankerConfig

        if llm is None:
            from frugalrec.llm.lora import load_reranker_llm

            llm = load_reranker_llm(
                settings.llm_model, settings.llm_adapter, runtime=settings.llm_adapter_runtime
            )
        self.settings = settings
        self.llm = llm
        self.reranker = LLMReranker(
            llm,
            dataset.items,
            RerankerConfig(candidates=settings.llm_candidates, weight=settings.llm_weight),
        )

    def cascade_for(self, config: PipelineConfig, model: Any, previous: Any = None) -> Any:
        """The cascade over ``model``'s cheap pipeline (routing decisions only: the service
        runs the cheap stage itself). ``previous``: the cascade of the version being
        replaced, whose lock and calibration carry over."""
        from frugalrec.llm.cascade import Cascade, CascadeConfig
        from frugalrec.llm.registry import prior_ms_per_token

        pipeline = RecommendPipeline(config, model)
        if previous is not None:
            return previous.rebind(pipeline)
        s = self.settings
        cascade = Cascade(
            pipeline,
            self.reranker,
            CascadeConfig(
                budget_ms=s.llm_budget_ms,
                margin=s.llm_margin,
                prior_ms_per_token=prior_ms_per_token(s.llm_model),
            ),
        )
        # Budget decisions start from this machine's measured ms per prompt token, not the
        # prior (which only ever updates when the LLM fires): two passes over the most
        # popular items as history and candidates.
        popular = np.argsort(-np.asarray(model.item_popularity_), kind="stable")
        n = s.llm_candidates
        try:
            cascade.calibrate(popular[n : 2 * n], popular[:n], repeats=2)
        except Exception as exc:  # a failing model must not stop the cheap service
            log.warning("LLM calibration failed (%s); the cascade keeps its prior", exc)
        return cascade
