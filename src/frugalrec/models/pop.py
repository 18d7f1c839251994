"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender, RecommenderConfig
from frugalrec.privacy.dp import DPOptions, private_counts


@dataclasses.dataclass(frozen=True, kw_only=True)
class PopConfig(RecommenderConfig, DPOptions):
    """Only the differential-privacy option (``dp_*``, see frugalrec.privacy.dp): the
    released counts are then noisy and the ranking follows them."""


class PopRecommender(Recommender):
    name = "pop"
    config_cls = PopConfig

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        cfg: PopConfig = self.config  # type: ignore[assignment]
        cfg.check_dp()
        if cfg.dp_epsilon is not None:
            self.item_popularity_ = private_counts(X, cfg)

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.item_popularity_, (history.shape[0], self.n_items_)).copy()

    def _item_representation(self) -> np.ndarray:
        # Item-item similarity by co-occurrence is what "popular together" means here.
        return np.asarray(self.history_.T.todense(), dtype=np.float32)
