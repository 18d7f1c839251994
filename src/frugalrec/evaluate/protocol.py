"""Full-ranking evaluation and validation-set tuning.

Protocol: hyper-parameters are chosen on ``valid`` (model fitted on ``train``, valid items
ranked against every item not in train). The chosen configuration is refitted on
``train + valid`` and scored on ``test`` against every item not in train or valid. Never
sampled negatives.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.data.splits import Split
from frugalrec.evaluate.metrics import (
    bootstrap_ci,
    coverage,
    intra_list_diversity,
    novelty,
    per_user_metrics,
)
from frugalrec.models.base import Recommender, RecommenderConfig

KS = (10, 20)


@dataclass
class EvalResult:
    """Metrics (means), 95% bootstrap intervals and per-user values for one model."""

    metrics: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    users: np.ndarray
    top: np.ndarray
    scores: np.ndarray
    per_user: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def genre_features(ds: Dataset) -> np.ndarray | None:
    """Genre multi-hot float32 [n_items, n_genres] (rows unit-norm) for genre-based ILD."""
    from frugalrec.text.features import attribute_block

    return attribute_block(ds, "genres")


def evaluate_lists(
    top: np.ndarray,
    relevant: sp.csr_matrix,
    item_popularity: np.ndarray,
    n_train_users: int,
    n_candidates: int,
    features: np.ndarray | None,
    ks: Iterable[int] = KS,
    rng: np.random.Generator | None = None,
    n_boot: int = 1000,
) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, np.ndarray]]:
    """Metrics for given top-K lists (rows aligned with ``relevant`` rows)."""
    rng = rng or np.random.default_rng(0)
    per_user: dict[str, np.ndarray] = {}
    means: dict[str, float] = {}
    for k in ks:
        per_user.update(per_user_metrics(top, relevant, k))
        per_user[f"novelty@{k}"] = novelty(top, k, item_popularity, n_train_users)
        if features is not None:
            per_user[f"ild@{k}"] = intra_list_diversity(top, k, features)
        means[f"coverage@{k}"] = coverage(top, k, n_candidates)
    ci: dict[str, tuple[float, float]] = {}
    for name, vals in per_user.items():
        means[name] = float(np.mean(vals))
        if n_boot > 0:
            ci[name] = bootstrap_ci(vals, rng, n_boot=n_boot)
    return means, ci, per_user


def evaluate_model(
    model: Recommender,
    split: Split,
    stage: str = "test",
    ks: Iterable[int] = KS,
    features: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    n_boot: int = 1000,
    recommend: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> EvalResult:
    """Rank for every user with ``stage`` items and compute metrics.

    ``model`` must be fitted on train (stage="valid") or train+valid (stage="test"); its
    history defines what is excluded. Candidates: the split's restriction if any, else the
    whole catalogue. ``recommend(model, users, k=, exclude_seen=, items=)`` ranks in place
    of ``model.recommend`` (an Engine's, to rank on a cluster; same lists).
    """
    ks = tuple(ks)
    relevant = split.valid if stage == "valid" else split.test
    candidates = split.valid_candidates if stage == "valid" else split.test_candidates
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if recommend is None:
        top, scores = model.recommend(users, k=max(ks), exclude_seen=True, items=candidates)
    else:
        top, scores = recommend(model, users, k=max(ks), exclude_seen=True, items=candidates)
    n_cand = split.dataset.n_items if candidates is None else len(candidates)
    means, ci, per_user = evaluate_lists(
        top,
        relevant[users],
        model.item_popularity_,
        int((np.diff(model.history_.indptr) > 0).sum()),
        n_cand,
        features,
        ks,
        rng,
        n_boot,
    )
    return EvalResult(means, ci, users, top, scores, per_user)


def grid_configs(base: RecommenderConfig, grid: dict[str, list[Any]]) -> list[RecommenderConfig]:
    """Cartesian product of ``grid`` applied to ``base`` (``[base]`` for an empty grid)."""
    if not grid:
        return [base]
    keys = list(grid)
    return [
        base.replace(**dict(zip(keys, vals, strict=True)))
        for vals in itertools.product(*grid.values())
    ]


@dataclass
class TuneResult:
    best_config: RecommenderConfig
    best_valid: float
    trials: list[dict[str, Any]]


def tune(
    make: Callable[[RecommenderConfig], Recommender],
    configs: list[RecommenderConfig],
    split: Split,
    metric: str = "ndcg@10",
    fit_kwargs: dict[str, Any] | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    recommend: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> TuneResult:
    """Fit each config on train, score on valid, keep the best by ``metric``."""
    fit_kwargs = fit_kwargs or {}
    k = int(metric.split("@")[1])
    train = split.train_dataset(with_valid=False)
    trials = []
    best: tuple[float, RecommenderConfig] | None = None
    for cfg in configs:
        t0 = time.perf_counter()
        model = make(cfg).fit(train, **fit_kwargs)
        res = evaluate_model(model, split, "valid", ks=(k,), n_boot=0, recommend=recommend)
        value = res.metrics[metric]
        trial = {"config": cfg.to_dict(), metric: value, "seconds": time.perf_counter() - t0}
        trials.append(trial)
        if on_trial:
            on_trial(trial)
        if best is None or value > best[0]:
            best = (value, cfg)
    assert best is not None
    return TuneResult(best[1], best[0], trials)
