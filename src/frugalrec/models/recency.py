"""Recency: time-decayed history weights on the user side of history-linear models.

Models whose scores are linear in the user's history row (EASE, ItemKNN, the hybrid, the
linear autoencoders, GF-CF, RP3beta) can read a *weighted* row instead of a binary one:
``s_u = w_u B`` with ``w_ui = 0.5 ** (age_ui / half_life)``. The item-item model ``B`` is
trained exactly as before; only what a known user's profile sums changes, so tastes a user
has moved away from count less. This matters on the ``temporal`` and ``leave-one-out``
protocols, where the items to predict are the user's next ones.

Age is measured from each user's own latest interaction (an inactive user's profile does
not fade to nothing), either in interactions (``recency_unit="items"``: the 10th most
recent item is 9 steps old; robust to how bursty timestamps are, which on ml-100k they are:
many users rate dozens of films in one session) or in days (``"days"``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset

RECENCY_UNITS = ("items", "days")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecencyOptions:
    """Config fields mixed into the configs of history-linear models.

    ``recency_half_life``: a history item's weight halves every this many units of age
    (0 = off: binary history). ``recency_unit``: ``items`` (age = how many of the user's
    interactions are newer) or ``days``. Needs a Dataset with timestamps at fit time.
    """

    recency_half_life: float = 0.0
    recency_unit: str = "items"

    def check_recency(self, dataset: Dataset | None) -> None:
        """Raise ValueError for an invalid setting, or one the data cannot support."""
        if self.recency_half_life < 0:
            raise ValueError(f"recency_half_life must be >= 0, got {self.recency_half_life!r}")
        if self.recency_unit not in RECENCY_UNITS:
            raise ValueError(
                f"recency_unit must be one of {RECENCY_UNITS}, got {self.recency_unit!r}"
            )
        if self.recency_half_life > 0 and (dataset is None or not dataset.has_timestamps):
            # Silently falling back to binary histories would report a recency model that
            # never was one.
            raise ValueError(
                "recency_half_life > 0 needs interactions with timestamps (fit on a Dataset "
                "loaded with a timestamp column)"
            )


def time_decay_weights(dataset: Dataset, half_life: float, unit: str = "days") -> sp.csr_matrix:
    """CSR float32 [n_users, n_items] of ``0.5 ** (age / half_life)``, age measured from each
    user's latest interaction in ``unit`` (``days`` or ``items``). A repeated (user, item)
    pair keeps its most recent weight."""
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0, got {half_life!r}")
    u = np.asarray(dataset.user, dtype=np.int64)
    i = np.asarray(dataset.item, dtype=np.int64)
    t = np.asarray(dataset.timestamp, dtype=np.int64)
    if unit == "days":
        latest = np.full(dataset.n_users, np.iinfo(np.int64).min)
        np.maximum.at(latest, u, t)
        age = (latest[u] - t).astype(np.float64) / 86400.0
    elif unit == "items":
        # Newest first within each user; equal timestamps by item index, so the order is
        # deterministic whatever order the file listed them in.
        order = np.lexsort((-i, -t, u))
        su = u[order]
        starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
        counts = np.diff(np.r_[starts, len(su)])
        age = np.empty(len(u), dtype=np.float64)
        age[order] = np.arange(len(su)) - np.repeat(starts, counts)
    else:
        raise ValueError(f"unit must be one of {RECENCY_UNITS}, got {unit!r}")
    w = np.power(0.5, age / half_life)
    # Keep the largest (most recent) weight of a repeated pair instead of summing them.
    order = np.lexsort((-w, i, u))
    u, i, w = u[order], i[order], w[order]
    first = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1])]
    return sp.csr_matrix(
        (w[first].astype(np.float32), (u[first], i[first])),
        shape=(dataset.n_users, dataset.n_items),
        dtype=np.float32,
    )


class RecencyWeighted:
    """Mixin for a :class:`~frugalrec.models.base.Recommender` whose ``fold_in`` is linear in
    the history row: known users are scored from their decayed history when the config asks.

    ``fold_in`` of an unordered CSR history stays binary (a CSR row carries no times).
    """

    user_weights_: sp.csr_matrix | None

    def _fit_recency(self, dataset: Dataset | None) -> None:
        cfg = self.config  # type: ignore[attr-defined]
        cfg.check_recency(dataset)
        self.user_weights_ = None
        if cfg.recency_half_life > 0:
            assert dataset is not None
            self.user_weights_ = time_decay_weights(
                dataset, cfg.recency_half_life, cfg.recency_unit
            )

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        W = getattr(self, "user_weights_", None)
        if W is None:
            return super()._score_known(users)  # type: ignore[misc, no-any-return]
        return self.fold_in(W[users])  # type: ignore[attr-defined, no-any-return]

    def _recency_state(self) -> dict[str, np.ndarray]:
        W = getattr(self, "user_weights_", None)
        if W is None:
            return {}
        return {"rw_data": W.data, "rw_indices": W.indices, "rw_indptr": W.indptr}

    def _set_recency_state(self, state: dict[str, np.ndarray], n_items: int) -> None:
        self.user_weights_ = None
        if "rw_data" in state:
            n = len(state["rw_indptr"]) - 1
            self.user_weights_ = sp.csr_matrix(
                (state["rw_data"], state["rw_indices"], state["rw_indptr"]), shape=(n, n_items)
            )
