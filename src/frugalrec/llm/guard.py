"""The grounding checker: every claim of an explanation must be in its evidence.

It is independent of the code that writes explanations (:mod:`frugalrec.llm.explainers`):
it shares no code with it and reads only the sentence, the :class:`Evidence` and the
catalogue. It works on a whitelist, not a blacklist of capitalised words, so it does not
depend on case or position:

* a **title** of the catalogue (any case, anywhere in the sentence) must be the recommended
  item, a cited history item, or part of one of their titles;
* a **year** ("1987"), **decade** ("the 90s", "the nineties") or **percentage** must be one the
  evidence has (the items' years, the shared-genre shares);
* a **genre** word (catalogue genres and their everyday synonyms) must name a genre of the
  item, a shared genre or a requested one;
* **award** words (Oscar, award-winning, nominated, acclaimed...) are never evidence;
* every **other word** must belong to the evidence (its titles, genres, query terms) or to a
  small closed vocabulary of connective words (because, you, liked, this, film...). A name
  (Spielberg), a role (directed, starring) or any other unlisted claim fails.

Strict on purpose: a false rejection costs a plainer sentence, a false acceptance serves an
invented fact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from frugalrec.llm.evidence import Evidence
from frugalrec.pipeline.query import GENRE_WORDS

_TOKEN = re.compile(r"\d+(?:\.\d+)?%?s?|'\d0s|[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El)$")
_YEAR = re.compile(r"^(1[5-9]\d\d|20\d\d)$")
_DECADE = re.compile(r"^'?(1[5-9]\d0|20\d0|\d0)s$")

_DECADE_WORDS = {
    "twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60,
    "seventies": 70, "eighties": 80, "nineties": 90, "noughties": 0, "aughts": 0,
}  # fmt: skip
_AWARD_WORDS = frozenset(
    "oscar oscars academy award awards winning winner won win wins nominated nomination "
    "nominations acclaimed emmy emmys globe globes bafta palme cannes sundance prize "
    "prizewinning critics critic masterpiece best-selling bestseller bestselling".split()
)
# Connective words an explanation may use without evidence: function words and the
# vocabulary of "why this was recommended". No pronoun for a person, no role (directed,
# starring, written), no quality claim beyond liking.
_GENERIC = frozenset(
    """a an the and or but nor of in on at to for with from by as into than then so also too
    very more most much many lot lots plenty both each every any some another other others
    same similar similarly such like likes liked liking love loves loved enjoy enjoys enjoyed
    enjoying enjoyable fan fans favourite favorite favourites favorites taste tastes
    this that these those it its it's is are was were be been being will would could should
    may might can must shall do does did done has have had having get gets got
    you your yours you're you've you'll you'd yourself we our us i i'm i've i'd me my
    they them their there here where which who what why how because since given if as well
    not no just only even still again already yet now ever
    recommended recommend recommends recommending recommendation recommendations suggest
    suggested suggests pick picks picked choice chosen try worth watch watched watching
    read reading listen listening
    film films movie movies item items title titles book books product products one ones
    history request requested requests asked ask asking match matches matched matching
    share shares shared sharing common genre genres kind kinds type types style category
    categories themes theme mix blend combines combining combination
    people viewers readers users others someone anyone
    make makes made feel feels keep keeps see seen find found check out up next new
    good great nice fit fits fitting right perfect sure
    year years percent per cent
    """.split()
)


def normalise_title(title: str) -> str:
    """``"Usual Suspects, The (1995)"`` -> ``"the usual suspects"``: year and bracketed
    alternative titles dropped, a trailing article moved to the front, lower case."""
    t = re.sub(r"\s*\([^)]*\)", "", str(title)).strip()
    if m := _ARTICLE.match(t):
        t = f"{m.group(2)} {m.group(1)}"
    return " ".join(_tokens(t))


def _tokens(text: str) -> list[str]:
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    return _TOKEN.findall(text)


@dataclass
class GuardResult:
    ok: bool
    violations: list[str] = field(default_factory=list)


class Guard:
    """Checks that an explanation claims nothing its evidence does not hold."""

    def __init__(self, items: pd.DataFrame) -> None:
        titles = items["title"].astype(str).tolist()
        self._title_keys: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for i, t in enumerate(titles):
            for variant in {normalise_title(t), " ".join(_tokens(t))}:
                key = tuple(variant.split())
                if key and not (len(key) == 1 and key[0] in _GENERIC):
                    self._title_keys.setdefault(key[0], []).append((key, i))
        for keys in self._title_keys.values():
            keys.sort(key=lambda k: -len(k[0]))
        genre_names = set(GENRE_WORDS.values())
        if "genres" in items.columns:
            genre_names |= {g for gs in items["genres"].dropna().astype(str) for g in gs.split("|")}
        # word or phrase (as tokens) -> the genre it names
        self._genre_of: dict[tuple[str, ...], str] = {}
        for word, genre in [*GENRE_WORDS.items(), *((g, g) for g in genre_names if g)]:
            key = tuple(_tokens(word))
            if key:
                self._genre_of.setdefault(key, genre)
        self._genre_max = max((len(k) for k in self._genre_of), default=1)

    def check(self, text: str, evidence: Evidence) -> GuardResult:
        """Whether every claim of ``text`` is in ``evidence`` (and which ones are not)."""
        toks = _tokens(text)
        if not toks:
            return GuardResult(False, ["empty"])
        original = {t.lower(): t for t in re.findall(r"[^\W\d_]+", text)}
        bad: list[str] = []
        covered = [False] * len(toks)
        titles = [evidence.title, *(t for _, t, _ in evidence.because)]
        allowed_items = {evidence.item, *(j for j, _, _ in evidence.because)}
        norm_titles = [normalise_title(t) for t in titles]
        # Titles first: a catalogue title anywhere, in any case.
        for p in range(len(toks)):
            if covered[p]:
                continue
            for key, item in self._title_keys.get(toks[p], ()):
                if tuple(toks[p : p + len(key)]) != key:
                    continue
                phrase = " ".join(key)
                if item not in allowed_items and not any(phrase in t for t in norm_titles):
                    bad.append(f"title: {phrase}")
                covered[p : p + len(key)] = [True] * len(key)
                break
        # Genre words and phrases (longest first), outside titles.
        genres = set(evidence.genres) | {g for g, _ in evidence.shared_genres}
        genres |= set(evidence.query_terms)
        for n in range(self._genre_max, 0, -1):
            for p in range(len(toks) - n + 1):
                if any(covered[p : p + n]):
                    continue
                genre = self._genre_of.get(tuple(toks[p : p + n]))
                if genre is None:
                    continue
                if genre not in genres:
                    bad.append(f"genre: {' '.join(toks[p : p + n])}")
                covered[p : p + n] = [True] * n
        # Everything else, word by word.
        years = {y for y in [evidence.year, *map(_year_in, titles)] if y is not None}
        shares = {round(100 * s) for _, s in evidence.shared_genres}
        # The catalogue's own noun for its items ("books", "songs") is the evidence's too.
        noun = getattr(evidence, "noun", "")
        licensed = set(_words([*titles, *genres, *evidence.query_terms, noun]))
        licensed |= {noun.rstrip("s")} if noun else set()
        if evidence.popular:
            licensed |= {"popular", "popularity"}
        for p, tok in enumerate(toks):
            if covered[p]:
                continue
            if tok[0].isdigit() or tok[0] == "'":
                if (v := _number_violation(tok, years, shares)) is not None:
                    bad.append(v)
            elif tok in licensed:
                continue
            elif tok in _AWARD_WORDS:
                bad.append(f"award: {tok}")
            elif tok in _DECADE_WORDS:
                d = _DECADE_WORDS[tok]
                if not any(y % 100 // 10 * 10 == d for y in years):
                    bad.append(f"decade: {tok}")
            elif tok not in _GENERIC:
                word = original.get(tok, tok)
                bad.append(f"{'name' if word[:1].isupper() else 'claim'}: {word}")
        return GuardResult(not bad, sorted(set(bad)))


def _words(texts: Iterable[str]) -> Iterable[str]:
    for t in texts:
        yield from _tokens(t)


def _year_in(title: str) -> int | None:
    m = re.search(r"\((\d{4})\)", title)
    return int(m.group(1)) if m else None


def _number_violation(tok: str, years: set[int], shares: set[int]) -> str | None:
    """None if the number is evidence (a year, a decade of a year, a share), else why not."""
    if tok.endswith("%"):
        try:
            pct = round(float(tok[:-1]))
        except ValueError:
            return f"number: {tok}"
        return None if pct in shares else f"number: {tok}"
    if m := _DECADE.match(tok):
        d = int(m.group(1))
        ok = any((y // 10 * 10 == d) if d >= 100 else (y % 100 // 10 * 10 == d) for y in years)
        return None if ok else f"decade: {tok}"
    if _YEAR.match(tok):
        return None if int(tok) in years else f"year: {tok}"
    return None if tok.isdigit() and int(tok) in shares else f"number: {tok}"
