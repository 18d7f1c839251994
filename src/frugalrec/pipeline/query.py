"""Natural-language requests: rules pull out hard constraints, an encoder ranks the rest.

"a funny animated movie for kids, no horror, from the 90s" becomes
``QueryIntent(text="a funny animated movie for kids", include={"Comedy","Animation",
"Children's"}, exclude={"Horror"}, year_min=1990, year_max=1999)``. Constraints are hard
filters (an excluded genre or a year outside the range never appears); the free text is
encoded with the same tier as the catalogue and ranked by cosine, optionally blended with
the user's profile. Rules first: they cost microseconds and never hallucinate.

The category words come from the catalogue itself (its category column): on a bookshop
"a detective story, no romance" asks for Mystery and excludes Romance. ml-100k's genre list
is only the vocabulary of last resort, for a caller that names none.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from frugalrec.privacy.scrub import scrub_text

# Words people use -> ml-100k genre names. Longer phrases are matched first.
GENRE_WORDS: dict[str, str] = {
    "sci-fi": "Sci-Fi", "science fiction": "Sci-Fi", "scifi": "Sci-Fi", "space": "Sci-Fi",
    "film-noir": "Film-Noir", "film noir": "Film-Noir", "noir": "Film-Noir",
    "animated": "Animation", "animation": "Animation", "cartoon": "Animation",
    "cartoons": "Animation", "kids": "Children's", "children": "Children's",
    "children's": "Children's", "family": "Children's", "child": "Children's",
    "funny": "Comedy", "comedy": "Comedy", "comedies": "Comedy", "hilarious": "Comedy",
    "laugh": "Comedy", "horror": "Horror", "scary": "Horror", "frightening": "Horror",
    "romantic": "Romance", "romance": "Romance", "love story": "Romance",
    "action": "Action", "adventure": "Adventure", "adventures": "Adventure",
    "crime": "Crime", "gangster": "Crime", "documentary": "Documentary",
    "documentaries": "Documentary", "drama": "Drama", "dramas": "Drama",
    "fantasy": "Fantasy", "musical": "Musical", "musicals": "Musical",
    "mystery": "Mystery", "mysteries": "Mystery", "whodunit": "Mystery",
    "thriller": "Thriller", "thrillers": "Thriller", "suspense": "Thriller",
    "war": "War", "western": "Western", "westerns": "Western", "cowboy": "Western",
}  # fmt: skip
# Everyday words for categories: a data table (``category_words.json``, beside this module)
# of phrase -> alternatives, each a list of category names (lower case) the phrase asks for
# together ("rom-com" -> comedy + romance); the first alternative the catalogue has in full
# is used. A catalogue extends or overrides it with a table of its own (``words=``).
CategoryWords = Mapping[str, Sequence[Sequence[str]]]
_WORDS_FILE = Path(__file__).with_name("category_words.json")


def load_category_words(
    path: str | os.PathLike[str] | None = None,
) -> dict[str, tuple[tuple[str, ...], ...]]:
    """A category-word table: JSON ``{"words": {phrase: [[category, ...], ...]}}`` (or the bare
    mapping) at ``path``; the packaged table without one. Phrases and names are lower-cased;
    a malformed entry is a ``ValueError`` naming it."""
    raw = json.loads(Path(path or _WORDS_FILE).read_text(encoding="utf-8"))
    table = raw.get("words", raw) if isinstance(raw, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a JSON object of phrase -> [[category, ...], ...]")
    out: dict[str, tuple[tuple[str, ...], ...]] = {}
    for phrase, alts in table.items():
        if phrase.startswith("_"):
            continue
        ok = (
            isinstance(alts, list)
            and alts
            and all(
                isinstance(a, list) and a and all(isinstance(c, str) and c for c in a) for a in alts
            )
        )
        if not ok or not phrase.strip():
            raise ValueError(f"{path}: entry {phrase!r} must be a list of lists of category names")
        out[_norm_phrase(phrase)] = tuple(tuple(c.lower() for c in a) for a in alts)
    return out


def _norm_phrase(phrase: str) -> str:
    return re.sub(r"\s+", " ", phrase.lower()).strip()


# Category names too generic to be read as a request for them.
_GENERIC = {"other", "others", "misc", "general", "none", "all", "new", "unknown", "various"}
# Words that may stand between a negation and what it negates ("isn't a", "without any").
_LEAD = (
    r"(?:(?:a|an|the|any|anything|more|of|with|for|some|much|single|real|kind of|sort of|"
    r"that's|that is|it's|it is|too much)\s+)*"
)
_NEG_WORDS = (
    r"(?:no|not|never|without|except|excluding|avoid|nothing|none|anything but|but not|"
    r"isn'?t|is not|aren'?t|are not|wasn'?t|was not|don'?t want|do not want|don'?t like|"
    r"not into|no more|skip|hate|rather than|instead of|other than|free of|minus)"
)
# "not too gory", "nothing very scary": a degree, neither a request nor an exclusion.
_DEGREE = r"(?:no|not|nothing|none)\s+(?:too|very|overly|so|that|particularly|especially)"
# ml-100k's genre names: the vocabulary when a caller names none (the reference dataset).
DEFAULT_CATEGORIES: tuple[str, ...] = tuple(sorted(set(GENRE_WORDS.values())))


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.lower().replace("'s", "").replace("_", " ")).strip()


def _forms(phrase: str) -> set[str]:
    """A phrase, its simple plural/singular forms (last word only), each written with
    hyphens or spaces between its words ("time travel" = "time-travel")."""
    out = _singular_plural(phrase)
    return out | {f.replace(" ", "-") for f in out} | {f.replace("-", " ") for f in out}


def _singular_plural(phrase: str) -> set[str]:
    out = {phrase}
    head, _, last = phrase.rpartition(" ")
    pre = f"{head} " if head else ""
    if last.endswith("ies") and len(last) > 4:
        out.add(pre + last[:-3] + "y")
    elif last.endswith("es") and len(last) > 4:
        out.add(pre + last[:-2])
        out.add(pre + last[:-1])
    elif last.endswith("s") and len(last) > 3:
        out.add(pre + last[:-1])
    elif len(last) > 3:  # not "war" -> "wars" ("Star Wars" is not a war request)
        out.add(pre + (last[:-1] + "ies" if last.endswith("y") else last + "s"))
        if last.endswith(("ch", "sh", "x")):
            out.add(pre + last + "es")
    return out


@dataclass(frozen=True)
class _Vocabulary:
    """Phrase -> category names for one catalogue, with its compiled rules."""

    phrases: dict[str, frozenset[str]]
    negation: re.Pattern[str]
    positive: re.Pattern[str]
    degree: re.Pattern[str]


_VOCABS: dict[tuple[object, ...], _Vocabulary] = {}
CATEGORY_WORDS: dict[str, tuple[tuple[str, ...], ...]] = load_category_words()


def _words_key(words: CategoryWords | None) -> tuple[object, ...]:
    if not words:
        return ()
    return tuple(sorted((k, tuple(tuple(a) for a in v)) for k, v in words.items()))


def _vocabulary(categories: tuple[str, ...], words: CategoryWords | None = None) -> _Vocabulary:
    """The rules for a catalogue's categories: each name (and its plural or singular, with
    '-' read as a space too), and the phrases of the category-word table (the packaged one,
    extended or overridden by ``words``) whose categories the catalogue has."""
    key = (categories, _words_key(words))
    cached = _VOCABS.get(key)
    if cached is not None:
        return cached
    by_norm: dict[str, set[str]] = {}
    for c in categories:
        by_norm.setdefault(_norm(c), set()).add(c)
    phrases: dict[str, set[str]] = {}
    for n, names in by_norm.items():
        if n in _GENERIC or len(n) < 3:
            continue
        for f in _forms(n) | (_forms(n.replace("-", " ")) if "-" in n else set()):
            phrases.setdefault(f, set()).update(names)
    table = dict(CATEGORY_WORDS)
    if words:
        table.update({_norm_phrase(k): tuple(tuple(c.lower() for c in a) for a in v)
                      for k, v in words.items()})  # fmt: skip
    found: dict[str, set[str]] = {}
    for word, alts in table.items():
        for alt in alts:
            hits = [by_norm.get(_norm(t)) for t in alt]
            if all(hits):
                found[word] = set().union(*(h for h in hits if h))
                break
    for word, names in found.items():  # "cop" reads "cops" too, unless the table says
        for f in _forms(word):
            if f == word or f not in table:
                phrases.setdefault(f, set()).update(names)
    if not phrases:
        never = re.compile(r"(?!x)x")
        vocab = _Vocabulary({}, never, never, never)
    else:
        any_phrase = "|".join(re.escape(w) for w in sorted(phrases, key=len, reverse=True))
        one = rf"(?:{any_phrase})s?"
        # A negation takes its category and any joined by "or"/"nor" ("no horror or gore");
        # one free word may stand between ("no sappy romance").
        more = rf"(?:\s*,?\s*(?:or|nor)\s+{_LEAD}{one})*"
        neg = rf"\b{_NEG_WORDS}\s+{_LEAD}(?:[a-z-]+\s+)??{one}{more}\b"
        vocab = _Vocabulary(
            {k: frozenset(v) for k, v in phrases.items()},
            re.compile(neg, re.IGNORECASE),
            re.compile(rf"\b({any_phrase})s?\b", re.IGNORECASE),
            re.compile(rf"\b{_DEGREE}\s+(?:[a-z-]+\s+)??{one}\b", re.IGNORECASE),
        )
    if len(_VOCABS) > 32:
        _VOCABS.clear()
    _VOCABS[key] = vocab
    return vocab


def category_phrases(
    categories: Sequence[str], words: CategoryWords | None = None
) -> dict[str, frozenset[str]]:
    """Every phrase the rules read as a request for categories of this catalogue (names,
    their plural/singular, the category-word table's everyday words) -> those categories."""
    return dict(_vocabulary(tuple(sorted(categories)), words).phrases)


def catalogue_categories(items: pd.DataFrame) -> tuple[str, ...]:
    """The catalogue's own category names (its '|'-joined ``genres`` column), sorted."""
    return tuple(sorted(_item_arrays(items)[1]))


_Y = r"((?:1[89]|20)\d\d|'\d\d)"  # 1980, '80
_DECADE_WORDS = {"twenties": 2, "thirties": 3, "forties": 4, "fifties": 5, "sixties": 6,
                 "seventies": 7, "eighties": 8, "nineties": 9}  # fmt: skip
_DECADE = re.compile(
    r"\b(?:(?:from|in|of|during)\s+)?(?:the\s+)?(?:(early|mid|late)[- ]?)?(?:the\s+)?"
    r"(?:'?(?:(19|20)?(\d)0)'?s|(?:nineteen[- ]?)?(" + "|".join(_DECADE_WORDS) + r"))\b",
    re.IGNORECASE,
)
# A negation right before a decade: "nothing from the nineties", "not the 80s", "anything but
# the seventies" (the decade is then excluded, not asked for).
_NEG_BEFORE = re.compile(
    r"\b(?:nothing|not|no|never|but|except|excluding|avoid)\s+(?:(?:made|set|released|"
    r"filmed|shot|anything|stuff|films?|movies?)\s+)?$",
    re.IGNORECASE,
)
# After a decade: "the seventies or later", "the 80s onwards" (open above); "or earlier".
_DECADE_ON = re.compile(
    r"^\s*(?:or|and)\s+(?:later|after|newer|since|up)\b|^\s*on(?:wards?)?\b", re.I
)
_DECADE_UNTIL = re.compile(r"^\s*(?:or|and)\s+(?:earlier|before|older)\b", re.IGNORECASE)
# "not too modern", "nothing very old": a degree says neither newer nor older.
_TIME_DEGREE = re.compile(rf"\b{_DEGREE}\s+[a-z-]+", re.IGNORECASE)
_RANGE = re.compile(
    rf"\b(?:between\s+{_Y}\s+and\s+{_Y}|from\s+{_Y}\s*(?:to|till|until|through|-|–)\s*{_Y}|"
    rf"{_Y}\s*(?:-|–|to)\s*{_Y})\b",
    re.IGNORECASE,
)
_NOT = r"(?:nothing|none|no|not|never)\s+(?:\w+\s+){0,2}?"
# Inclusive lower bounds: "nothing older than 1990", "not before 1980", "1950 or later".
_MIN_INCL = re.compile(
    rf"\b(?:{_NOT}(?:before|older\s+than|earlier\s+than|prior\s+to)\s+{_Y}|"
    rf"{_Y}\s+(?:or|and)\s+(?:later|after|newer|since|up)|{_Y}\s+onwards?|"
    rf"(?:since|from)\s+{_Y}\s+(?:on|onwards?)|since\s+{_Y})\b",
    re.IGNORECASE,
)
# Inclusive upper bounds: "nothing after 1959", "1970 or earlier", "up to 1980".
_MAX_INCL = re.compile(
    rf"\b(?:{_NOT}(?:after|newer\s+than|later\s+than|since)\s+{_Y}|"
    rf"{_Y}\s+(?:or|and)\s+(?:earlier|before|older)|(?:up\s+to|until|till|through)\s+{_Y})\b",
    re.IGNORECASE,
)
_BEFORE = re.compile(rf"\b(?:before|older\s+than|earlier\s+than|prior\s+to|pre-?)\s*{_Y}\b", re.I)
_AFTER = re.compile(rf"\b(?:after|newer\s+than|later\s+than|post-?)\s*{_Y}\b", re.IGNORECASE)
_FROM_YEAR = re.compile(rf"\b(?:from|in|of)\s+{_Y}\b", re.IGNORECASE)
_OLDER = re.compile(
    r"\b(?:older|oldies?|old[- ]fashioned|old[- ]school|classics?|vintage|golden\s+age|silent|"
    r"black[- ]and[- ]white|old\s+(?:films?|movies?|pictures?|ones?|stuff|titles?|books?))\b",
    re.IGNORECASE,
)
_NEWER = re.compile(
    r"\b(?:recent|recently|latest|newer|newest|lately|modern|contemporary|"
    r"(?:last|past)\s+(?:few|couple\s+of)\s+years|brand[- ]new|"
    r"new\s+(?:films?|movies?|releases?|ones?|stuff|titles?|books?))\b",
    re.IGNORECASE,
)


@dataclass
class QueryIntent:
    """What a request asks for: free text to embed plus hard constraints."""

    raw: str
    text: str
    include: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    year_min: int | None = None
    year_max: int | None = None
    parser: str = "rules"
    # "default": parsed with the reference vocabulary only; scoring against a catalogue
    # re-reads ``raw`` with that catalogue's categories (see ``for_catalogue``).
    vocabulary: str = "given"

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "include_genres": sorted(self.include),
            "exclude_genres": sorted(self.exclude),
            "year_min": self.year_min,
            "year_max": self.year_max,
            "parser": self.parser,
        }


def parse_query(
    query: str,
    catalogue_years: tuple[int, int] | None = None,
    categories: tuple[str, ...] | list[str] | None = None,
    words: CategoryWords | None = None,
) -> QueryIntent:
    """Rules: negated categories, mentioned categories, decades, year ranges, "older"/"recent".

    ``categories`` is the catalogue's own category vocabulary (``catalogue_categories``):
    a category is recognised by its name, its plural or singular, or an everyday word for
    it from the category-word table ("detective" -> Mystery, "rom-com" -> Comedy + Romance;
    ``words`` extends the packaged table, see ``load_category_words``). Without it the
    reference (ml-100k) vocabulary is used and scoring against a catalogue re-reads the
    request with that catalogue's categories. Negations ("no", "not a", "isn't a",
    "without any", "nothing scary") exclude; "not too gory" is a degree, neither.
    Years: decades in digits or words ("the 70s", "the seventies", "late 80s"), ranges,
    bounds ("after 1990", "nothing older than 1990" = 1990 on, "1970 or earlier").
    ``catalogue_years`` (min, max) anchors relative words: "older"/"classic" means the
    older half of the catalogue's span, "recent" its newest twentieth. The request is
    PII-scrubbed first: ``intent.raw`` and ``intent.text`` (what gets encoded, logged or
    cached) never carry an e-mail, phone or card number the user typed.
    """
    query = scrub_text(query)
    text = query.strip()
    given = categories is not None
    cats = tuple(sorted(DEFAULT_CATEGORIES if categories is None else categories))
    vocab = _vocabulary(cats, words)
    intent = QueryIntent(raw=query, text=text, vocabulary="catalogue" if given else "default")

    def names(span: str) -> set[str]:
        return set().union(
            *(_phrase_names(vocab, m.group(1)) for m in vocab.positive.finditer(span))
        )

    stripped = vocab.degree.sub(" ", text)
    for m in vocab.negation.finditer(stripped):
        intent.exclude |= names(m.group(0))
    stripped = vocab.negation.sub(" ", stripped)
    intent.include = names(stripped) - intent.exclude
    _parse_years(intent, stripped, catalogue_years)
    # What is left after removing the constraint phrases is what the encoder should see.
    for rx in (vocab.negation, *_YEAR_RULES):
        stripped = rx.sub(" ", stripped)
    intent.text = re.sub(r"\s+", " ", stripped).strip(" ,.;") or text
    return intent


def _phrase_names(vocab: _Vocabulary, phrase: str) -> frozenset[str]:
    p = phrase.lower()
    return vocab.phrases.get(p) or vocab.phrases.get(p[:-1], frozenset()) if p else frozenset()


_YEAR_RULES = (_RANGE, _MIN_INCL, _MAX_INCL, _BEFORE, _AFTER, _FROM_YEAR, _DECADE)


def _decade_base(decade: int, span: tuple[int, int] | None) -> int:
    """The century of a two-digit decade: the one inside the catalogue's span, else the
    1900s from the 30s on."""
    if span is not None:
        inside = [c for c in (1900, 2000) if span[0] - 9 <= c + decade * 10 <= span[1]]
        if inside:
            return inside[-1]
    return 2000 if decade <= 2 else 1900


def _year(token: str, span: tuple[int, int] | None) -> int:
    """A year token: 4 digits, or "'80" (its century as for a decade)."""
    if token.startswith("'"):
        n = int(token[1:])
        return _decade_base(n // 10, span) + n
    return int(token)


def _first_year(m: re.Match[str], span: tuple[int, int] | None) -> int:
    return _year(next(g for g in m.groups() if g), span)


def _parse_years(intent: QueryIntent, text: str, span: tuple[int, int] | None) -> None:
    """Set ``intent``'s year range from ``text`` (in place)."""
    if m := _RANGE.search(text):
        ys = [_year(g, span) for g in m.groups() if g]
        intent.year_min, intent.year_max = min(ys), max(ys)
        return
    decades: list[tuple[int, int]] = []
    negated: list[tuple[int, int]] = []
    open_min: list[int] = []
    open_max: list[int] = []
    for m in _DECADE.finditer(text):  # "the forties or fifties": both
        part, century, digit, word = m.group(1), m.group(2), m.group(3), m.group(4)
        decade = _DECADE_WORDS[word.lower()] if word else int(digit)
        base = int(century) * 100 if century else _decade_base(decade, span)
        lo = base + decade * 10
        off = {"early": (0, 3), "mid": (3, 6), "late": (6, 9)}.get((part or "").lower(), (0, 9))
        neg = _NEG_BEFORE.search(text[: m.start()].rstrip() + " ")
        if neg:
            negated.append((lo + off[0], lo + off[1]))
        elif _DECADE_ON.search(text[m.end() :]):
            open_min.append(lo + off[0])
        elif _DECADE_UNTIL.search(text[m.end() :]):
            open_max.append(lo + off[1])
        else:
            decades.append((lo + off[0], lo + off[1]))
    if open_min or open_max:
        intent.year_min = min(open_min) if open_min else None
        intent.year_max = max(open_max) if open_max else None
    elif decades:
        intent.year_min, intent.year_max = min(d[0] for d in decades), max(d[1] for d in decades)
    elif negated:
        # One range can only keep one side of an excluded decade: the side with more of the
        # catalogue's years (the whole remaining side where the decade is at an end).
        lo, hi = min(d[0] for d in negated), max(d[1] for d in negated)
        first, last = span if span is not None else (1900, 2029)
        if hi - first >= last - lo:  # more years before the decade than after it
            intent.year_max = lo - 1
        else:
            intent.year_min = hi + 1
    rest = text
    if m := _MIN_INCL.search(rest):
        intent.year_min = _first_year(m, span)
        rest = _MIN_INCL.sub(" ", rest)
    if m := _MAX_INCL.search(rest):
        intent.year_max = _first_year(m, span)
        rest = _MAX_INCL.sub(" ", rest)
    if m := _BEFORE.search(rest):
        intent.year_max = _first_year(m, span) - 1
    if m := _AFTER.search(rest):
        intent.year_min = _first_year(m, span) + 1
    for rx in (_BEFORE, _AFTER):
        rest = rx.sub(" ", rest)
    if intent.year_min is None and intent.year_max is None and (m := _FROM_YEAR.search(rest)):
        intent.year_min = intent.year_max = _first_year(m, span)
    rest = _TIME_DEGREE.sub(" ", rest)
    if span is not None:
        lo, hi = span
        # "old": the older half of the span (ml-100k: up to 1960); "recent": its newest
        # twentieth (1995 on), at least one year.
        if _OLDER.search(rest) and intent.year_max is None:
            intent.year_max = lo + (hi - lo) // 2
        if _NEWER.search(rest) and intent.year_min is None:
            intent.year_min = hi - max(1, (hi - lo) // 20)
    if (
        intent.year_min is not None
        and intent.year_max is not None
        and intent.year_min > intent.year_max
    ):
        intent.year_min, intent.year_max = intent.year_max, intent.year_min


def for_catalogue(intent: QueryIntent, items: pd.DataFrame) -> QueryIntent:
    """Re-read a request parsed with the reference vocabulary against ``items``' own
    categories, in place (so what a caller reports is what was applied). Intents built by
    hand or parsed with a catalogue's vocabulary are left as they are."""
    if intent.vocabulary != "default" or "genres" not in items:
        return intent
    cats = catalogue_categories(items)
    if set(cats) <= set(DEFAULT_CATEGORIES):
        intent.vocabulary = "catalogue"  # the reference vocabulary is this catalogue's
        return intent
    again = parse_query(intent.raw, None, cats)
    intent.include, intent.exclude, intent.vocabulary = again.include, again.exclude, "catalogue"
    return intent


def constraint_mask(intent: QueryIntent, items: pd.DataFrame) -> np.ndarray:
    """bool [n_items]: items that satisfy every hard constraint of ``intent``."""
    for_catalogue(intent, items)
    ok = np.ones(len(items), dtype=bool)
    if intent.exclude and "genres" in items:
        ok &= _genre_hits(items, intent.exclude) == 0
    if (intent.year_min is not None or intent.year_max is not None) and "year" in items:
        year = _item_arrays(items)[2]
        lo = -np.inf if intent.year_min is None else intent.year_min
        hi = np.inf if intent.year_max is None else intent.year_max
        ok &= (year >= lo) & (year <= hi)  # unknown year fails a year constraint
    return ok


def genre_match(intent: QueryIntent, items: pd.DataFrame) -> np.ndarray:
    """float32 [n_items]: share of the requested genres each item has (0 if none asked)."""
    for_catalogue(intent, items)
    if not intent.include or "genres" not in items:
        return np.zeros(len(items), dtype=np.float32)
    return (_genre_hits(items, intent.include) / len(intent.include)).astype(np.float32)


# Genre multi-hot and numeric years per item table, built once: a served catalogue answers
# many requests, and re-splitting every item's genre string per request cost ~15 ms on ml-100k.
_TABLES: dict[int, tuple[pd.DataFrame, np.ndarray, dict[str, int], np.ndarray]] = {}


def _item_arrays(items: pd.DataFrame) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """(float32 genre multi-hot [n_items, n_genres], genre -> column, float64 years)."""
    cached = _TABLES.get(id(items))
    if cached is None or cached[0] is not items:
        if len(_TABLES) > 8:
            _TABLES.clear()
        if "genres" in items:
            hot = items["genres"].fillna("").astype(str).str.get_dummies(sep="|")
        else:
            hot = pd.DataFrame(index=items.index)
        if "year" in items:
            year = pd.to_numeric(items["year"], errors="coerce")
            years = year.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            years = np.full(len(items), np.nan)
        cols = {str(c): i for i, c in enumerate(hot.columns)}
        cached = (items, hot.to_numpy(dtype=np.float32), cols, years)
        _TABLES[id(items)] = cached
    return cached[1], cached[2], cached[3]


def _genre_hits(items: pd.DataFrame, genres: set[str]) -> np.ndarray:
    """float32 [n_items]: how many of ``genres`` each item has."""
    hot, cols, _ = _item_arrays(items)
    idx = [cols[g] for g in genres if g in cols]
    if not idx:
        return np.zeros(len(items), dtype=np.float32)
    return np.asarray(hot[:, idx].sum(axis=1), dtype=np.float32)


def score_query(
    intent: QueryIntent,
    query_vector: np.ndarray,
    item_vectors: np.ndarray,
    items: pd.DataFrame,
    user_scores: np.ndarray | None = None,
    genre_weight: float = 0.5,
    user_weight: float = 0.3,
    popularity: np.ndarray | None = None,
    popularity_weight: float = 0.05,
) -> np.ndarray:
    """float32 [n_items]: cosine to the request (+ genre match, + user profile, + a small
    popularity prior), -inf where a hard constraint fails.

    ``user_scores`` (any scale) are min-max normalised before blending.
    """
    s = item_vectors @ query_vector
    s = s + np.float32(genre_weight) * genre_match(intent, items)
    if user_scores is not None:
        u = user_scores.astype(np.float32)
        finite = np.isfinite(u)
        if finite.any():
            lo, hi = u[finite].min(), u[finite].max()
            u = np.where(finite, (u - lo) / max(hi - lo, 1e-9), 0.0)
        s = (1 - user_weight) * s + user_weight * u
    if popularity is not None and len(popularity):
        p = np.log1p(popularity.astype(np.float32))
        s = s + np.float32(popularity_weight) * p / max(float(p.max()), 1e-9)
    return np.where(constraint_mask(intent, items), s, -np.inf).astype(np.float32)


# Words of a request that carry no constraint: what the rules leaving them means nothing.
_FILLER = frozenset(
    """a an the and or but of in on at to for with from by about as into like than that this
    these those it its some any something anything one ones i me my we our you your please
    want wanted looking look find show give need would could should can may might will just
    really very quite too so more most lots lot bit kind sort type maybe also only even
    movie movies film films picture pictures flick flicks watch watching see seen tonight
    book books read reading item items title titles
    night evening weekend good great nice best fun new old made set released from"""
    """ years year era is are was be it's that's there no not nothing none without isn't
    don't do get got have has put on up out all""".split()
)
_WORDS = re.compile(r"[a-z][a-z'-]*")


def unresolved_words(
    intent: QueryIntent,
    categories: tuple[str, ...] | list[str] | None = None,
    words: CategoryWords | None = None,
) -> list[str]:
    """Content words of the request that the rules mapped to no constraint, in order (e.g.
    "sword", "castles"): the hook for a parser beyond the rules. Category words (of
    ``categories`` and ``words``, as in ``parse_query``), decades, years, "older"/"recent"
    and filler words are resolved."""
    cats = tuple(sorted(DEFAULT_CATEGORIES if categories is None else categories))
    vocab = _vocabulary(cats, words)
    text = intent.text.lower()
    for rx in (vocab.degree, vocab.positive, _OLDER, _NEWER, *_YEAR_RULES):
        text = rx.sub(" ", text)
    return [w for w in _WORDS.findall(text) if w not in _FILLER and w.strip("'-") not in _FILLER]
