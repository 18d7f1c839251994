"""Item table -> one descriptive text per item, the input of every encoder tier."""

from __future__ import annotations

import pandas as pd

from frugalrec.privacy.scrub import scrub_texts


def item_texts(items: pd.DataFrame) -> list[str]:
    """One text per row, e.g. ``"Toy Story (1995). Genres: Animation, Children's, Comedy."``.

    Uses ``title`` (required), ``year`` and ``genres`` ('|'-joined) when present; missing
    parts are left out rather than written as "nan". Texts are PII-scrubbed (a user's
    items file may carry e-mails or phone numbers in free-text columns) before any encoder,
    cache or LLM sees them.
    """
    if "title" not in items.columns:
        raise ValueError("item table needs a 'title' column")
    text = items["title"].fillna("").astype(str).str.strip()
    if "year" in items.columns:
        year = pd.to_numeric(items["year"], errors="coerce").astype("Int64").astype(str)
        has_year = items["year"].notna() & (year != "<NA>")
        text = text.where(~has_year, text + " (" + year + ")")
    text = text + "."
    if "genres" in items.columns:
        genres = items["genres"].fillna("").astype(str).str.replace("|", ", ", regex=False)
        text = text.where(genres == "", text + " Genres: " + genres + ".")
    # Any other text column of the user's items file (plot, description, tags...) follows.
    for col in items.columns:
        if col in _STRUCTURED or not _is_text(items[col]):
            continue
        value = items[col].fillna("").astype(str).str.strip().str.rstrip(".")
        label = str(col).replace("_", " ").capitalize()
        text = text.where(value == "", text + " " + label + ": " + value + ".")
    return scrub_texts(text.tolist())


_STRUCTURED = {"item", "title", "year", "genres"}


def _is_text(col: pd.Series) -> bool:
    return col.dtype == object or pd.api.types.is_string_dtype(col)


_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
_WORDS = (
    "Night", "Return", "Lost", "City", "Dark", "Love", "Story", "Last", "King", "Blue", "River",
    "Secret", "Summer", "Ghost", "Island", "Star", "Road", "House", "Dream", "Fire", "Little",
    "Wild", "Silent", "Golden", "Empire", "Shadow", "Heart", "Stranger", "Winter", "Game",
)  # fmt: skip


def synthetic_movie_texts(n: int, seed: int = 42) -> list[str]:
    """``n`` MovieLens-like item texts (title, year, 1-3 genres), reproducible from ``seed``.

    For benchmarks and tests where the real catalogue is not at hand; lengths vary like the
    real ones (about 30-110 characters).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    words = np.asarray(_WORDS, dtype=object)
    genres = np.asarray(_GENRES, dtype=object)
    n_words = rng.integers(1, 6, size=n)
    years = rng.integers(1930, 1999, size=n)
    n_genres = rng.integers(1, 4, size=n)
    titles = [" ".join(words[rng.choice(len(words), k, replace=False)]) for k in n_words]
    tags = [", ".join(genres[np.sort(rng.choice(len(genres), k, replace=False))]) for k in n_genres]
    return [f"{t} ({y}). Genres: {g}." for t, y, g in zip(titles, years, tags, strict=True)]
