"""EASE (Steck, WWW 2019): closed-form item-item regression with a zero diagonal, and its
dropout-regularised relatives DLAE / EDLAE (Steck, NeurIPS 2020).

All three solve ``min ||X - X B||^2 + ||Lambda^(1/2) B||^2`` in closed form from the Gram
matrix ``G = X^T X``; they differ in the penalty ``Lambda`` and the diagonal constraint:

* EASE: ``Lambda = l2 I``, ``diag(B) = 0``.
* DLAE (denoising linear autoencoder): dropout with probability ``p`` on the input is, in
  expectation, the penalty ``Lambda = p / (1 - p) dMat(diag(G)) + l2 I``, without the
  diagonal constraint: ``B = (G + Lambda)^-1 G = I - (G + Lambda)^-1 Lambda``.
* EDLAE (emphasised DLAE, full rank): the same penalty with the dropped-out entries
  emphasised, whose full-rank solution is EASE's formula with that ``Lambda``: popular
  items (large ``G_ii``) are regularised more, which EASE's one constant cannot do.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender, RecommenderConfig
from frugalrec.models.recency import RecencyOptions, RecencyWeighted
from frugalrec.privacy.dp import DPOptions, private_gram


@dataclasses.dataclass(frozen=True, kw_only=True)
class EASEConfig(RecommenderConfig, DPOptions, RecencyOptions):
    """``l2``: ridge penalty lambda (ml-100k's best lies in the hundreds); ``dp_*``: the
    Gram matrix is released with differential privacy (frugalrec.privacy.dp);
    ``recency_*``: decayed history weights for known users (frugalrec.models.recency)."""

    l2: float = 500.0


class EASERecommender(RecencyWeighted, Recommender):
    name = "ease"
    config_cls = EASEConfig

    def _penalty(self, gram_diag: np.ndarray) -> np.ndarray:
        """The diagonal of ``Lambda`` (float64 [n_items]) for the Gram diagonal."""
        return np.full_like(gram_diag, self.config.l2)  # type: ignore[attr-defined]

    def _check_config(self) -> None:
        if self.config.l2 <= 0:  # type: ignore[attr-defined]
            raise ValueError(f"{self.name}: l2 must be > 0, got {self.config.l2}")  # type: ignore[attr-defined]

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        self._check_config()
        cfg: EASEConfig = self.config  # type: ignore[assignment]
        cfg.check_dp()
        self._fit_recency(dataset)
        G = private_gram(X, cfg)
        if cfg.dp_epsilon is not None:
            # The cold-start fallback must not use the exact counts either.
            self.item_popularity_ = np.maximum(np.diag(G), 0.0).astype(np.float32)
        lam = self._penalty(np.maximum(np.diag(G).astype(np.float64), 0.0))
        G[np.diag_indices_from(G)] += lam
        self.weights_ = self._solve(np.linalg.inv(G), lam).astype(np.float32)

    def _solve(self, P: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """``B`` from ``P = (G + Lambda)^-1``: the zero-diagonal solution."""
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        return B

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
        return {"weights": self.weights_, **self._recency_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = state["weights"]
        self._set_recency_state(state, self.weights_.shape[0])


@dataclasses.dataclass(frozen=True, kw_only=True)
class EDLAEConfig(EASEConfig):
    """``dropout``: input dropout probability ``p`` in [0, 1) whose expected effect is the
    per-item penalty ``p / (1 - p) G_ii``; ``l2``: the constant part of the penalty (small:
    the dropout term does most of the regularising)."""

    l2: float = 10.0
    dropout: float = 0.33


class EDLAERecommender(EASERecommender):
    """Emphasised denoising linear autoencoder, full rank (zero diagonal)."""

    name = "edlae"
    config_cls = EDLAEConfig

    def _check_config(self) -> None:
        cfg: EDLAEConfig = self.config  # type: ignore[assignment]
        if cfg.l2 < 0 or not 0 <= cfg.dropout < 1 or (cfg.l2 == 0 and cfg.dropout == 0):
            raise ValueError(
                f"{self.name}: need l2 >= 0, 0 <= dropout < 1 and one of them > 0, got "
                f"l2={cfg.l2}, dropout={cfg.dropout}"
            )

    def _penalty(self, gram_diag: np.ndarray) -> np.ndarray:
        cfg: EDLAEConfig = self.config  # type: ignore[assignment]
        # An item nobody interacted with has G_ii = 0: the constant keeps G + Lambda invertible.
        return cfg.dropout / (1.0 - cfg.dropout) * gram_diag + max(cfg.l2, 1e-3)


class DLAERecommender(EDLAERecommender):
    """Denoising linear autoencoder: the dropout penalty, no diagonal constraint."""

    name = "dlae"

    def _solve(self, P: np.ndarray, lam: np.ndarray) -> np.ndarray:
        # B = (G + Lambda)^-1 G = I - P Lambda; the diagonal stays (seen items are masked).
        B = -P * lam[None, :]
        B[np.diag_indices_from(B)] += 1.0
        return B
