"""The ``Recommender`` interface every model implements, and its typed configs.

Verbs (batch-first, float32): ``fit`` -> ``score`` / ``recommend`` for users seen in
training, ``fold_in`` / ``recommend_history`` for histories the model has not seen (new
users, or a known user's history updated in real time), ``similar_items``.
Indices everywhere: user ids are mapped to indices by the :class:`~frugalrec.data.Dataset`
vocabulary before they reach a model, so a model never holds a raw user id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from frugalrec._config import JsonConfig
from frugalrec._io import atomic_path, sha256_file, write_json_atomic
from frugalrec._linalg import normalise_rows
from frugalrec.data.dataset import Dataset

FORMAT_VERSION = 1
CHUNK_USERS = 512  # users scored per chunk (bounds the [n, n_items] score buffer)


@dataclasses.dataclass(frozen=True)
class RecommenderConfig(JsonConfig):
    """Base for typed, JSON round-tripping hyper-parameter sets (keyword-only)."""


class ModelArtifactError(ValueError):
    """A saved model is missing, truncated, corrupted or from another format version."""


def top_k(
    scores: np.ndarray, k: int, candidates: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores per row, best first: the one exact top-k
    of the project (models, pipeline, retrieval and serving all select through it).

    ``scores`` float32 [n, m]; ``candidates`` maps columns to item indices when scoring was
    restricted: int64 [m] (shared by all rows) or [n, m] (per row, e.g. merged search results).
    Returns (int64 [n, k'], float32 [n, k']) with k' = min(k, m). ``-inf`` entries (excluded
    items) sort last; callers drop them via the score.

    Tie policy: equal scores are ordered by :func:`tie_rank` of the item index, and selection
    itself uses the key (score, tie rank), so the result does not depend on ``k``: the top-10
    is always the prefix of the top-20. The rank is a fixed pseudo-random order of item
    indices, not the index itself: ids often correlate with popularity (ml-100k's do), and
    index order would leak it into every tie.
    """
    scores = np.asarray(scores, dtype=np.float32)
    n, m = scores.shape
    k = min(k, m)
    if k <= 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    if candidates is None:
        items = np.arange(m, dtype=np.int64)[None, :]
    else:
        items = np.asarray(candidates, dtype=np.int64)
        items = items[None, :] if items.ndim == 1 else items
    key = _selection_key(scores, items)
    part = np.argpartition(key, m - k, axis=1)[:, m - k :] if k < m else None
    if part is not None:
        key = np.take_along_axis(key, part, axis=1)
    order = np.argsort(-key, axis=1)  # keys are unique per row: no further tie to break
    cols = order if part is None else np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(scores, cols, axis=1)
    idx = np.take_along_axis(np.broadcast_to(items, (n, m)), cols, axis=1)
    return idx.astype(np.int64, copy=False), vals.astype(np.float32, copy=False)


def tie_rank(items: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random rank (uint32) of item indices, the tie-break of :func:`top_k`:
    MurmurHash3's 32-bit finaliser, a bijection on 32-bit integers that mixes every input bit,
    the same whatever the catalogue size or candidate set. Lower rank wins a tie. (A bare
    multiplicative hash orders indices along a golden-ratio sequence, which is structured:
    it lifted popularity's cold-item NDCG on a generated catalogue above a text model's.)"""
    m = np.uint64(0xFFFFFFFF)
    h = np.asarray(items, dtype=np.int64).astype(np.uint64) & m
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & m
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & m
    h ^= h >> np.uint64(16)
    return h.astype(np.uint32)


def _selection_key(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """int64 key per entry, ordered like (score, -tie_rank): a float32 mapped onto an int32
    that sorts like the float (negative floats flip their magnitude bits) in the high half,
    the inverted tie rank in the low half. One argpartition on it selects exactly."""
    bits = (scores + np.float32(0.0)).view(np.int32)  # + 0.0 turns -0.0 into +0.0
    ordered = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)
    low = np.int64(0xFFFFFFFF) - tie_rank(items).astype(np.int64)
    return (ordered << np.int64(32)) | low


def mask_seen(scores: np.ndarray, history: sp.csr_matrix, candidates: np.ndarray | None) -> None:
    """Set scores of items in ``history`` rows to -inf, in place (vectorised)."""
    if history.nnz == 0:
        return
    rows = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
    cols = history.indices
    if candidates is not None:
        pos = np.full(history.shape[1], -1, dtype=np.int64)
        pos[candidates] = np.arange(len(candidates))
        cols_c = pos[cols]
        keep = cols_c >= 0
        rows, cols = rows[keep], cols_c[keep]
    scores[rows, cols] = -np.inf


class Recommender(ABC):
    """Base class: subclasses implement ``_fit`` and ``fold_in`` (and may override
    ``_score_known`` and ``_item_representation``).

    Learned attributes end in ``_``. ``__init__`` only stores the config; ``fit`` validates.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[RecommenderConfig]]
    uses_item_vectors: ClassVar[bool] = False

    def __init__(self, config: RecommenderConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else self.config_cls()
        self.config = base.replace(**overrides) if overrides else base

    # ---- training -------------------------------------------------------------------
    def fit(
        self,
        data: Dataset | sp.spmatrix,
        item_vectors: np.ndarray | None = None,
    ) -> Self:
        """Learn from interactions (a ``Dataset`` or CSR [n_users, n_items], binary).

        ``item_vectors`` float32 [n_items, d] (text models only). Returns ``self``.
        """
        if not isinstance(self.config, self.config_cls):
            raise TypeError(f"{self.name}: config must be {self.config_cls.__name__}")
        X = data.csr() if isinstance(data, Dataset) else sp.csr_matrix(data, dtype=np.float32)
        X = X.astype(np.float32)
        X.sum_duplicates()
        X.data[:] = 1.0
        X.eliminate_zeros()
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"{self.name}: cannot fit on an empty interaction matrix {X.shape}")
        if self.uses_item_vectors:
            if item_vectors is None:
                raise ValueError(f"{self.name}: needs item_vectors [n_items, d]")
            if item_vectors.shape[0] != X.shape[1]:
                raise ValueError(
                    f"{self.name}: item_vectors has {item_vectors.shape[0]} rows, "
                    f"expected one per item ({X.shape[1]})"
                )
        self.history_ = X
        self.n_users_, self.n_items_ = X.shape
        self.item_popularity_ = np.asarray(X.sum(axis=0)).ravel().astype(np.float32)
        self._fit(X, data if isinstance(data, Dataset) else None, item_vectors)
        return self

    @abstractmethod
    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        """Model-specific training on binary CSR ``X`` [n_users, n_items]."""

    # ---- scoring ----------------------------------------------------------------------
    @abstractmethod
    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores float32 [n, n_items] for users given only their histories (CSR [n, n_items]).

        No retraining: this is how new users and real-time events are served.
        """

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        """Scores for known user indices; default: fold in their training history."""
        return self.fold_in(self.history_[users])

    def _check_fitted(self) -> None:
        if not hasattr(self, "history_"):
            raise RuntimeError(f"{self.name}: call fit() before scoring")

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores float32 [n_users, n_items] (or [n_users, len(items)]) for user indices.

        Unknown users (index < 0 or >= n_users_) and users without training history get
        popularity scores: there is nothing personal to go on.
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        known = self._has_history(users)
        out = np.empty((len(users), self.n_items_), dtype=np.float32)
        if known.any():
            out[known] = self._score_known(users[known])
        if (~known).any():
            out[~known] = self.item_popularity_
        return out if items is None else out[:, np.asarray(items, dtype=np.int64)]

    def _has_history(self, users: np.ndarray) -> np.ndarray:
        known = (users >= 0) & (users < self.n_users_)
        lengths = np.diff(self.history_.indptr)
        known[known] = lengths[users[known]] > 0
        return known

    def _history_of(self, users: np.ndarray) -> sp.csr_matrix:
        known = (users >= 0) & (users < self.n_users_)
        safe = np.where(known, users, 0)
        h = self.history_[safe]
        if not known.all():
            h = sp.diags(known.astype(np.float32)) @ h
            h.eliminate_zeros()
        return sp.csr_matrix(h)

    def recommend(
        self,
        users: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores for each user index, best first.

        ``items`` (int64) restricts candidates; seen training items are excluded unless
        ``exclude_seen=False``. Returns (int64 [n, k], float32 [n, k]); where fewer than ``k``
        candidates remain, trailing entries are -1 with score -inf.
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        return self._recommend_chunks(
            len(users),
            lambda sl: self.score(users[sl], items),
            (lambda sl: self._history_of(users[sl])) if exclude_seen else None,
            k,
            items,
        )

    def recommend_history(
        self,
        history: sp.csr_matrix,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`recommend` for histories (CSR [n, n_items]) instead of user indices."""
        self._check_fitted()
        history = sp.csr_matrix(history, dtype=np.float32)
        if history.shape[1] != self.n_items_:
            raise ValueError(f"history has {history.shape[1]} columns, expected {self.n_items_}")
        cand = None if items is None else np.asarray(items, dtype=np.int64)

        def scores(sl: slice) -> np.ndarray:
            s = self.fold_in(history[sl])
            return s if cand is None else s[:, cand]

        return self._recommend_chunks(
            history.shape[0], scores, (lambda sl: history[sl]) if exclude_seen else None, k, cand
        )

    def _recommend_chunks(self, n, score_fn, history_fn, k, items):  # type: ignore[no-untyped-def]
        cand = None if items is None else np.asarray(items, dtype=np.int64)
        ids = np.full((n, k), -1, dtype=np.int64)
        vals = np.full((n, k), -np.inf, dtype=np.float32)
        for start in range(0, n, CHUNK_USERS):
            sl = slice(start, min(n, start + CHUNK_USERS))
            s = np.array(score_fn(sl), dtype=np.float32, copy=True)
            if history_fn is not None:
                mask_seen(s, history_fn(sl), cand)
            idx, v = top_k(s, k, cand)
            idx = np.where(np.isfinite(v), idx, -1)
            ids[sl, : idx.shape[1]] = idx
            vals[sl, : v.shape[1]] = v
        return ids, vals

    # ---- analytic cost -----------------------------------------------------------------
    def scoring_cost(self, history_len: float, batch: int = 1) -> tuple[float, float]:
        """(FLOPs, bytes moved) of ``fold_in`` for ``batch`` users with ``history_len`` items
        each: the analytic side of the cost model. Default: one float32 read per item."""
        n = float(self.n_items_)
        return batch * n, 4.0 * batch * n

    # ---- dot-product view (for ANN retrieval) -------------------------------------------
    def user_vectors(self, history: sp.csr_matrix) -> np.ndarray | None:
        """float32 [n, d] with ``scores = user_vectors @ item_matrix().T``, or None when the
        model does not score by a dot product (then only exact scoring applies)."""
        return None

    def item_matrix(self) -> np.ndarray | None:
        """float32 [n_items, d] item side of the dot-product view, or None."""
        return None

    # ---- item-item --------------------------------------------------------------------
    def _item_representation(self) -> np.ndarray:
        """float32 [n_items, d] vectors whose cosine defines item similarity."""
        raise NotImplementedError(f"{self.name} has no item representation")

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` most similar items (cosine of the model's item representation),
        excluding the item itself. Returns (int64 [n, k], float32 [n, k])."""
        self._check_fitted()
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        if (items < 0).any() or (items >= self.n_items_).any():
            raise IndexError(f"item index out of range [0, {self.n_items_})")
        rep = normalise_rows(self._item_representation().astype(np.float32))
        s = rep[items] @ rep.T
        s[np.arange(len(items)), items] = -np.inf
        return top_k(s, k)

    # ---- persistence ------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to persist (besides history and popularity)."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Restore learned arrays saved by :meth:`_state`."""

    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` + ``arrays.npz`` into directory ``path`` (no pickle).

        The JSON records the model name, config, format version and the SHA-256 of the
        arrays, so :func:`load_model` can refuse a corrupted or truncated artifact.
        """
        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        h = self.history_
        arrays = {
            "history_indptr": h.indptr,
            "history_indices": h.indices,
            "history_shape": np.array(h.shape, dtype=np.int64),
            "item_popularity": self.item_popularity_,
            **{f"state_{k}": v for k, v in self._state().items()},
        }
        npz = out / "arrays.npz"
        with atomic_path(npz) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        write_json_atomic(
            out / "model.json",
            {
                "format_version": FORMAT_VERSION,
                "model": self.name,
                "config": self.config.to_dict(),
                "arrays_sha256": sha256_file(npz),
            },
        )
        return out


def load_model(path: str | Path) -> Recommender:
    """Load a model saved by :meth:`Recommender.save`, verifying its checksum."""
    from frugalrec.models.registry import model_class

    d = Path(path)
    meta_path, npz = d / "model.json", d / "arrays.npz"
    if not meta_path.is_file() or not npz.is_file():
        raise ModelArtifactError(f"{d}: not a saved model (need model.json and arrays.npz)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelArtifactError(f"{meta_path}: corrupted JSON ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelArtifactError(
            f"{meta_path}: format_version {meta.get('format_version')!r} unsupported"
        )
    if sha256_file(npz) != meta.get("arrays_sha256"):
        raise ModelArtifactError(f"{npz}: checksum mismatch (corrupted or truncated artifact)")
    cls = model_class(meta["model"])
    model = cls(cls.config_cls.from_dict(meta["config"]))
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    shape = tuple(int(x) for x in arrays["history_shape"])
    indices = arrays["history_indices"]
    model.history_ = sp.csr_matrix(
        (np.ones(len(indices), np.float32), indices, arrays["history_indptr"]), shape=shape
    )
    model.n_users_, model.n_items_ = shape
    model.item_popularity_ = arrays["item_popularity"]
    model._set_state({k[6:]: v for k, v in arrays.items() if k.startswith("state_")})
    return model


def config_hash(config: RecommenderConfig) -> str:
    """Short stable hash of a config (for cache keys and run names)."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]
