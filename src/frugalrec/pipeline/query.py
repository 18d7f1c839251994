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

import re
from dataclasses import dataclass, field

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
# Words for categories other catalogues name differently: word -> category names it may
# mean (lower case; only those the catalogue has count).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "detective": ("mystery", "crime"), "detectives": ("mystery", "crime"),
    "whodunit": ("mystery",), "whodunits": ("mystery",), "murder mystery": ("mystery",),
    "sci-fi": ("sci-fi", "science fiction"), "scifi": ("sci-fi", "science fiction"),
    "science fiction": ("sci-fi", "science fiction"), "space": ("sci-fi", "science fiction"),
    "kids": ("children's", "children", "kids"), "children": ("children's", "children"),
    "child": ("children's", "children"), "family": ("children's", "children", "family"),
    "love story": ("romance",), "romantic": ("romance",), "recipes": ("cooking",),
    "cookbook": ("cooking",), "cookbooks": ("cooking",), "memoir": ("biography",),
    "memoirs": ("biography",), "poems": ("poetry",), "verse": ("poetry",),
}  # fmt: skip
# Category names too generic to be read as a request for them.
_GENERIC = {"other", "others", "misc", "general", "none", "all", "new", "unknown", "various"}
_LEAD = r"(?:(?:a|an|the|too|very|any|more)\s+)*"
_NEG_WORDS = r"(?:no|not|without|except|avoid|nothing|never|but not|anything but)"
# ml-100k's genre names: the vocabulary when a caller names none (the reference dataset).
DEFAULT_CATEGORIES: tuple[str, ...] = tuple(sorted(set(GENRE_WORDS.values())))


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.lower().replace("'s", "").replace("_", " ")).strip()


def _forms(phrase: str) -> set[str]:
    """A phrase and its simple plural/singular forms (last word only)."""
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


_VOCABS: dict[tuple[str, ...], _Vocabulary] = {}


def _vocabulary(categories: tuple[str, ...]) -> _Vocabulary:
    """The rules for a catalogue's categories: each name (and its plural or singular, with
    '-' read as a space too), the everyday words of ``GENRE_WORDS`` and ``SYNONYMS`` that
    name one of them."""
    cached = _VOCABS.get(categories)
    if cached is not None:
        return cached
    by_norm: dict[str, set[str]] = {}
    for c in categories:
        by_norm.setdefault(_norm(c), set()).add(c)
    phrases: dict[str, set[str]] = {}

    def add(phrase: str, names: set[str]) -> None:
        for f in _forms(phrase):
            phrases.setdefault(f, set()).update(names)

    for n, names in by_norm.items():
        if n in _GENERIC or len(n) < 3:
            continue
        add(n, names)
        if "-" in n:
            add(n.replace("-", " "), names)
    everyday = {w: (_norm(g),) for w, g in GENRE_WORDS.items()}
    for table in (everyday, SYNONYMS):
        for word, targets in table.items():
            hit = set().union(*(by_norm.get(t, set()) for t in targets))
            if hit:
                phrases.setdefault(word, set()).update(hit)
    if not phrases:
        never = re.compile(r"(?!x)x")
        vocab = _Vocabulary({}, never, never)
    else:
        alt = "|".join(re.escape(w) for w in sorted(phrases, key=len, reverse=True))
        vocab = _Vocabulary(
            {k: frozenset(v) for k, v in phrases.items()},
            re.compile(rf"\b{_NEG_WORDS}\s+{_LEAD}({alt})s?\b", re.IGNORECASE),
            re.compile(rf"\b({alt})\b", re.IGNORECASE),
        )
    if len(_VOCABS) > 32:
        _VOCABS.clear()
    _VOCABS[categories] = vocab
    return vocab


def catalogue_categories(items: pd.DataFrame) -> tuple[str, ...]:
    """The catalogue's own category names (its '|'-joined ``genres`` column), sorted."""
    return tuple(sorted(_item_arrays(items)[1]))


_DECADE = re.compile(r"\b(?:(?:from|in|of)\s+)?(?:the\s+)?(?:(19|20)?(\d)0)'?s\b", re.IGNORECASE)
_BETWEEN = re.compile(r"\bbetween\s+(\d{4})\s+and\s+(\d{4})\b", re.IGNORECASE)
_BEFORE = re.compile(r"\b(?:before|older than|prior to|pre-?)\s*(\d{4})\b", re.IGNORECASE)
_AFTER = re.compile(r"\b(?:after|since|newer than|post-?)\s*(\d{4})\b", re.IGNORECASE)
_FROM_YEAR = re.compile(r"\b(?:from|in|of)\s+(\d{4})\b", re.IGNORECASE)
_OLDER = re.compile(r"\b(?:older|classic|vintage|old\s+(?:films?|movies?))\b", re.IGNORECASE)
_NEWER = re.compile(r"\b(?:recent|latest|newer|new\s+(?:films?|movies?|releases?))\b", re.I)


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
) -> QueryIntent:
    """Rules: negated categories, mentioned categories, decades, year ranges, "older"/"recent".

    ``categories`` is the catalogue's own category vocabulary (``catalogue_categories``):
    a category is recognised by its name, its plural or singular, or an everyday word for
    it ("detective" -> Mystery, "kids" -> Children). Without it the reference (ml-100k)
    vocabulary is used and scoring against a catalogue re-reads the request with that
    catalogue's categories. ``catalogue_years`` (min, max) anchors relative words: "older"
    means the oldest third of the catalogue's span, "recent" the newest tenth. The request
    is PII-scrubbed first: ``intent.raw`` and ``intent.text`` (what gets encoded, logged or
    cached) never carry an e-mail, phone or card number the user typed.
    """
    query = scrub_text(query)
    text = query.strip()
    given = categories is not None
    vocab = _vocabulary(tuple(sorted(DEFAULT_CATEGORIES if categories is None else categories)))
    intent = QueryIntent(raw=query, text=text, vocabulary="catalogue" if given else "default")
    for m in vocab.negation.finditer(text):
        intent.exclude |= vocab.phrases[m.group(1).lower()]
    stripped = vocab.negation.sub(" ", text)
    for m in vocab.positive.finditer(stripped):
        intent.include |= vocab.phrases[m.group(1).lower()] - intent.exclude
    if m2 := _BETWEEN.search(stripped):
        intent.year_min, intent.year_max = sorted((int(m2.group(1)), int(m2.group(2))))
    else:
        if m3 := _DECADE.search(stripped):
            century = m3.group(1)
            decade = int(m3.group(2))
            base = int(century) * 100 if century else (2000 if decade <= 2 else 1900)
            intent.year_min, intent.year_max = base + decade * 10, base + decade * 10 + 9
        if m4 := _BEFORE.search(stripped):
            intent.year_max = int(m4.group(1)) - 1
        if m5 := _AFTER.search(stripped):
            intent.year_min = int(m5.group(1)) + 1
        if (m6 := _FROM_YEAR.search(stripped)) and intent.year_min is None:
            intent.year_min = intent.year_max = int(m6.group(1))
        if catalogue_years is not None:
            lo, hi = catalogue_years
            if _OLDER.search(stripped) and intent.year_max is None:
                intent.year_max = lo + (hi - lo) // 3
            if _NEWER.search(stripped) and intent.year_min is None:
                intent.year_min = hi - max(1, (hi - lo) // 10)
    # What is left after removing the constraint phrases is what the encoder should see.
    for rx in (vocab.negation, _BETWEEN, _DECADE, _BEFORE, _AFTER, _FROM_YEAR):
        stripped = rx.sub(" ", stripped)
    intent.text = re.sub(r"\s+", " ", stripped).strip(" ,.;") or text
    return intent


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
    """ years year era""".split()
)
_WORDS = re.compile(r"[a-z][a-z'-]*")


def unresolved_words(
    intent: QueryIntent, categories: tuple[str, ...] | list[str] | None = None
) -> list[str]:
    """Content words of the request that the rules mapped to no constraint, in order (e.g.
    "tearjerker", "seventies", "sword"): the hook for a parser beyond the rules. Category
    words (of ``categories``, as in ``parse_query``), decades, years, "older"/"recent" and
    filler words are resolved."""
    vocab = _vocabulary(tuple(sorted(DEFAULT_CATEGORIES if categories is None else categories)))
    text = intent.text.lower()
    for rx in (vocab.positive, _OLDER, _NEWER, _DECADE):
        text = rx.sub(" ", text)
    return [w for w in _WORDS.findall(text) if w not in _FILLER and w.strip("'-") not in _FILLER]
