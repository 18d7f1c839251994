"""Choosing blends on valid: which 2-3 models to combine and with what weights.

The members are the best models by valid NDCG@10 (each with its config tuned on valid);
every pair of the top three and the triple are tried, their weights on a simplex grid. A
blend is kept only where its best valid NDCG@10 beats the best of its own members: the
grid's corners are the members themselves, so a blend that does not help cannot win. The
test split is never read here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalrec.data.splits import Split
from frugalrec.evaluate.metrics import per_user_metrics
from frugalrec.models.base import RecommenderConfig, mask_seen, top_k
from frugalrec.models.blend import MAX_MEMBERS, BlendConfig, standardise_rows
from frugalrec.models.registry import model_class

# Valid users scored at once for the search: members x users x items float32 stays under
# this many entries (about 256 MB); more users are subsampled (seeded).
_MAX_SCORE_ENTRIES = 64_000_000
NOT_BLENDABLE = ("pop", "blend")


@dataclass
class BlendSearch:
    """The outcome of one search: the chosen blend (or None) and every trial."""

    config: BlendConfig | None
    best_valid: float | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    members_valid: dict[str, float] = field(default_factory=dict)
    users: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.config is not None,
            "config": None if self.config is None else self.config.to_dict(),
            "best_valid": self.best_valid,
            "members_valid": self.members_valid,
            "valid_users": self.users,
            "reason": self.reason,
            "trials": self.trials,
        }


def simplex_grid(n: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Weight vectors of ``n`` entries, multiples of ``step``, summing to 1, all > 0."""
    units = round(1 / step)
    out = []
    for combo in itertools.product(range(1, units), repeat=n):
        if sum(combo) == units:
            out.append(tuple(round(c * step, 10) for c in combo))
    return out


def search_blends(
    split: Split,
    candidates: Sequence[tuple[str, RecommenderConfig, float]],
    item_vectors: np.ndarray | None = None,
    step: float = 0.1,
    metric: str = "ndcg@10",
    seed: int = 42,
) -> BlendSearch:
    """Best blend of the top-3 ``candidates`` (name, tuned config, valid metric) on valid.

    Members are fitted on train; valid users' scores are standardised per user (as
    :class:`~frugalrec.models.blend.BlendRecommender` does), seen train items masked, and
    the weighted sums ranked with the one ``top_k``. Returns the best blend whose valid
    ``metric`` beats its best member's, or ``config=None`` with the reason.
    """
    pool = sorted(
        (c for c in candidates if c[0] not in NOT_BLENDABLE and c[2] is not None),
        key=lambda c: -c[2],
    )[:MAX_MEMBERS]
    if len(pool) < 2:
        return BlendSearch(None, None, reason="fewer than two blendable models")
    k = int(metric.split("@")[1])
    relevant = split.valid
    cand = split.valid_candidates
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    n_items = split.dataset.n_items
    cap = max(200, _MAX_SCORE_ENTRIES // (n_items * len(pool)))
    if len(users) > cap:
        users = np.sort(np.random.default_rng(seed).choice(users, size=cap, replace=False))
    train = split.train_dataset(with_valid=False)
    history = split.train[users]
    scores = {}
    for name, cfg, _ in pool:
        cls = model_class(name)
        model = cls(cfg).fit(train, item_vectors=item_vectors if cls.uses_item_vectors else None)
        z = standardise_rows(model.score(users))
        scores[name] = z if cand is None else z[:, cand]
    rel = relevant[users]

    def valid_metric(weights: Sequence[float], names: Sequence[str]) -> float:
        s = np.zeros_like(scores[names[0]])
        for w, name in zip(weights, names, strict=True):
            s += np.float32(w) * scores[name]
        mask_seen(s, history, cand)
        top, _ = top_k(s, k, cand)
        return float(np.mean(per_user_metrics(top, rel, k)[metric]))

    # Members scored by the same code as the blends, so the comparison is like for like.
    members_valid = {name: valid_metric([1.0], [name]) for name, _, _ in pool}
    trials: list[dict[str, Any]] = []
    best: tuple[float, tuple[str, ...], tuple[float, ...]] | None = None
    subsets = [c for r in range(2, len(pool) + 1) for c in itertools.combinations(pool, r)]
    for subset in subsets:
        names = tuple(c[0] for c in subset)
        for weights in simplex_grid(len(names), step):
            value = valid_metric(weights, names)
            trials.append({"members": list(names), "weights": list(weights), metric: value})
            floor = max(members_valid[n] for n in names)
            if value > floor and (best is None or value > best[0]):
                best = (value, names, weights)
    if best is None:
        return BlendSearch(
            None,
            None,
            trials,
            members_valid,
            len(users),
            reason="no blend beat its best member on valid",
        )
    value, names, weights = best
    configs = {c[0]: c[1] for c in pool}
    config = BlendConfig(
        members=[{"model": n, "config": configs[n].to_dict()} for n in names],
        weights=list(weights),
    )
    return BlendSearch(config, value, trials, members_valid, len(users), reason="beat members")
