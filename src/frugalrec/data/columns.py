"""Which column of a user's file is which: common aliases, explicit names, "did you mean".

A file with ``user_id,item_id,ts`` or ``userId,movieId,timestamp`` loads without flags; any
other naming is given with a :class:`ColumnMap` (the CLI's ``--user-col`` ... flags). A
column that is asked for but missing is reported with the closest header names.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

# Canonical name -> names accepted without a flag (compared case-insensitively, the
# canonical name first). Kept short on purpose: a guess that picks the wrong column would
# be worse than asking.
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "user id", "customer_id", "customerid"),
    "item": ("item", "item_id", "itemid", "item id", "movieid", "movie_id", "product_id",
             "productid", "book_id", "bookid"),
    "rating": ("rating", "ratings", "stars"),
    "timestamp": ("timestamp", "ts", "time", "datetime", "date"),
    "title": ("title", "name"),
    "genres": ("genres", "genre", "category", "categories"),
    "year": ("year",),
}  # fmt: skip

# The CLI flag that names each canonical column (used in messages).
FLAGS = {
    "user": "--user-col",
    "item": "--item-col",
    "rating": "--rating-col",
    "timestamp": "--time-col",
    "title": "--title-col",
    "genres": "--category-col",
}


@dataclass(frozen=True)
class ColumnMap:
    """Explicit column names in the user's files (None: find it by its common aliases).

    ``category`` is a multi-valued column (``Mystery|Crime``) split on ``category_sep``; it
    becomes the catalogue's category vocabulary (query words, diversity, explanations).
    ``text`` (items file) limits the free-text columns that feed the text encoders; by
    default every other text column does.
    """

    user: str | None = None
    item: str | None = None
    rating: str | None = None
    timestamp: str | None = None
    title: str | None = None
    category: str | None = None
    category_sep: str = "|"
    text: tuple[str, ...] | None = None

    def explicit(self) -> dict[str, str]:
        """Canonical name -> the user's column name, for the columns named explicitly."""
        names = {
            "user": self.user,
            "item": self.item,
            "rating": self.rating,
            "timestamp": self.timestamp,
            "title": self.title,
            "genres": self.category,
        }
        return {k: v for k, v in names.items() if v}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["text"] = None if self.text is None else list(self.text)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ColumnMap:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"unknown column-map field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        kw = dict(raw)
        if kw.get("text") is not None:
            kw["text"] = tuple(kw["text"])
        return cls(**kw)


@dataclass
class Resolved:
    """The renaming that makes a header canonical, and what could not be found."""

    rename: dict[str, str] = field(default_factory=dict)  # user's name -> canonical
    missing: list[tuple[str, str]] = field(default_factory=list)  # (canonical, message)


def did_you_mean(name: str, header: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest header names, or ``""``."""
    lowered = {h.lower(): h for h in header}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=2, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?)"


def resolve_columns(
    header: list[str], wanted: tuple[str, ...], columns: ColumnMap | None
) -> Resolved:
    """Map ``header`` onto the canonical names in ``wanted``.

    An explicitly named column must exist; otherwise the first alias present wins. A
    canonical name that is neither named nor found by alias is reported in ``missing`` with
    a hint (closest header names, the flag that names it).
    """
    explicit = (columns or ColumnMap()).explicit()
    out = Resolved()
    by_lower: dict[str, str] = {}
    for h in header:
        by_lower.setdefault(h.lower(), h)
    taken: set[str] = set()
    for canon in wanted:
        if canon in explicit:
            name = explicit[canon]
            if name in header:
                out.rename[name] = canon
                taken.add(name)
            else:
                flag = FLAGS.get(canon, canon)
                hint = did_you_mean(name, header)
                msg = f"column {name!r} (from {flag}) not found{hint}; found: {header}"
                out.missing.append((canon, msg))
            continue
        found: str | None = None
        for alias in ALIASES.get(canon, (canon,)):
            hit = by_lower.get(alias)
            if hit is not None and hit not in taken:
                found = hit
                break
        if found is not None:
            out.rename[found] = canon
            taken.add(found)
    return out


def missing_message(canon: str, header: list[str]) -> str:
    """Why a required canonical column is missing, with aliases, flag and closest names."""
    aliases = [a for a in ALIASES.get(canon, (canon,)) if a != canon][:4]
    hint = did_you_mean(canon, header)
    flag = FLAGS.get(canon)
    how = f"; name yours with {flag}" if flag else ""
    also = f" or one of {aliases}" if aliases else ""
    return f"missing required column {canon!r}{also}{hint}{how} (found: {header})"
