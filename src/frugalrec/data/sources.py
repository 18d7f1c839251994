"""Resolve what the CLI calls a dataset: a built-in name or the user's own files.

A :class:`DataSource` is the one typed description of where the data comes from (the
built-in reference set or the user's files, their column names, the cleaning to apply). It
round-trips through JSON, so the same source reaches a bench worker process or the service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalrec.data.columns import ColumnMap
from frugalrec.data.dataset import Dataset, build_dataset
from frugalrec.data.errors import DataValidationError, Problem
from frugalrec.data.loaders import read_table
from frugalrec.data.splits import Split
from frugalrec.privacy.pseudonyms import Pseudonymiser

BUILTIN = ("ml-100k",)


@dataclass(frozen=True)
class DataSource:
    """Where a dataset comes from and how it is cleaned.

    Exactly one of ``dataset`` (a built-in name) and ``interactions`` (the user's file) is
    set. Cleaning runs in this order: ``min_rating`` (keep ratings >= it: a 1-star review is
    then not a like), ``dedup`` (one interaction per user and item, the latest), ``k_core``
    (drop users and items with fewer interactions, repeatedly). ``noun`` names the items in
    sentences ("books"; default "items", "films" for ml-100k).
    """

    dataset: str | None = None
    interactions: str | None = None
    items: str | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    min_rating: float | None = None
    dedup: bool = False
    k_core: int = 0
    noun: str | None = None

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.interactions is None):
            raise ValueError(
                "give a data source: --dataset ml-100k, or --interactions FILE [--items FILE]"
                if self.dataset is None
                else "give either --dataset or --interactions, not both"
            )
        if self.dataset is not None and self.dataset not in BUILTIN:
            hint = " (a file? pass it as --interactions)" if Path(self.dataset).suffix else ""
            raise ValueError(
                f"unknown dataset {self.dataset!r}{hint}; built-in: {', '.join(BUILTIN)}"
            )
        if self.k_core < 0:
            raise ValueError(f"--k-core must be >= 0, got {self.k_core}")

    @property
    def name(self) -> str:
        """A short display name: the built-in name, or the interactions file's stem (its
        folder's name when the stem is a generic one such as ``interactions``)."""
        if self.dataset:
            return self.dataset
        path = Path(str(self.interactions)).resolve()
        generic = {"interactions", "ratings", "events", "data", "train", "log"}
        return path.parent.name if path.stem.lower() in generic and path.parent.name else path.stem

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults (a compact, readable spec)."""
        out: dict[str, Any] = {}
        for key in ("dataset", "interactions", "items", "min_rating", "noun"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.dedup:
            out["dedup"] = True
        if self.k_core:
            out["k_core"] = self.k_core
        cols = {k: v for k, v in self.columns.to_dict().items() if v != getattr(ColumnMap, k, None)}
        if cols:
            out["columns"] = cols
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataSource:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"unknown data-source field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        kw = dict(raw)
        kw["columns"] = ColumnMap.from_dict(kw.get("columns") or {})
        return cls(**kw)

    def to_spec(self) -> str:
        """The source as one string (what ``load_dataset`` takes): a built-in name when
        that is all it is, else compact JSON."""
        d = self.to_dict()
        if set(d) == {"dataset"}:
            return str(self.dataset)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_spec(cls, spec: str) -> DataSource:
        """Inverse of :meth:`to_spec`: a built-in name or a JSON object."""
        text = spec.strip()
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"data source spec is not valid JSON: {exc}") from exc
            return cls.from_dict(raw)
        return cls(dataset=text)

    def with_cleaning(self, **kw: Any) -> DataSource:
        return replace(self, **kw)

    def load(self, pseudonymiser: Pseudonymiser | None = None) -> Dataset:
        """The cleaned :class:`Dataset` (raises :class:`DataValidationError` on bad files).
        With ``pseudonymiser`` the user ids become keyed pseudonyms at ingestion."""
        return self.load_with_report(pseudonymiser)[0]

    def load_with_report(
        self, pseudonymiser: Pseudonymiser | None = None
    ) -> tuple[Dataset, list[dict[str, Any]]]:
        """The cleaned dataset and one row per cleaning step (interactions, users, items
        with at least one interaction, before and after)."""
        from frugalrec.data.cleaning import deduplicate, k_core, threshold

        if self.dataset is not None:
            from frugalrec.data.movielens import load_ml100k

            ds = load_ml100k()
            if pseudonymiser is not None:
                ds = _pseudonymised(ds, pseudonymiser)
        else:
            from frugalrec.data.loaders import load_interactions

            ds = load_interactions(
                str(self.interactions),
                self.items,
                name=self.name,
                columns=self.columns,
                pseudonymiser=pseudonymiser,
            )
        if self.noun:
            ds.items.attrs["noun"] = self.noun
        report = [_step("loaded", ds)]
        if self.min_rating is not None:
            ds = threshold(ds, self.min_rating)
            report.append(_step(f"rating >= {self.min_rating:g}", ds))
        if self.dedup:
            ds = deduplicate(ds)
            report.append(_step("dedup (latest per user and item)", ds))
        if self.k_core:
            ds = k_core(ds, self.k_core, self.k_core)
            report.append(_step(f"{self.k_core}-core", ds))
        if not ds.n_interactions:
            raise ValueError(
                f"{self.name}: cleaning left no interactions ({report[-1]['step']}); "
                "lower --min-rating or --k-core"
            )
        return ds, report


def _pseudonymised(ds: Dataset, pseudonymiser: Pseudonymiser) -> Dataset:
    from dataclasses import replace as dc_replace

    from frugalrec.data.dataset import Vocabulary

    vocab = Vocabulary(pseudonymiser.pseudonyms(ds.users_vocab.ids))
    return dc_replace(ds, users_vocab=vocab)


def _step(label: str, ds: Dataset) -> dict[str, Any]:
    return {
        "step": label,
        "interactions": int(ds.n_interactions),
        "users": int(np.unique(ds.user).size),
        "items": int(np.unique(ds.item).size),
    }


def load_dataset(name: str | DataSource) -> Dataset:
    """A dataset by built-in name, :class:`DataSource`, or source spec (its JSON form)."""
    if isinstance(name, DataSource):
        return name.load()
    return DataSource.from_spec(name).load()


def load_external_split(
    train: str | Path,
    valid: str | Path,
    test: str | Path,
    items: str | Path | None = None,
    cold_items: str | Path | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> Split:
    """A split someone else made: three ``user,item`` files (+ items, + cold-item list).

    With ``cold_items`` (CSV with column ``item``) the test ranks only among those items,
    and valid ranks only among its own cold items (items in ``valid`` that never occur in
    ``train``), when it has any: the construction of the built-in ``cold-item`` protocol, so
    an exported and re-read split tunes (and early-stops) on the same task as the built-in one.
    With ``pseudonymiser`` user ids become keyed pseudonyms at ingestion.
    Raises :class:`DataValidationError` naming file, line and field.
    """
    frames, problems = [], []
    for path in (train, valid, test):
        df, p = read_table(path, ("user", "item"))
        frames.append(df)
        problems += p
    item_table = None
    if items is not None:
        item_table, p = read_table(items, ("item", "title"))
        problems += p
    cold = None
    if cold_items is not None:
        cdf, p = read_table(cold_items, ("item",))
        problems += p
        cold = cdf["item"].astype(str).to_numpy() if not p else None
    if problems:
        raise DataValidationError(problems)
    if item_table is not None and "year" in item_table:
        item_table["year"] = pd.to_numeric(item_table["year"], errors="coerce").astype("Int64")
    sizes = [len(f) for f in frames]
    for f in frames:
        f.attrs.clear()  # per-file line numbers; pandas cannot merge differing attrs
    allf = pd.concat([f[["user", "item"]] for f in frames], ignore_index=True)
    user_ids = allf["user"].to_numpy()
    if pseudonymiser is not None:
        user_ids = pseudonymiser.pseudonyms(user_ids)
    ds = build_dataset(
        "external",
        user_ids,
        allf["item"].to_numpy(),
        None,
        None,
        item_table=item_table,
    )
    stage = np.repeat(np.arange(3), sizes)
    test_cand = None
    if cold is not None:
        idx = ds.items_vocab.index(cold)
        if (idx < 0).any():
            missing = cold[idx < 0][:5].tolist()
            raise DataValidationError(
                [Problem(str(cold_items), f"items not in the catalogue: {missing}", field="item")]
            )
        test_cand = np.unique(idx)
    valid_cand = None
    if test_cand is not None:
        in_train = np.zeros(ds.n_items, dtype=bool)
        in_train[ds.item[stage == 0]] = True
        valid_items = np.unique(ds.item[stage == 1])
        valid_items = valid_items[~in_train[valid_items]]
        valid_cand = valid_items.astype(np.int64) if len(valid_items) else None
    return Split(ds, "external", stage == 0, stage == 1, stage == 2, valid_cand, test_cand)
