"""Training-free graph models over the user-item bipartite graph: GF-CF and RP3beta.

Both end as an item-item matrix ``W`` and score ``s_u = x_u W`` (linear in the history
row, so recency weights apply, see frugalrec.models.recency).

* GF-CF (Shen et al., CIKM 2021, "How Powerful is Graph Convolution for Recommendation?"):
  the normalised interaction matrix ``R~ = D_u^-1/2 X D_i^-1/2`` gives a linear low-pass
  filter ``R~^T R~`` (what LightGCN's propagation converges to, without training) plus
  ``alpha`` x an ideal low-pass filter onto the top-``k`` right singular vectors ``V_k`` of
  ``R~``: ``W = R~^T R~ + alpha D_i^-1/2 V_k V_k^T D_i^1/2``. ``V_k`` are the top
  eigenvectors of the dense item-item ``R~^T R~``, so no randomised SVD is needed.
* RP3beta (Paudel et al., ACM TiiS 2017; strong in Dacrema et al.'s reproducibility study):
  the two-step random walk item -> user -> item, ``W = P_iu P_ui``, each transition
  probability raised to ``alpha``, the column of target item j divided by ``pop_j^beta``
  (de-biasing popular destinations), the ``neighbors`` largest entries per row kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.models.base import Recommender, RecommenderConfig, top_k
from frugalrec.models.recency import RecencyOptions, RecencyWeighted

_BLOCK = 2048


def _inv_power(counts: np.ndarray, exponent: float) -> np.ndarray:
    """``counts ** -exponent`` with 0 where a count is 0 (float64 [n])."""
    out = np.zeros(len(counts), dtype=np.float64)
    nz = counts > 0
    out[nz] = np.power(counts[nz].astype(np.float64), -exponent)
    return out


class _ItemItemModel(RecencyWeighted, Recommender):
    """Scoring, cost and persistence shared by models that end in one item-item matrix
    ``weights_`` (dense float32 ndarray or CSR)."""

    weights_: np.ndarray | sp.csr_matrix

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        s = sp.csr_matrix(history, dtype=np.float32) @ self.weights_
        return np.asarray(s.toarray() if isinstance(s, sp.spmatrix) else s, dtype=np.float32)

    def _item_representation(self) -> np.ndarray:
        W = self.weights_
        return np.asarray(W.T.toarray() if isinstance(W, sp.spmatrix) else W.T, np.float32)

    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        W = self.weights_
        n = float(self.n_items_)
        if isinstance(W, sp.spmatrix):
            # Sparse rows (value + index: 8 bytes per entry) per history item.
            work = batch * history_len * W.nnz / max(1, self.n_items_)
            return 2.0 * work, 8.0 * work + 4.0 * batch * n
        return 2.0 * batch * history_len * n, 4.0 * batch * (history_len + 1) * n

    def _state(self) -> dict[str, np.ndarray]:
        W = self.weights_
        if isinstance(W, sp.spmatrix):
            arrays = {"w_data": W.data, "w_indices": W.indices, "w_indptr": W.indptr}
        else:
            arrays = {"weights": W}
        return {**arrays, **self._recency_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        if "weights" in state:
            self.weights_ = state["weights"]
        else:
            n = len(state["w_indptr"]) - 1
            self.weights_ = sp.csr_matrix(
                (state["w_data"], state["w_indices"], state["w_indptr"]), shape=(n, n)
            )
        self._set_recency_state(state, self.weights_.shape[0])


# ---- GF-CF ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class GFCFConfig(RecommenderConfig, RecencyOptions):
    """``k``: singular vectors in the ideal low-pass filter (the paper: 256; 0 = linear
    filter only); ``alpha``: weight of the ideal filter (the paper: 0.3)."""

    k: int = 256
    alpha: float = 0.3


class GFCFRecommender(_ItemItemModel):
    name = "gfcf"
    config_cls = GFCFConfig

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        cfg: GFCFConfig = self.config  # type: ignore[assignment]
        if cfg.k < 0 or cfg.alpha < 0:
            raise ValueError(f"gfcf: need k >= 0 and alpha >= 0, got k={cfg.k}, alpha={cfg.alpha}")
        self._fit_recency(dataset)
        n = X.shape[1]
        du = np.asarray(X.sum(axis=1)).ravel()
        di = np.asarray(X.sum(axis=0)).ravel()
        R = sp.diags(_inv_power(du, 0.5)) @ X @ sp.diags(_inv_power(di, 0.5))
        P = np.asarray((R.T @ R).toarray(), dtype=np.float64)  # [n_items, n_items]
        W = P.copy()
        k = min(cfg.k, n - 1)
        if k > 0 and cfg.alpha > 0:
            # Top-k eigenvectors of R~^T R~ = top-k right singular vectors of R~; the
            # deterministic LAPACK path (no random start vector as in ARPACK).
            _, V = scipy.linalg.eigh(P, subset_by_index=[n - k, n - 1])
            left = _inv_power(di, 0.5)[:, None] * V
            right = V * np.sqrt(di)[:, None]
            W += cfg.alpha * (left @ right.T)
        self.weights_ = W.astype(np.float32)


# ---- RP3beta --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class RP3BetaConfig(RecommenderConfig, RecencyOptions):
    """``alpha``: exponent on transition probabilities (1 = plain random walk);
    ``beta``: popularity penalty exponent on the destination item (0 = P3alpha);
    ``neighbors``: largest entries kept per item row."""

    alpha: float = 1.0
    beta: float = 0.5
    neighbors: int = 200


class RP3BetaRecommender(_ItemItemModel):
    name = "rp3beta"
    config_cls = RP3BetaConfig

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        cfg: RP3BetaConfig = self.config  # type: ignore[assignment]
        if cfg.alpha <= 0 or cfg.beta < 0 or cfg.neighbors < 1:
            raise ValueError(f"rp3beta: invalid config {cfg}")
        self._fit_recency(dataset)
        n = X.shape[1]
        du = np.asarray(X.sum(axis=1)).ravel()
        di = np.asarray(X.sum(axis=0)).ravel()
        # X is binary, so P_ui[u, j] = 1 / du[u] and P_iu[i, u] = 1 / di[i] on its support.
        P_ui = sp.csr_matrix(sp.diags(_inv_power(du, cfg.alpha)) @ X)
        P_iu = sp.csr_matrix(sp.diags(_inv_power(di, cfg.alpha)) @ X.T)
        col_scale = _inv_power(di, cfg.beta)
        k = max(1, min(cfg.neighbors, n - 1))
        rows, cols, vals = [], [], []
        # Row blocks keep memory at BLOCK x n_items while staying vectorised.
        for start in range(0, n, _BLOCK):
            stop = min(n, start + _BLOCK)
            block = np.asarray((P_iu[start:stop] @ P_ui).toarray()) * col_scale[None, :]
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0
            top = top_k(block.astype(np.float32), k)[0]
            rows.append(np.repeat(np.arange(start, stop), k))
            cols.append(top.ravel())
            vals.append(np.take_along_axis(block, top, axis=1).ravel())
        W = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
        )
        W.eliminate_zeros()
        self.weights_ = W
