"""The grounding guard: an explanation may name only entities in its evidence.

Checked entity kinds: catalogue titles (any title of the catalogue that is not the item or a
cited history item), names (a capitalised word that is not the first word of a sentence and
belongs to no evidence title or attribute: people, studios, places), genres/attributes (a
genre word for a genre outside the evidence) and years (a year or decade that no evidence
item has). The check is deliberately strict: a false rejection costs only a plainer
sentence (the template one), a false acceptance would serve an invented fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from frugalrec.llm.evidence import Evidence
from frugalrec.pipeline.query import GENRE_WORDS

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'&.-]*")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_DECADE = re.compile(r"\b(?:'|’)?(\d0)'?s\b")
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El)$")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[\"“(]\s*)$")


def normalise_title(title: str) -> str:
    """``"Usual Suspects, The (1995)"`` -> ``"the usual suspects"``: year and bracketed
    alternative titles dropped, a trailing article moved to the front, lower case."""
    t = re.sub(r"\s*\([^)]*\)", "", str(title)).strip()
    if m := _ARTICLE.match(t):
        t = f"{m.group(2)} {m.group(1)}"
    return " ".join(w.lower() for w in _WORD.findall(t))


@dataclass
class GuardResult:
    ok: bool
    violations: list[str] = field(default_factory=list)


class Guard:
    """Rejects explanations that name titles, people or attributes outside their evidence."""

    def __init__(self, items: pd.DataFrame) -> None:
        self._titles: dict[tuple[str, ...], int] = {}
        self._one_word: set[str] = set()
        for i, t in enumerate(items["title"].astype(str)):
            key = tuple(normalise_title(t).split())
            if len(key) >= 2:
                self._titles.setdefault(key, i)
            elif key:  # capitalised one-word titles are caught with the names below
                self._one_word.add(key[0])
        self._max_len = max((len(k) for k in self._titles), default=0)
        self._by_first: dict[str, list[tuple[str, ...]]] = {}
        for key in self._titles:
            self._by_first.setdefault(key[0], []).append(key)
        # Longest first, sorted once here rather than per word of every checked sentence.
        for keys in self._by_first.values():
            keys.sort(key=len, reverse=True)
        genre_names = set(GENRE_WORDS.values())
        if "genres" in items.columns:
            genre_names |= {g for gs in items["genres"].dropna().astype(str) for g in gs.split("|")}
        self._genre_of = {w.lower(): g for w, g in GENRE_WORDS.items()}
        self._genre_of.update({g.lower(): g for g in genre_names if g})
        self._genre_re = re.compile(
            r"\b("
            + "|".join(re.escape(w) for w in sorted(self._genre_of, key=len, reverse=True))
            + r")s?\b",
            re.IGNORECASE,
        )

    def check(self, text: str, evidence: Evidence) -> GuardResult:
        """Whether ``text`` names only entities from ``evidence`` (and which ones it doesn't)."""
        bad: list[str] = []
        if not text.strip():
            return GuardResult(False, ["empty"])
        allowed_items = evidence.item_indices()
        allowed_words = {"i", "i'm", "i'd", "i've", "ok"}
        for t in evidence.titles():
            allowed_words.update(w.lower().rstrip(".") for w in _WORD.findall(t))
        allowed_genres = set(evidence.genres) | {g for g, _ in evidence.shared_genres}
        allowed_genres |= {t for t in evidence.query_terms if not t.startswith("year ")}
        allowed_words.update(g.lower() for g in allowed_genres)
        for g in allowed_genres:
            allowed_words.update(w.lower() for w in _WORD.findall(g))

        words = [(m.group(0), m.start()) for m in _WORD.finditer(text)]
        lower = [w.lower().rstrip(".") for w, _ in words]
        # Titles: longest catalogue title starting at each capitalised word.
        for p, (w, _) in enumerate(words):
            if not w[0].isupper():
                continue
            for key in self._by_first.get(lower[p], ()):
                if tuple(lower[p : p + len(key)]) == key:
                    if self._titles[key] not in allowed_items and not self._inside_allowed(
                        key, evidence
                    ):
                        bad.append(f"title: {' '.join(key)}")
                    break
        # Names: capitalised words that no evidence entity explains (sentence starts exempt).
        for (w, pos), lw in zip(words, lower, strict=True):
            if not w[0].isupper() or lw in allowed_words:
                continue
            if lw not in self._one_word and _SENTENCE_START.search(text[:pos]):
                continue
            bad.append(f"{'title' if lw in self._one_word else 'name'}: {w}")
        # Genres/attributes, outside the evidence titles ("Star Wars" is not the War genre).
        masked = text
        for t in evidence.titles():
            parts = [re.escape(w) for w in _WORD.findall(re.sub(r"\s*\([^)]*\)", "", t))]
            if m := _ARTICLE.match(re.sub(r"\s*\([^)]*\)", "", t).strip()):
                parts = [re.escape(w) for w in _WORD.findall(f"{m.group(2)} {m.group(1)}")]
            if parts:
                masked = re.sub(r"\W+".join(parts), " ", masked, flags=re.IGNORECASE)
        for m in self._genre_re.finditer(masked):
            g = self._genre_of[m.group(1).lower()]
            if g not in allowed_genres:
                bad.append(f"genre: {m.group(1)}")
        # Years and decades.
        years = {y for y in [evidence.year, *(self._year_of(t) for t in evidence.titles())] if y}
        for m in _YEAR.finditer(masked):
            y = int(m.group(1))
            ok = y in years if not m.group(0).endswith("s") else any(y <= v < y + 10 for v in years)
            if not ok:
                bad.append(f"year: {m.group(0)}")
        for m in _DECADE.finditer(masked):
            d = int(m.group(1))
            if not any(v % 100 // 10 * 10 == d for v in years):
                bad.append(f"decade: {m.group(0)}")
        return GuardResult(not bad, sorted(set(bad)))

    @staticmethod
    def _year_of(title: str) -> int | None:
        m = re.search(r"\((\d{4})\)", title)
        return int(m.group(1)) if m else None

    @staticmethod
    def _inside_allowed(key: tuple[str, ...], evidence: Evidence) -> bool:
        """A catalogue title that is part of an evidence title ("Star Wars" inside "Star
        Wars: Episode...") names that evidence item, not another one."""
        phrase = " ".join(key)
        return any(phrase in normalise_title(t) for t in evidence.titles())
