"""A small example catalogue the project writes itself (no licence question): a bookshop.

Shaped like a real shop's export, not like MovieLens: string ids (``BK-00042``), e-mail-like
user ids, ``user_id``/``item_id`` headers, ISO-8601 timestamps, 1-5 star ratings, a
free-text ``description`` and a ``category`` column ('|'-joined, or any separator). Readers
have one or two favourite categories, so a recommender has something to find; descriptions
use each category's own words, so text models do too. Deterministic given ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# Category -> words its titles and descriptions use.
BOOK_CATEGORIES: dict[str, tuple[str, ...]] = {
    "Mystery": ("detective", "murder", "clue", "inspector", "suspect", "alibi", "case",
                "whodunit", "investigation", "crime"),
    "Romance": ("love", "heart", "wedding", "kiss", "passion", "romance", "courtship",
                "affair", "sweetheart", "longing"),
    "Science Fiction": ("starship", "galaxy", "robot", "alien", "planet", "android",
                        "colony", "time travel", "orbit", "future"),
    "Fantasy": ("dragon", "wizard", "sword", "kingdom", "quest", "sorcery", "elves",
                "prophecy", "enchanted", "realm"),
    "Cooking": ("recipes", "kitchen", "baking", "bread", "spices", "soup", "pastry",
                "vegetables", "flavour", "meals"),
    "History": ("empire", "war", "century", "revolution", "dynasty", "archive", "battle",
                "medieval", "ancient", "treaty"),
    "Travel": ("journey", "mountains", "coast", "railway", "islands", "road trip", "maps",
               "villages", "voyage", "desert"),
    "Children": ("bedtime", "puppy", "friendship", "school", "picture book", "rhymes",
                 "little bear", "playground", "giggles", "adventure"),
    "Poetry": ("verse", "sonnets", "poems", "stanza", "lyric", "ballad", "odes",
               "haiku", "rhythm", "elegy"),
    "Biography": ("life", "memoir", "career", "childhood", "letters", "diaries", "legacy",
                  "portrait", "pioneer", "years"),
}  # fmt: skip
_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai",
          "Lea", "Max", "Nia", "Oto", "Pia", "Rui", "Sol", "Tao", "Uma", "Vik", "Wen")  # fmt: skip
_ADJ = ("Silent", "Golden", "Hidden", "Last", "Broken", "Winter", "Secret", "Little", "Long",
        "Bright", "Quiet", "Wild", "Northern", "Lost", "Second")  # fmt: skip


def example_bookshop(
    n_items: int = 300,
    n_users: int = 200,
    n_interactions: int = 4000,
    seed: int = 7,
    category_sep: str = "|",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) frames of a generated bookshop.

    interactions: ``user_id`` (e-mail-like), ``item_id``, ``rating`` (1-5), ``timestamp``
    (ISO-8601, UTC). items: ``item_id``, ``title``, ``description``, ``category`` (one or two
    categories joined by ``category_sep``), ``year``.
    """
    rng = np.random.default_rng(seed)
    cats = list(BOOK_CATEGORIES)
    primary = rng.integers(0, len(cats), n_items)
    second = np.where(rng.random(n_items) < 0.25, rng.integers(0, len(cats), n_items), -1)
    second[second == primary] = -1
    titles, descs, categories = [], [], []
    for i in range(n_items):
        words = BOOK_CATEGORIES[cats[primary[i]]]
        w = rng.choice(len(words), 4, replace=False)
        titles.append(f"The {_ADJ[rng.integers(len(_ADJ))]} {words[w[0]].title()}")
        extra = ""
        names = [cats[primary[i]]]
        if second[i] >= 0:
            other = BOOK_CATEGORIES[cats[second[i]]]
            extra = f" with a touch of {other[rng.integers(len(other))]}"
            names.append(cats[second[i]])
        descs.append(
            f"A book about {words[w[1]]} and {words[w[2]]}, where {_NAMES[i % len(_NAMES)]} "
            f"meets {words[w[3]]}{extra}."
        )
        categories.append(category_sep.join(names))
    items = pd.DataFrame(
        {
            "item_id": [f"BK-{i + 1:05d}" for i in range(n_items)],
            "title": titles,
            "description": descs,
            "category": categories,
            "year": 1950 + rng.integers(0, 75, n_items),
        }
    )
    # Readers: one or two favourite categories; 80% of their reading from those.
    fav1 = rng.integers(0, len(cats), n_users)
    fav2 = rng.integers(0, len(cats), n_users)
    popularity = rng.zipf(1.6, n_items).clip(1, 50).astype(np.float64)
    member = np.zeros((len(cats), n_items), dtype=bool)
    member[primary, np.arange(n_items)] = True
    has2 = second >= 0
    member[second[has2], np.flatnonzero(has2)] = True
    activity = rng.zipf(1.8, n_users).clip(1, 40).astype(np.float64)
    per_user = np.maximum(3, np.rint(activity / activity.sum() * n_interactions)).astype(int)
    rows_u: list[int] = []
    rows_i: list[int] = []
    for u in range(n_users):
        # 80% of a reader's choices from their favourites (weighted 0.65/0.35), sampled
        # without replacement; about 3% are re-reads (duplicates, as real logs have).
        w = popularity * (
            0.2 / n_items
            + 0.8
            * (
                0.65 * member[fav1[u]] / member[fav1[u]].sum()
                + 0.35 * member[fav2[u]] / member[fav2[u]].sum()
            )
        )
        k = min(int(per_user[u]), n_items // 2)
        chosen = rng.choice(n_items, size=k, replace=False, p=w / w.sum())
        rereads = chosen[rng.random(k) < 0.03]
        picks = np.concatenate([chosen, rereads])
        rows_u += [u] * len(picks)
        rows_i += picks.tolist()
    liked = member[fav1[rows_u], rows_i] | member[fav2[rows_u], rows_i]
    rows_r = np.clip(np.rint(rng.normal(np.where(liked, 4.2, 2.6), 0.8)), 1, 5).astype(int)
    start = pd.Timestamp("2023-01-01T00:00:00Z")
    seconds = np.sort(rng.integers(0, 2 * 365 * 86400, len(rows_u)))
    when = start + pd.to_timedelta(seconds, unit="s")
    interactions = pd.DataFrame(
        {
            "user_id": [f"reader{u:04d}@example.com" for u in rows_u],
            "item_id": items["item_id"].to_numpy()[rows_i],
            "rating": rows_r,
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    return interactions, items


def write_example(out: str | Path, category_sep: str = "|", **kw: int) -> dict[str, Path]:
    """Write ``interactions.csv`` and ``items.csv`` of :func:`example_bookshop` into ``out``."""
    from frugalrec._io import atomic_path

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    inter, items = example_bookshop(category_sep=category_sep, **kw)
    paths = {"interactions": d / "interactions.csv", "items": d / "items.csv"}
    for frame, path in ((inter, paths["interactions"]), (items, paths["items"])):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    return paths
