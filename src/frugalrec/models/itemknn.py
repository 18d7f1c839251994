"""Item-based k-nearest neighbours with cosine similarity and shrinkage."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender, RecommenderConfig, top_k
from frugalrec.models.recency import RecencyOptions, RecencyWeighted
from frugalrec.privacy.dp import DPOptions, private_gram

_BLOCK = 2048


@dataclasses.dataclass(frozen=True, kw_only=True)
class ItemKNNConfig(RecommenderConfig, DPOptions, RecencyOptions):
    """``neighbors``: similarities kept per item; ``shrink``: added to the cosine
    denominator (damps similarities backed by few co-occurrences); ``alpha``: asymmetric
    cosine exponent (0.5 = plain cosine); ``dp_*``: co-occurrences and counts are released
    with differential privacy (frugalrec.privacy.dp; the full Gram matrix is then built);
    ``recency_*``: decayed history weights for known users (frugalrec.models.recency)."""

    neighbors: int = 100
    shrink: float = 10.0
    alpha: float = 0.5


class ItemKNNRecommender(RecencyWeighted, Recommender):
    name = "itemknn"
    config_cls = ItemKNNConfig

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        cfg: ItemKNNConfig = self.config  # type: ignore[assignment]
        if cfg.neighbors < 1 or cfg.shrink < 0 or not 0 <= cfg.alpha <= 1:
            raise ValueError(f"itemknn: invalid config {cfg}")
        cfg.check_dp()
        self._fit_recency(dataset)
        n_items = X.shape[1]
        Xc = sp.csc_matrix(X)
        counts = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        G = None
        if cfg.dp_epsilon is not None:
            # Post-processing of the noisy release: co-occurrences are never negative, and a
            # count floor of 1 keeps noise on a near-zero count from blowing up a cosine.
            G = np.maximum(private_gram(X, cfg), 0.0)
            self.item_popularity_ = np.diag(G).astype(np.float32)
            counts = np.maximum(np.diag(G), 1.0)
        left = np.power(np.maximum(counts, 1e-12), cfg.alpha)
        right = np.power(np.maximum(counts, 1e-12), 1.0 - cfg.alpha)
        k = min(cfg.neighbors, n_items - 1)
        rows, cols, vals = [], [], []
        XT = sp.csr_matrix(Xc.T)
        # Column blocks keep memory at n_items x BLOCK while staying vectorised.
        for start in range(0, n_items, _BLOCK):
            stop = min(n_items, start + _BLOCK)
            # [n_items, b] co-occurrence counts
            co = (XT @ Xc[:, start:stop]).toarray() if G is None else G[:, start:stop]
            sim = co / (left[:, None] * right[None, start:stop] + cfg.shrink + 1e-12)
            sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
            if k < n_items:
                # neighbours of each column item, under the one tie policy
                top = top_k(np.ascontiguousarray(sim.T, dtype=np.float32), k)[0].T
            else:
                top = np.tile(np.arange(n_items)[:, None], (1, stop - start))
            v = np.take_along_axis(sim, top, axis=0)
            rows.append(top.ravel())
            cols.append(np.tile(np.arange(start, stop), top.shape[0]))
            vals.append(v.ravel())
        S = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_items, n_items),
        )
        S.eliminate_zeros()
        self.similarity_ = S

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray(
            (sp.csr_matrix(history, dtype=np.float32) @ self.similarity_).toarray(), np.float32
        )

    def _item_representation(self) -> np.ndarray:
        return self.similarity_.T.toarray()

    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        # Sparse rows of ~neighbors entries (value + index: 8 bytes) per history item.
        nnz_row = self.similarity_.nnz / max(1, self.n_items_)
        work = batch * history_len * nnz_row
        return 2.0 * work, 8.0 * work + 4.0 * batch * self.n_items_

    def _state(self) -> dict[str, np.ndarray]:
        S = self.similarity_
        return {
            "sim_data": S.data,
            "sim_indices": S.indices,
            "sim_indptr": S.indptr,
            **self._recency_state(),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n = len(state["sim_indptr"]) - 1
        self.similarity_ = sp.csr_matrix(
            (state["sim_data"], state["sim_indices"], state["sim_indptr"]), shape=(n, n)
        )
        self._set_recency_state(state, n)
