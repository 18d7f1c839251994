"""The immutable ``Dataset``: vocabularies, interactions, item and user tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class Vocabulary:
    """Bijection between external ids (strings) and dense indices ``0..n-1``."""

    ids: np.ndarray  # object array of str, index -> external id
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=object)
        object.__setattr__(self, "ids", ids)
        index = {str(x): i for i, x in enumerate(ids)}
        if len(index) != len(ids):
            raise ValueError("vocabulary ids must be unique")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    def index(self, external_ids: object) -> np.ndarray:
        """Indices of ``external_ids`` (int64 [n]); unknown ids map to -1."""
        arr = np.atleast_1d(np.asarray(external_ids, dtype=object))
        return np.fromiter(
            (self._index.get(str(x), -1) for x in arr), dtype=np.int64, count=len(arr)
        )

    def external(self, indices: np.ndarray) -> np.ndarray:
        """External ids (object array) for indices."""
        return self.ids[np.asarray(indices, dtype=np.int64)]


@dataclass(frozen=True)
class Dataset:
    """Interactions as parallel columns plus user/item vocabularies and side tables.

    ``user``/``item`` are int32 indices, ``rating`` float32 (1.0 where the source had none),
    ``timestamp`` int64 seconds (0 where the source had none). ``items`` is indexed by item
    index and has at least ``title``; ``users`` (optional) by user index.
    """

    name: str
    users_vocab: Vocabulary
    items_vocab: Vocabulary
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    has_timestamps: bool = False

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "rating", "timestamp"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"column {name!r} has {len(getattr(self, name))} rows, expected {n}"
                )
        if len(self.items) != len(self.items_vocab):
            raise ValueError("item table must have one row per item in the vocabulary")
        for arr in (self.user, self.item, self.rating, self.timestamp):
            arr.setflags(write=False)

    @property
    def noun(self) -> str:
        """What the catalogue's items are called in sentences ("books"; neutral: "items")."""
        return domain_noun(self.items)

    def described(self) -> np.ndarray:
        """bool [n_items]: the item came with metadata (a row in the items file)."""
        n = int(self.items.attrs.get("n_described", self.n_items))
        return np.arange(self.n_items) < n

    @property
    def n_users(self) -> int:
        return len(self.users_vocab)

    @property
    def n_items(self) -> int:
        return len(self.items_vocab)

    @property
    def n_interactions(self) -> int:
        return len(self.user)

    def csr(self, mask: np.ndarray | None = None, binary: bool = True) -> sp.csr_matrix:
        """Interactions (optionally a boolean row mask) as float32 CSR [n_users, n_items]."""
        u, i, r = self.user, self.item, self.rating
        if mask is not None:
            u, i, r = u[mask], i[mask], r[mask]
        data = np.ones(len(u), dtype=np.float32) if binary else r.astype(np.float32)
        m = sp.csr_matrix((data, (u, i)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def summary(self) -> dict[str, object]:
        """Counts, density and time range, for people and for ``--json``."""
        n = self.n_interactions
        out: dict[str, object] = {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "density": n / max(1, self.n_users * self.n_items),
        }
        if self.has_timestamps and n:
            out["time_min"] = pd.Timestamp(int(self.timestamp.min()), unit="s").isoformat()
            out["time_max"] = pd.Timestamp(int(self.timestamp.max()), unit="s").isoformat()
        return out

    def subset(self, mask: np.ndarray, name: str | None = None) -> Dataset:
        """Same vocabularies and tables, only the interactions where ``mask`` holds."""
        return Dataset(
            name=name or self.name,
            users_vocab=self.users_vocab,
            items_vocab=self.items_vocab,
            user=self.user[mask].copy(),
            item=self.item[mask].copy(),
            rating=self.rating[mask].copy(),
            timestamp=self.timestamp[mask].copy(),
            items=self.items,
            users=self.users,
            has_timestamps=self.has_timestamps,
        )


def domain_noun(items: pd.DataFrame) -> str:
    """The domain noun an item table carries (``items.attrs["noun"]``), default "items".

    It rides on the item table because everything that writes sentences about items
    (evidence, explanations) is handed that table.
    """
    return str(items.attrs.get("noun") or "items")


def singular(noun: str) -> str:
    """One of ``noun``: "books" -> "book" (a plain trailing s)."""
    return noun[:-1] if noun.endswith("s") and len(noun) > 3 else noun


def build_dataset(
    name: str,
    users: np.ndarray,
    items: np.ndarray,
    rating: np.ndarray | None,
    timestamp: np.ndarray | None,
    item_table: pd.DataFrame | None = None,
    user_table: pd.DataFrame | None = None,
    noun: str = "items",
) -> Dataset:
    """Index raw external-id columns into a :class:`Dataset`.

    ``noun`` names the items in sentences ("books"); see :func:`domain_noun`.
    ``users``/``items`` are external ids (any hashable, stored as str). ``item_table`` is
    keyed by an ``item`` column; items that appear only there are kept (cold items), items
    that appear only in interactions get their id as title.
    """
    users_s = pd.Series(users).astype(str).to_numpy()
    items_s = pd.Series(items).astype(str).to_numpy()
    if item_table is not None:
        table_ids = item_table["item"].astype(str).to_numpy()
        all_items = pd.unique(np.concatenate([table_ids, items_s]))
    else:
        all_items = pd.unique(items_s)
    uvocab = Vocabulary(pd.unique(users_s))
    ivocab = Vocabulary(all_items)
    u_idx = pd.Index(uvocab.ids).get_indexer(users_s).astype(np.int32)
    i_idx = pd.Index(ivocab.ids).get_indexer(items_s).astype(np.int32)
    n = len(u_idx)
    r = np.ones(n, np.float32) if rating is None else np.asarray(rating, np.float32)
    t = np.zeros(n, np.int64) if timestamp is None else np.asarray(timestamp, np.int64)
    table = pd.DataFrame({"item": ivocab.ids})
    if item_table is not None:
        extra = item_table.assign(item=item_table["item"].astype(str)).drop_duplicates("item")
        table = table.merge(extra, on="item", how="left")
    if "title" not in table:
        table["title"] = table["item"]
    table["title"] = table["title"].fillna(table["item"]).astype(str)
    utable = None
    if user_table is not None:
        ut = user_table.assign(user=user_table["user"].astype(str)).drop_duplicates("user")
        utable = pd.DataFrame({"user": uvocab.ids}).merge(ut, on="user", how="left")
        # The raw id stays in the vocabulary only; side tables are keyed by index.
        utable = utable.drop(columns=["user"])
    table = table.reset_index(drop=True)
    table.attrs["noun"] = noun
    # Items from the item table come first in the vocabulary: the first n have metadata.
    table.attrs["n_described"] = 0 if item_table is None else len(pd.unique(table_ids))
    return Dataset(
        name=name,
        users_vocab=uvocab,
        items_vocab=ivocab,
        user=u_idx,
        item=i_idx,
        rating=r,
        timestamp=t,
        items=table,
        users=utable,
        has_timestamps=timestamp is not None,
    )
