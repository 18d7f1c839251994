"""A weighted blend of two or three models' scores, each standardised per user.

``s_u = sum_m w_m z_m(u)`` where ``z_m(u)`` is member m's score row for user u, shifted
and scaled to mean 0 and standard deviation 1 over the catalogue: members score on
different scales (EASE weights, random-walk probabilities, dot products), and a per-user
standardisation makes a weight mean the same thing for every user. The weights are chosen
on valid by :func:`frugalrec.evaluate.blend.search_blends`; this class only applies them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp

from frugalrec._linalg import normalise_rows
from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender, RecommenderConfig

MAX_MEMBERS = 3


def _default_members() -> list[dict[str, Any]]:
    return [{"model": "ease", "config": {}}, {"model": "rp3beta", "config": {}}]


def _default_weights() -> list[float]:
    return [0.5, 0.5]


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlendConfig(RecommenderConfig):
    """``members``: ``[{"model": name, "config": {...}}, ...]`` (2-3 registered models, each
    with its own config as JSON); ``weights``: one non-negative weight per member."""

    members: list[dict[str, Any]] = dataclasses.field(default_factory=_default_members)
    weights: list[float] = dataclasses.field(default_factory=_default_weights)


def standardise_rows(S: np.ndarray) -> np.ndarray:
    """Rows shifted to mean 0 and scaled to std 1 (float32 [n, m]; constant rows -> 0)."""
    S = np.asarray(S, dtype=np.float32)
    mu = S.mean(axis=1, keepdims=True)
    sd = S.std(axis=1, keepdims=True)
    return np.divide(S - mu, sd, out=np.zeros_like(S), where=sd > 0)


class BlendRecommender(Recommender):
    """Weighted sum of standardised member scores; members are fitted on the same data."""

    name = "blend"
    config_cls = BlendConfig

    def _members(self) -> list[Recommender]:
        from frugalrec.models.registry import model_class

        cfg: BlendConfig = self.config  # type: ignore[assignment]
        if not isinstance(cfg.members, list) or not 2 <= len(cfg.members) <= MAX_MEMBERS:
            raise ValueError(f"blend: needs 2 to {MAX_MEMBERS} members, got {cfg.members!r}")
        if not isinstance(cfg.weights, list) or len(cfg.weights) != len(cfg.members):
            raise ValueError("blend: needs one weight per member")
        w = np.asarray(cfg.weights, dtype=np.float64)
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"blend: weights must be >= 0 with a positive sum, got {cfg.weights}")
        out = []
        for i, m in enumerate(cfg.members):
            if not isinstance(m, dict) or set(m) - {"model", "config"} or "model" not in m:
                raise ValueError(f"blend: members[{i}] must be {{'model': name, 'config': {{}}}}")
            cls = model_class(str(m["model"]))
            if cls is BlendRecommender:
                raise ValueError("blend: a member cannot be a blend")
            out.append(cls(cls.config_cls.from_dict(dict(m.get("config") or {}))))
        return out

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        members = self._members()
        data: Dataset | sp.csr_matrix = dataset if dataset is not None else X
        for m in members:
            m.fit(data, item_vectors=item_vectors if m.uses_item_vectors else None)
        self.members_ = members
        self.weights_ = np.asarray(self.config.weights, dtype=np.float32)  # type: ignore[attr-defined]

    def _combine(self, parts: list[np.ndarray]) -> np.ndarray:
        out = np.zeros_like(parts[0], dtype=np.float32)
        for w, s in zip(self.weights_, parts, strict=True):
            if w > 0:
                out += np.float32(w) * standardise_rows(s)
        return out

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        # Each member scores its own way (e.g. recency-weighted or factor-based).
        return self._combine([m._score_known(users) for m in self.members_])

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        return self._combine([m.fold_in(history) for m in self.members_])

    def _item_representation(self) -> np.ndarray:
        return np.hstack(
            [
                np.sqrt(w) * normalise_rows(m._item_representation().astype(np.float32))
                for w, m in zip(self.weights_, self.members_, strict=True)
            ]
        ).astype(np.float32)

    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        # Members' own costs, plus standardising and summing: ~4 passes over n_items each.
        flops, moved = 0.0, 0.0
        for m in self.members_:
            f, b = m.scoring_cost(history_len, batch)
            flops += f + 4.0 * batch * self.n_items_
            moved += b + 8.0 * batch * self.n_items_
        return flops, moved

    def _state(self) -> dict[str, np.ndarray]:
        return {f"m{i}.{k}": v for i, m in enumerate(self.members_) for k, v in m._state().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        members = self._members()
        for i, m in enumerate(members):
            prefix = f"m{i}."
            m.history_ = self.history_
            m.n_users_, m.n_items_ = self.n_users_, self.n_items_
            m.item_popularity_ = self.item_popularity_
            m._set_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        self.members_ = members
        self.weights_ = np.asarray(self.config.weights, dtype=np.float32)  # type: ignore[attr-defined]
