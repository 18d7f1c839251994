"""Resolve what the CLI calls a dataset: a built-in name or the user's own files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from frugalrec.data.dataset import Dataset, build_dataset
from frugalrec.data.errors import DataValidationError, Problem
from frugalrec.data.loaders import read_table
from frugalrec.data.splits import Split
from frugalrec.privacy.pseudonyms import Pseudonymiser

BUILTIN = ("ml-100k",)


def load_dataset(name: str) -> Dataset:
    """A built-in dataset by name."""
    if name == "ml-100k":
        from frugalrec.data.movielens import load_ml100k

        return load_ml100k()
    raise ValueError(
        f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN)} "
        "(or pass --interactions/--items, or --train/--valid/--test)"
    )


def load_external_split(
    train: str | Path,
    valid: str | Path,
    test: str | Path,
    items: str | Path | None = None,
    cold_items: str | Path | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> Split:
    """A split someone else made: three ``user,item`` files (+ items, + cold-item list).

    With ``cold_items`` (CSV with column ``item``) the test ranks only among those items.
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
    return Split(ds, "external", stage == 0, stage == 1, stage == 2, None, test_cand)
