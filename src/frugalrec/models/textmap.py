"""Text-aware models: the user-profile content model and the text-to-interaction map.

Both score items through their feature vectors only (text embeddings, optionally with
attribute blocks), so an item with no interactions is scored like any other: this is what
makes cold items recommendable at all.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from frugalrec._linalg import normalise_rows
from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender, RecommenderConfig
from frugalrec.models.recency import RecencyOptions, RecencyWeighted, time_decay_weights


@dataclasses.dataclass(frozen=True, kw_only=True)
class ContentConfig(RecommenderConfig):
    """``half_life_days``: weight of a history item halves every this many days before the
    user's latest interaction (0 = plain mean; needs timestamps)."""

    half_life_days: float = 0.0


class ContentRecommender(Recommender):
    """Nearest items to the user's profile (a weighted mean of history item vectors)."""

    name = "content"
    config_cls = ContentConfig
    uses_item_vectors = True

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        assert item_vectors is not None
        cfg: ContentConfig = self.config  # type: ignore[assignment]
        if cfg.half_life_days < 0:
            raise ValueError(f"content: half_life_days must be >= 0, got {cfg.half_life_days}")
        self.item_vectors_ = normalise_rows(np.asarray(item_vectors, dtype=np.float32))
        self.profile_weights_ = X
        if cfg.half_life_days > 0 and dataset is not None and dataset.has_timestamps:
            self.profile_weights_ = time_decay_weights(dataset, cfg.half_life_days)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        return self._scores(self.profile_weights_[users])

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        return self._scores(sp.csr_matrix(history, dtype=np.float32))

    def _scores(self, weights: sp.csr_matrix) -> np.ndarray:
        return self.user_vectors(weights) @ self.item_vectors_.T

    def user_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        h = sp.csr_matrix(history, dtype=np.float32)
        return normalise_rows(np.asarray(h @ self.item_vectors_, dtype=np.float32))

    def item_matrix(self) -> np.ndarray:
        return self.item_vectors_

    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        n, d = self.item_vectors_.shape
        return (
            2.0 * batch * (history_len * d + n * d),
            4.0 * (n * d + batch * (history_len * d + n)),
        )

    def _item_representation(self) -> np.ndarray:
        return self.item_vectors_

    def _state(self) -> dict[str, np.ndarray]:
        W = self.profile_weights_
        return {
            "item_vectors": self.item_vectors_,
            "pw_data": W.data,
            "pw_indices": W.indices,
            "pw_indptr": W.indptr,
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors_ = state["item_vectors"]
        n = len(state["pw_indptr"]) - 1
        self.profile_weights_ = sp.csr_matrix(
            (state["pw_data"], state["pw_indices"], state["pw_indptr"]),
            shape=(n, self.item_vectors_.shape[0]),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextMapConfig(RecommenderConfig):
    """``l2``: ridge penalty of the feature-space map (tuned on valid; 1e3-1e5 on ml-100k)."""

    l2: float = 1e4


class TextMapRecommender(Recommender):
    """A linear map from item features to interactions, fitted in closed form.

    Scores are ``x_u F W f_i``: the user's history summed in feature space (``x_u F``),
    mapped by a learned ``d x d`` matrix ``W``, compared with the candidate's features
    ``f_i``. ``W`` minimises ``||X - X F W F_w^T||^2 + l2 ||W||^2`` over warm items
    (``F_w``), solved exactly through two ``d x d`` eigendecompositions. A constant feature
    column lets ``W`` learn a text-side popularity term, which matters most for cold items.
    Cost: fit O(n_users d^2 + d^3); one request O(|history| d + d^2 + n_items d).
    """

    name = "textmap"
    config_cls = TextMapConfig
    uses_item_vectors = True

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        assert item_vectors is not None
        cfg: TextMapConfig = self.config  # type: ignore[assignment]
        if cfg.l2 <= 0:
            raise ValueError(f"textmap: l2 must be > 0, got {cfg.l2}")
        F = np.hstack([item_vectors.astype(np.float64), np.ones((X.shape[1], 1))])
        warm = np.asarray(X.sum(axis=0)).ravel() > 0
        A = np.asarray(X @ F)  # [n_users, d]
        d1, Q1 = np.linalg.eigh(F[warm].T @ F[warm])
        d2, Q2 = np.linalg.eigh(A.T @ A)
        M = Q2.T @ (A.T @ np.asarray(X @ F)) @ Q1
        W = Q2 @ (M / (np.outer(d2, d1) + cfg.l2)) @ Q1.T
        self.features_ = F.astype(np.float32)
        # W F^T precomputed: a request is then two small matmuls.
        self.projection_ = (W @ F.T).astype(np.float32)  # [d, n_items]

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        return self.user_vectors(history) @ self.projection_

    def user_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        h = sp.csr_matrix(history, dtype=np.float32)
        return np.asarray(h @ self.features_, dtype=np.float32)

    def item_matrix(self) -> np.ndarray:
        return np.ascontiguousarray(self.projection_.T)

    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        d, n = self.projection_.shape
        return (
            2.0 * batch * (history_len * d + n * d),
            4.0 * (n * d + batch * (history_len * d + n)),
        )

    def _item_representation(self) -> np.ndarray:
        return self.projection_.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"features": self.features_, "projection": self.projection_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.features_ = state["features"]
        self.projection_ = state["projection"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class HybridConfig(RecommenderConfig, RecencyOptions):
    """EASE (``l2``) plus ``text_weight`` x the text map (``text_l2``). Cold items get
    nothing from EASE, so they are ranked by the text map alone. ``recency_*``: decayed
    history weights for known users (frugalrec.models.recency; both parts are linear in
    the history row)."""

    l2: float = 300.0
    text_l2: float = 1e4
    text_weight: float = 0.3


class HybridRecommender(RecencyWeighted, Recommender):
    """Collaborative EASE blended with the text map; the blend weight is chosen on valid
    (0 is in the grid, so on warm data the text can only be chosen if it helps)."""

    name = "hybrid"
    config_cls = HybridConfig
    uses_item_vectors = True

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        from frugalrec.models.ease import EASERecommender

        cfg: HybridConfig = self.config  # type: ignore[assignment]
        if cfg.text_weight < 0:
            raise ValueError(f"hybrid: text_weight must be >= 0, got {cfg.text_weight}")
        self._fit_recency(dataset)
        self.cf_ = EASERecommender(l2=cfg.l2).fit(X)
        self.text_ = TextMapRecommender(l2=cfg.text_l2).fit(X, item_vectors=item_vectors)

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        w = self.config.text_weight  # type: ignore[attr-defined]
        return self.cf_.fold_in(history) + np.float32(w) * self.text_.fold_in(history)

    def _item_representation(self) -> np.ndarray:
        return np.hstack([self.cf_._item_representation(), self.text_._item_representation()])

    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        a, b = (
            self.cf_.scoring_cost(history_len, batch),
            self.text_.scoring_cost(history_len, batch),
        )
        return a[0] + b[0], a[1] + b[1]

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "ease_weights": self.cf_.weights_,
            "features": self.text_.features_,
            "projection": self.text_.projection_,
            **self._recency_state(),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from frugalrec.models.ease import EASERecommender

        cfg: HybridConfig = self.config  # type: ignore[assignment]
        self.cf_ = EASERecommender(l2=cfg.l2)
        self.cf_.weights_ = state["ease_weights"]
        self.text_ = TextMapRecommender(l2=cfg.text_l2)
        self.text_.features_ = state["features"]
        self.text_.projection_ = state["projection"]
        for part in (self.cf_, self.text_):
            part.history_ = self.history_
            part.n_users_, part.n_items_ = self.n_users_, self.n_items_
            part.item_popularity_ = self.item_popularity_
        self._set_recency_state(state, self.n_items_)
