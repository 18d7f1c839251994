"""One evaluation run: tune every model on valid, refit on train+valid, score on test."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalrec._io import atomic_path
from frugalrec.data.splits import Split
from frugalrec.evaluate.blend import BlendSearch, search_blends
from frugalrec.evaluate.protocol import (
    KS,
    EvalResult,
    evaluate_model,
    genre_features,
    grid_configs,
    tune,
)
from frugalrec.models.base import Recommender
from frugalrec.models.registry import GRIDS, model_class


@dataclass
class ModelRun:
    """Everything ``frugalrec evaluate`` reports about one model."""

    model: str
    config: dict[str, Any]
    result: EvalResult
    fit_seconds: float
    tune_seconds: float
    grid: dict[str, list[Any]]
    trials: list[dict[str, Any]]
    best_valid: float | None
    fitted: Recommender | None = field(default=None, repr=False)
    chosen: str | None = None  # for ``auto``: the model it picked
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "config": self.config,
            "metrics": self.result.metrics,
            "ci95": {k: list(v) for k, v in self.result.ci95.items()},
            "fit_seconds": self.fit_seconds,
            "tuning": {
                "grid": self.grid,
                "metric": "ndcg@10",
                "best_valid": self.best_valid,
                "trials": self.trials,
                "seconds": self.tune_seconds,
            },
            "test_users": len(self.result.users),
        }
        if self.chosen is not None:
            out["chosen"] = self.chosen
        out.update(self.extra)
        return out


def run_models(
    split: Split,
    models: Sequence[str],
    do_tune: bool = True,
    ks: Sequence[int] = KS,
    progress: Callable[[str, int], None] | None = None,
    n_boot: int = 1000,
    seed: int = 42,
    item_vectors: np.ndarray | None = None,
    recommend: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
    valid_for_all: bool = False,
    notes: dict[str, Any] | None = None,
) -> list[ModelRun]:
    """Tune (optional), refit and test each named model; ``progress(label, steps)`` ticks.

    The config with the best valid NDCG@10 is refitted on train+valid; test metrics use
    full ranking (or the split's candidate restriction) with bootstrap CIs over users.
    ``item_vectors`` float32 [n_items, d] feed the text-aware models. ``recommend`` (an
    Engine's) ranks in place of ``model.recommend``, see :func:`evaluate_model`.
    ``valid_for_all``: also score a model with a single config on valid (``auto`` compares
    every model by its valid NDCG@10). ``blend`` in ``models`` searches blends of the others
    on valid (:func:`frugalrec.evaluate.blend.search_blends`); one is reported if it helps,
    and the whole search (kept or not) goes to ``notes["blend_search"]``.
    """
    features = genre_features(split.dataset)
    runs = []
    for name in models:
        if name == "blend":
            continue
        cls = model_class(name)
        fit_kwargs = {"item_vectors": item_vectors} if cls.uses_item_vectors else {}
        if cls.uses_item_vectors and item_vectors is None:
            raise ValueError(f"model {name!r} needs item vectors: choose an --encoder")
        grid = usable_grid(name, split) if do_tune else {}
        configs = grid_configs(cls.config_cls(), grid)
        t0 = time.perf_counter()
        if len(configs) > 1 or valid_for_all:

            def on_trial(_trial: dict[str, Any], label: str = name) -> None:
                if progress:
                    progress(label, 1)

            tuned = tune(
                cls, configs, split, fit_kwargs=fit_kwargs, on_trial=on_trial, recommend=recommend
            )
            best, best_valid, trials = tuned.best_config, tuned.best_valid, tuned.trials
        else:
            best, best_valid, trials = configs[0], None, []
            if progress:
                progress(name, 1)
        tune_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        model = cls(best).fit(split.train_dataset(with_valid=True), **fit_kwargs)
        fit_s = time.perf_counter() - t1
        res = evaluate_model(
            model,
            split,
            "test",
            ks=ks,
            features=features,
            rng=np.random.default_rng(seed),
            n_boot=n_boot,
            recommend=recommend,
        )
        if progress:
            progress(name, 1)
        runs.append(
            ModelRun(name, best.to_dict(), res, fit_s, tune_s, grid, trials, best_valid, model)
        )
    if "blend" in models:
        blend, found = run_blend(split, runs, ks, features, n_boot, seed, item_vectors, recommend)
        if notes is not None:
            notes["blend_search"] = found.to_dict()
        if progress:
            progress("blend", 2)
        if blend is not None:
            runs.append(blend)
    return runs


def run_blend(
    split: Split,
    runs: Sequence[ModelRun],
    ks: Sequence[int],
    features: np.ndarray | None,
    n_boot: int,
    seed: int,
    item_vectors: np.ndarray | None,
    recommend: Callable[..., tuple[np.ndarray, np.ndarray]] | None,
) -> tuple[ModelRun | None, BlendSearch]:
    """Search blends of ``runs``' tuned models on valid; refit and test the best one if it
    beats its members on valid (else None), and return the search with it."""
    from frugalrec.models.blend import BlendRecommender

    t0 = time.perf_counter()
    pool = [
        (r.model, model_class(r.model).config_cls.from_dict(r.config), r.best_valid)
        for r in runs
        if r.best_valid is not None
    ]
    found = search_blends(split, pool, item_vectors=item_vectors, seed=seed)  # type: ignore[arg-type]
    tune_s = time.perf_counter() - t0
    if found.config is None:
        return None, found
    t1 = time.perf_counter()
    model = BlendRecommender(found.config).fit(
        split.train_dataset(with_valid=True), item_vectors=item_vectors
    )
    fit_s = time.perf_counter() - t1
    res = evaluate_model(
        model,
        split,
        "test",
        ks=ks,
        features=features,
        rng=np.random.default_rng(seed),
        n_boot=n_boot,
        recommend=recommend,
    )
    grid = {"members": "every pair of the top-3 valid models and the triple", "weights": 0.1}
    run = ModelRun(
        "blend",
        found.config.to_dict(),
        res,
        fit_s,
        tune_s,
        grid,  # type: ignore[arg-type]
        found.trials,
        found.best_valid,
        model,
    )
    run.extra["blend_search"] = {k: v for k, v in found.to_dict().items() if k != "trials"}
    return run, found


def auto_models(split: Split, text: bool) -> list[str]:
    """Every registered model that can score ``split``'s candidates, plus ``blend``.

    Where the test ranks only items nobody interacted with (cold-item), only text-aware
    models can; text-aware models need ``text`` (an encoder that loaded).
    """
    from frugalrec.models.registry import available_models

    cold = split.test_candidates is not None
    out = []
    for name in available_models():
        if name == "blend":
            continue
        uses_text = model_class(name).uses_item_vectors
        if (uses_text and not text) or (cold and not uses_text):
            continue
        out.append(name)
    return [*out, "blend"]


def choose_auto(runs: Sequence[ModelRun]) -> ModelRun:
    """The run with the best valid NDCG@10 (test never consulted), relabelled ``auto``."""
    scored = [r for r in runs if r.best_valid is not None]
    if not scored:
        raise ValueError("auto: no model has a valid score")
    best = max(scored, key=lambda r: r.best_valid)  # type: ignore[arg-type, return-value]
    return dataclasses.replace(best, model="auto", chosen=best.model, extra=dict(best.extra))


def usable_grid(name: str, split: Split) -> dict[str, list[Any]]:
    """``name``'s tuning grid, less the recency options when the data has no timestamps
    (an external split's files carry none: recency cannot be computed there)."""
    grid = GRIDS.get(name, {})
    if split.dataset.has_timestamps:
        return dict(grid)
    return {k: v for k, v in grid.items() if not k.startswith("recency_")}


def n_steps(models: Sequence[str], split: Split, do_tune: bool = True) -> int:
    """Progress-bar length for :func:`run_models`."""
    total = 0
    for name in models:
        if name == "blend":
            total += 2
            continue
        configs = grid_configs(
            model_class(name).config_cls(), usable_grid(name, split) if do_tune else {}
        )
        total += (len(configs) if len(configs) > 1 else 1) + 1
    return total


def write_recs(run: ModelRun, split: Split, path: str | Path, k: int = 20) -> int:
    """Write ``user,item,rank,score`` (original ids, rank 1 = best) for every test user."""
    ds = split.dataset
    top, scores = run.result.top[:, :k], run.result.scores[:, :k]
    users = np.repeat(run.result.users, top.shape[1])
    ranks = np.tile(np.arange(1, top.shape[1] + 1), len(run.result.users))
    keep = top.ravel() >= 0
    frame = pd.DataFrame(
        {
            "user": ds.users_vocab.external(users[keep]),
            "item": ds.items_vocab.external(top.ravel()[keep]),
            "rank": ranks[keep],
            "score": scores.ravel()[keep],
        }
    )
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    return len(frame)
