"""A query test set generated from item metadata, with known relevant items.

Each request names a genre (in everyday words) and usually a decade or a negation; the
relevant items are exactly the catalogue items that satisfy it. Binary relevance, NDCG@10
over the whole catalogue. Reported per encoder tier, with and without the rule parser, so
the value of each part is visible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from frugalrec.data.dataset import domain_noun
from frugalrec.models.base import top_k
from frugalrec.pipeline.query import (
    QueryIntent,
    catalogue_categories,
    parse_query,
    score_query,
)

# Everyday words for each genre (first one is used in templates; variety via rotation).
PHRASES: dict[str, list[str]] = {
    "Comedy": ["funny movie", "comedy", "film that makes me laugh"],
    "Animation": ["animated film", "cartoon movie"],
    "Children's": ["movie for kids", "family film"],
    "Horror": ["horror movie", "scary film"],
    "Romance": ["romantic movie", "love story"],
    "Sci-Fi": ["science fiction film", "sci-fi movie"],
    "Thriller": ["thriller", "suspense film"],
    "Drama": ["drama", "serious drama film"],
    "Action": ["action movie", "action-packed film"],
    "Western": ["western", "cowboy movie"],
    "War": ["war movie", "war film"],
    "Crime": ["crime film", "gangster movie"],
    "Musical": ["musical"],
    "Documentary": ["documentary"],
    "Mystery": ["mystery film", "whodunit"],
    "Adventure": ["adventure film"],
}


def _phrases(items: pd.DataFrame) -> dict[str, list[str]]:
    """Category -> how people ask for it: the film phrasings above on a film catalogue,
    else the catalogue's own category names."""
    cats = catalogue_categories(items)
    if domain_noun(items) == "films":
        return {g: p for g, p in PHRASES.items() if g in cats}
    return {c: [f"something in {c}"] for c in cats}


def query_set(items: pd.DataFrame, min_relevant: int = 5) -> list[tuple[str, np.ndarray]]:
    """(request, relevant item indices) pairs generated from ``genres`` and ``year``."""
    genres = items["genres"].fillna("").astype(str).str.split("|")
    if "year" in items:
        year = pd.to_numeric(items["year"], errors="coerce").to_numpy(dtype=np.float64)
    else:
        year = np.full(len(items), np.nan)
    table = _phrases(items)
    has = {g: genres.map(lambda gs, g=g: g in gs).to_numpy(dtype=bool) for g in table}
    common: list[str] = [g for g in ("Horror", "Romance", "Drama", "Comedy") if g in table]
    if not common:  # another domain: exclude its most frequent categories instead
        common = sorted(table, key=lambda g: -int(has[g].sum()))[:4]
    out: list[tuple[str, np.ndarray]] = []
    for gi, (genre, phrases) in enumerate(table.items()):
        for di, decade in enumerate(range(1930, 2000, 10)):
            rel = np.flatnonzero(has[genre] & (year >= decade) & (year <= decade + 9))
            if len(rel) >= min_relevant:
                phrase = phrases[(gi + di) % len(phrases)]
                out.append((f"a {phrase} from the {decade % 100}s", rel))
        for other in common:
            if other == genre:
                continue
            rel = np.flatnonzero(has[genre] & ~has[other])
            if len(rel) >= min_relevant:
                out.append((f"a {phrases[0]} but no {other.lower()}", rel))
    return out


def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """NDCG@k of one score vector against a set of relevant indices (binary)."""
    top, vals = top_k(np.asarray(scores, dtype=np.float32)[None, :], k)
    top = top[0][np.isfinite(vals[0])]
    hits = np.isin(top, relevant).astype(np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = disc[: min(len(relevant), k)].sum()
    return float((hits * disc[: len(hits)]).sum() / idcg)


def evaluate_queries(
    items: pd.DataFrame,
    item_vectors: np.ndarray,
    encode: Callable[[list[str]], np.ndarray],
    popularity: np.ndarray | None = None,
    k: int = 10,
) -> dict[str, float]:
    """Mean NDCG@k over :func:`query_set` for encoder-only and rules+encoder ranking."""
    queries = query_set(items)
    if not queries:
        raise ValueError(
            "no query can be generated from this catalogue: it needs a category column "
            "(--category-col) with at least 5 items per category"
        )
    years = pd.to_numeric(items["year"], errors="coerce").dropna() if "year" in items else []
    span = (int(min(years)), int(max(years))) if len(years) else None
    cats = catalogue_categories(items)
    intents = [parse_query(q, span, cats) for q, _ in queries]
    raw_vecs = encode([q for q, _ in queries])
    parsed_vecs = encode([it.text for it in intents])
    enc_only, constraints_only, with_rules = [], [], []
    for (q, rel), intent, rv, pv in zip(queries, intents, raw_vecs, parsed_vecs, strict=True):
        plain = QueryIntent(raw=q, text=q, parser="none")
        enc_only.append(
            ndcg_at_k(score_query(plain, rv, item_vectors, items, popularity=popularity), rel, k)
        )
        # Rules enforce decade/negation, but the genre itself must come from the encoder.
        s = score_query(intent, pv, item_vectors, items, genre_weight=0.0, popularity=popularity)
        constraints_only.append(ndcg_at_k(s, rel, k))
        with_rules.append(
            ndcg_at_k(score_query(intent, pv, item_vectors, items, popularity=popularity), rel, k)
        )
    return {
        "queries": float(len(queries)),
        f"ndcg@{k}_encoder_only": float(np.mean(enc_only)),
        f"ndcg@{k}_rule_constraints_plus_encoder": float(np.mean(constraints_only)),
        f"ndcg@{k}_rules_plus_encoder": float(np.mean(with_rules)),
    }
