"""EASE (Steck, WWW 2019): closed-form item-item regression with a zero diagonal."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender, RecommenderConfig
from frugalrec.privacy.dp import DPOptions, private_gram


@dataclasses.dataclass(frozen=True, kw_only=True)
class EASEConfig(RecommenderConfig, DPOptions):
    """``l2``: ridge penalty lambda (ml-100k's best lies in the hundreds); ``dp_*``: the
    Gram matrix is released with differential privacy (frugalrec.privacy.dp)."""

    l2: float = 500.0


class EASERecommender(Recommender):
    name = "ease"
    config_cls = EASEConfig

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        if self.config.l2 <= 0:  # type: ignore[attr-defined]
            raise ValueError(f"ease: l2 must be > 0, got {self.config.l2}")  # type: ignore[attr-defined]
        cfg: EASEConfig = self.config  # type: ignore[assignment]
        cfg.check_dp()
        G = private_gram(X, cfg)
        if cfg.dp_epsilon is not None:
            # The cold-start fallback must not use the exact counts either.
            self.item_popularity_ = np.maximum(np.diag(G), 0.0).astype(np.float32)
        G[np.diag_indices_from(G)] += cfg.l2
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.weights_ = B.astype(np.float32)

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray(
            sp.csr_matrix(history, dtype=np.float32) @ self.weights_, dtype=np.float32
        )

    def _item_representation(self) -> np.ndarray:
        return self.weights_.T

    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        # Sum of history_len rows of the dense [n_items, n_items] weight matrix per user.
        n = float(self.n_items_)
        return 2.0 * batch * history_len * n, 4.0 * batch * (history_len + 1) * n

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = state["weights"]
