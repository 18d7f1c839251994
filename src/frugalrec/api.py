"""``frugalrec.Recommender``: recommendations in your own ids, from your own files.

The facade above data, text and models for people who want a list, not a pipeline::

    import frugalrec

    rec = frugalrec.Recommender.from_files(
        "interactions.csv", "items.csv", model="textmap", noun="books"
    )
    rec.recommend(["reader0001@example.com", "someone-new"], k=5)
    #   user  item  rank  score  title  cold_start

It takes your user and item ids (strings), builds the item vectors text-aware models need,
pseudonymises user ids at ingestion (keyed hash; the saved artifact holds no raw id) and
saves/loads as ``.npz`` + JSON. A user it has never seen is an explicit cold start:
``cold_start`` is True and the scores are the model's average answer over its known users,
so they sit on the same scale as everyone else's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from frugalrec.data.columns import ColumnMap
from frugalrec.data.sources import DataSource

if TYPE_CHECKING:
    from frugalrec.data.dataset import Dataset
    from frugalrec.models.base import Recommender as Model
    from frugalrec.privacy.pseudonyms import Pseudonymiser

FACADE_FORMAT = 1
# Known users averaged for the cold-start scores (seeded sample; all of them if fewer).
COLD_START_SAMPLE = 512


@dataclass(frozen=True)
class FacadeConfig:
    """What the facade fits: a model name (see ``frugalrec evaluate``) and, for text-aware
    models, the encoder tier/backend and the attribute columns appended to the text."""

    model: str = "ease"
    encoder: str = "static"
    backend: str | None = None
    attributes: tuple[str, ...] | None = None  # None: the category column if present
    model_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "encoder": self.encoder,
            "backend": self.backend,
            "attributes": None if self.attributes is None else list(self.attributes),
            "model_config": dict(self.model_config),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FacadeConfig:
        kw = dict(raw)
        if kw.get("attributes") is not None:
            kw["attributes"] = tuple(kw["attributes"])
        return cls(**kw)


class Recommender:
    """A fitted model plus the catalogue it speaks about, addressed by your own ids.

    Build with :meth:`from_files` (or :meth:`from_source`, :meth:`fit` on a ``Dataset``);
    ask with :meth:`recommend` / :meth:`similar_items`; keep with :meth:`save` / :meth:`load`.
    """

    def __init__(
        self,
        model: str = "ease",
        *,
        encoder: str = "static",
        backend: str | None = None,
        attributes: tuple[str, ...] | None = None,
        model_config: dict[str, Any] | None = None,
        pseudonymiser: Pseudonymiser | None = None,
    ) -> None:
        self.config = FacadeConfig(model, encoder, backend, attributes, dict(model_config or {}))
        self._pseudonymiser = pseudonymiser

    # ---- building ---------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        interactions: str | Path,
        items: str | Path | None = None,
        *,
        model: str = "ease",
        columns: ColumnMap | None = None,
        min_rating: float | None = None,
        dedup: bool = False,
        k_core: int = 0,
        noun: str | None = None,
        **kw: Any,
    ) -> Recommender:
        """Load, validate, clean and fit in one call (raises ``DataValidationError`` naming
        file, line and field). ``columns`` names your columns when they are not the common
        ones; ``kw`` goes to the constructor (``encoder``, ``backend``, ``attributes``...)."""
        source = DataSource(
            interactions=str(interactions),
            items=None if items is None else str(items),
            columns=columns or ColumnMap(),
            min_rating=min_rating,
            dedup=dedup,
            k_core=k_core,
            noun=noun,
        )
        return cls.from_source(source, model=model, **kw)

    @classmethod
    def from_source(cls, source: DataSource, *, model: str = "ease", **kw: Any) -> Recommender:
        """Fit on a :class:`~frugalrec.data.sources.DataSource` (user ids pseudonymised)."""
        rec = cls(model, **kw)
        return rec.fit(source.load(pseudonymiser=rec.pseudonymiser))

    @property
    def pseudonymiser(self) -> Pseudonymiser:
        if self._pseudonymiser is None:
            from frugalrec.privacy.pseudonyms import Pseudonymiser

            self._pseudonymiser = Pseudonymiser.from_environment()
        return self._pseudonymiser

    def fit(self, dataset: Dataset) -> Recommender:
        """Fit on ``dataset`` whose user ids are already pseudonyms (``from_files`` does
        that); text-aware models get their item vectors built here."""
        from frugalrec.models.registry import model_class

        cls = model_class(self.config.model)
        kwargs: dict[str, Any] = {}
        if cls.uses_item_vectors:
            from frugalrec.text.features import item_features

            attrs = self.config.attributes
            if attrs is None:
                attrs = ("genres",) if "genres" in dataset.items else ()
            missing = [a for a in attrs if a not in dataset.items]
            if missing:
                raise ValueError(
                    f"attributes {missing} are not item columns: {list(dataset.items.columns)}"
                )
            backend = self.config.backend or ("numpy" if self.config.encoder == "static" else None)
            kwargs["item_vectors"] = item_features(
                dataset, self.config.encoder, backend or "torch", attrs
            )
        cfg = cls.config_cls.from_dict(self.config.model_config)
        self.model_: Model = cls(cfg).fit(dataset, **kwargs)
        self.users_ = dataset.users_vocab
        self.items_ = dataset.items_vocab
        self.titles_ = dataset.items["title"].astype(str).to_numpy()
        self.noun_ = dataset.noun
        self.cold_scores_ = cold_start_scores(self.model_)
        return self

    # ---- asking -----------------------------------------------------------------------
    def recommend(
        self, users: str | list[str] | np.ndarray, k: int = 10, exclude_seen: bool = True
    ) -> pd.DataFrame:
        """Top-``k`` per user id, best first: ``user`` (your id), ``item`` (your id),
        ``rank`` (1-based), ``score``, ``title``, ``cold_start`` (the user had no history:
        scores are the model's average answer over known users)."""
        from frugalrec.models.base import top_k

        self._check()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        raw = [users] if isinstance(users, str) else [str(u) for u in users]
        idx = self.users_.index(self.pseudonymiser.pseudonyms(raw))
        known = idx >= 0
        if known.any():
            known[known] = np.diff(self.model_.history_.indptr)[idx[known]] > 0
        scores = np.empty((len(raw), len(self.items_)), dtype=np.float32)
        if known.any():
            scores[known] = self.model_.score(idx[known])
            if exclude_seen:
                h = self.model_.history_[idx[known]]
                rows = np.repeat(np.flatnonzero(known), np.diff(h.indptr))
                scores[rows, h.indices] = -np.inf
        scores[~known] = self.cold_scores_
        ids, vals = top_k(scores, min(k, scores.shape[1]))
        ok = np.isfinite(vals) & (ids >= 0)
        n = ids.shape[1]
        user_rows = np.repeat(np.arange(len(raw)), n).reshape(ids.shape)
        flat = ids[ok]
        return pd.DataFrame(
            {
                "user": np.asarray(raw, dtype=object)[user_rows[ok]],
                "item": self.items_.external(flat).astype(str),
                "rank": np.tile(np.arange(1, n + 1), (len(raw), 1))[ok],
                "score": vals[ok].astype(np.float32),
                "title": self.titles_[flat],
                "cold_start": ~known[user_rows[ok]],
            }
        )

    def similar_items(self, items: str | list[str], k: int = 10) -> pd.DataFrame:
        """The ``k`` items most like each given item id: ``item``, ``similar``, ``rank``,
        ``score``, ``title`` (of the similar item). An unknown item id is an error."""
        self._check()
        raw = [items] if isinstance(items, str) else [str(i) for i in items]
        idx = self.items_.index(raw)
        if (idx < 0).any():
            unknown = [r for r, i in zip(raw, idx, strict=True) if i < 0][:5]
            raise KeyError(f"unknown item id(s) {unknown}")
        ids, vals = self.model_.similar_items(idx, k=k)
        ok = np.isfinite(vals) & (ids >= 0)
        n = ids.shape[1]
        rows = np.repeat(np.arange(len(raw)), n).reshape(ids.shape)
        return pd.DataFrame(
            {
                "item": np.asarray(raw, dtype=object)[rows[ok]],
                "similar": self.items_.external(ids[ok]).astype(str),
                "rank": np.tile(np.arange(1, n + 1), (len(raw), 1))[ok],
                "score": vals[ok].astype(np.float32),
                "title": self.titles_[ids[ok]],
            }
        )

    # ---- keeping ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``facade.json`` + ``catalogue.npz`` + the model (``model/``: npz + JSON)
        into directory ``path``. User ids are stored as pseudonyms only."""
        from frugalrec._io import atomic_path, write_json_atomic

        self._check()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model_.save(out / "model")
        with atomic_path(out / "catalogue.npz") as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                users=self.users_.ids.astype(str),
                items=self.items_.ids.astype(str),
                titles=self.titles_.astype(str),
                cold_scores=self.cold_scores_,
            )
        write_json_atomic(
            out / "facade.json",
            {"format": FACADE_FORMAT, "config": self.config.to_dict(), "noun": self.noun_},
        )
        return out

    @classmethod
    def load(cls, path: str | Path, pseudonymiser: Pseudonymiser | None = None) -> Recommender:
        """A facade saved by :meth:`save` (the same pseudonym key must be in use)."""
        from frugalrec.data.dataset import Vocabulary
        from frugalrec.models.base import load_model

        d = Path(path)
        meta = json.loads((d / "facade.json").read_text(encoding="utf-8"))
        if meta.get("format") != FACADE_FORMAT:
            raise ValueError(f"{d / 'facade.json'}: format {meta.get('format')!r} unsupported")
        cfg = FacadeConfig.from_dict(meta["config"])
        rec = cls(
            cfg.model,
            encoder=cfg.encoder,
            backend=cfg.backend,
            attributes=cfg.attributes,
            model_config=cfg.model_config,
            pseudonymiser=pseudonymiser,
        )
        rec.model_ = load_model(d / "model")
        with np.load(d / "catalogue.npz", allow_pickle=False) as z:
            rec.users_ = Vocabulary(z["users"].astype(object))
            rec.items_ = Vocabulary(z["items"].astype(object))
            rec.titles_ = z["titles"].astype(object)
            rec.cold_scores_ = z["cold_scores"].astype(np.float32)
        rec.noun_ = str(meta.get("noun") or "items")
        return rec

    def _check(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("call fit() or from_files() first")


def cold_start_scores(model: Model, sample: int = COLD_START_SAMPLE, seed: int = 0) -> np.ndarray:
    """float32 [n_items]: the model's mean score vector over (a seeded sample of) its users
    with history: what it expects of a user it knows nothing about, on the same scale as
    its scores for known users (unlike raw popularity counts)."""
    lengths = np.diff(model.history_.indptr)
    users = np.flatnonzero(lengths > 0)
    if len(users) > sample:
        users = np.sort(np.random.default_rng(seed).choice(users, sample, replace=False))
    if not len(users):
        return np.zeros(model.n_items_, dtype=np.float32)
    total = np.zeros(model.n_items_, dtype=np.float64)
    for start in range(0, len(users), 256):
        total += model.score(users[start : start + 256]).sum(axis=0, dtype=np.float64)
    return (total / len(users)).astype(np.float32)
