"""Evidence: what the scorer actually used for each recommended item, computed first.

For an item-item model (EASE, ItemKNN) a user's score for item i is a sum over history items
j of ``W[j, i]``; the largest terms are the history items that put i on the list. Other
models use the cosine of their item representations. Attributes: the genres the item shares
with the user's history (weight = share of history items with that genre). Query terms:
the requested genres or years the item matched. Explanations may cite only this evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from frugalrec._linalg import normalise_rows
from frugalrec.data.dataset import domain_noun
from frugalrec.text.features import multi_hot


@dataclass
class Evidence:
    """Why one item was recommended. ``because``: (history item index, title, weight);
    ``shared_genres``: (genre, share of the user's history); ``query_terms``: request terms
    the item satisfies; ``popular``: fallback when there is no personal evidence."""

    item: int
    title: str
    year: int | None
    genres: list[str]
    because: list[tuple[int, str, float]] = field(default_factory=list)
    shared_genres: list[tuple[str, float]] = field(default_factory=list)
    query_terms: list[str] = field(default_factory=list)
    popular: bool = False
    noun: str = "items"  # what the catalogue's items are called ("books"), for sentences

    def titles(self) -> list[str]:
        return [self.title] + [t for _, t, _ in self.because]

    def item_indices(self) -> set[int]:
        return {self.item, *(j for j, _, _ in self.because)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_title": self.title,
            "because": [{"title": t, "weight": round(float(w), 4)} for _, t, w in self.because],
            "shared_genres": [
                {"genre": g, "share": round(float(s), 4)} for g, s in self.shared_genres
            ],
            "query_terms": list(self.query_terms),
            "popular": self.popular,
        }


def genre_matrix(items: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Multi-hot float32 [n_items, n_genres] (unscaled) and the genre names."""
    return multi_hot(items, "genres")


def _year(items: pd.DataFrame, i: int) -> int | None:
    if "year" not in items.columns:
        return None
    y = items["year"].iloc[i]
    return None if pd.isna(y) else int(y)


class EvidenceBuilder:
    """Computes :class:`Evidence` for recommended items of one model and catalogue."""

    def __init__(self, model: Any, items: pd.DataFrame, top: int = 3) -> None:
        self.model = model
        self.items = items
        self.top = top
        self.G, self.genre_names = genre_matrix(items)
        self.noun = domain_noun(items)
        # Per-item lookups done once, not per request (a service builds evidence per call;
        # LLMTier also describes its answers with them).
        self.titles = items["title"].astype(str).to_numpy()
        self.years = [_year(items, i) for i in range(len(items))]
        w = getattr(model, "weights_", None)
        n = len(items)
        if isinstance(w, np.ndarray) and w.shape == (n, n):
            self._pair = lambda h, r: w[np.ix_(h, r)]
            return
        try:
            rep = normalise_rows(np.asarray(model._item_representation(), dtype=np.float32))
        except NotImplementedError:
            # No item representation (e.g. popularity): no history evidence, genres only.
            self._pair = lambda h, r: np.zeros((len(h), len(r)), np.float32)
        else:
            self._pair = lambda h, r: rep[h] @ rep[r].T

    def build(
        self,
        history: np.ndarray,
        recommended: np.ndarray,
        query_genres: set[str] | None = None,
        year_range: tuple[int | None, int | None] | None = None,
    ) -> list[Evidence]:
        """Evidence for each of ``recommended`` (int64 [K]) given the user's ``history``
        (int64 item indices). Vectorised over the K items: one [|history|, K] block."""
        history = np.asarray(history, dtype=np.int64)
        recommended = np.asarray(recommended, dtype=np.int64)
        rec = recommended[recommended >= 0]
        titles = self.titles
        if len(history):
            C = np.asarray(self._pair(history, rec), dtype=np.float32)  # [H, K]
            order = np.argsort(-C, axis=0, kind="stable")[: self.top]  # [top, K]
            share = self.G[history].mean(axis=0) if self.G.shape[1] else np.zeros(0)
        else:
            C = np.zeros((0, len(rec)), np.float32)
            order = np.zeros((0, len(rec)), np.int64)
            share = np.zeros(self.G.shape[1], np.float32)
        out = []
        for c, i in enumerate(rec):
            genres = [g for g, on in zip(self.genre_names, self.G[i], strict=True) if on]
            because = [
                (int(history[j]), titles[history[j]], float(C[j, c]))
                for j in order[:, c]
                if C[j, c] > 0
            ]
            shared = sorted(
                ((g, float(share[k])) for k, g in enumerate(self.genre_names)
                 if self.G[i, k] and share[k] > 0),
                key=lambda x: -x[1],
            )[:2]  # fmt: skip
            terms = sorted(set(genres) & (query_genres or set()))
            year = self.years[int(i)]
            if year_range and year is not None and any(v is not None for v in year_range):
                terms.append(f"year {year}")
            out.append(
                Evidence(
                    item=int(i),
                    title=titles[i],
                    year=year,
                    genres=genres,
                    because=because,
                    shared_genres=shared,
                    query_terms=terms,
                    popular=not because and not shared and not terms,
                    noun=self.noun,
                )
            )
        return out
