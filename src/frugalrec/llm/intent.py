"""An LLM intent parser for what the rules leave unresolved, answering under a grammar.

Rules first (:func:`frugalrec.pipeline.query.parse_query`): they cost microseconds and never
invent. Only where they leave content words unresolved ("a tearjerker", "the seventies",
"sword fights") is a small LLM asked, and it can only answer JSON that a GBNF grammar admits:

    {"include": [<= 3 categories], "exclude": [<= 3 categories], "from": YEAR|null, "to": YEAR|null}

The category alternatives are the catalogue's own category list (a bookshop's genres, not
film genres), years are 4 digits inside the catalogue's span; the lists are bounded because
a grammar allowing any number of genres let Qwen2.5-0.5B loop until ``max_tokens``
(FINDINGS). The grammar also admits only what the request leaves open: an exclusion only if
a negation the rules did not read is left ("nothing with blood"), a year range only if the
rules set none and a time word is left ("from before the war"); otherwise those fields are
fixed to ``[]`` / ``null``. Small models under a one-example prompt copied the example's
exclusions and years into most answers (BENCHMARKS.md); they cannot here. The prompt shows
several varied examples built from the catalogue's own everyday words (or none, ``examples=0``).
The answer is merged into the rules' intent: the rules' constraints stand, the LLM adds what
they lack (its categories only where the rules found none, unless ``extend_includes``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from frugalrec.llm.runtime import LLM
from frugalrec.pipeline.query import (
    CATEGORY_WORDS,
    CategoryWords,
    QueryIntent,
    category_phrases,
    parse_query,
    unresolved_words,
)

MAX_LIST = 3


def _lit(s: str) -> str:
    """A GBNF string literal for the JSON string ``s`` (quotes included)."""
    return json.dumps(json.dumps(s, ensure_ascii=False), ensure_ascii=False)


def intent_grammar(
    categories: Sequence[str],
    max_list: int = MAX_LIST,
    *,
    exclude: bool = True,
    years: bool = True,
) -> str:
    """GBNF for the intent JSON over ``categories`` (non-empty), lists of at most
    ``max_list`` items, years as 4 digits or null. ``exclude=False`` fixes the exclusion
    list to ``[]``, ``years=False`` both years to ``null``."""
    cats = [c for c in dict.fromkeys(categories) if c]
    if not cats:
        raise ValueError("the intent grammar needs at least one category")
    more = ' ("," cat)?' * (max_list - 1)
    alts = " | ".join(_lit(c) for c in cats)
    exc = "list" if exclude else '"[]"'
    yr = "year" if years else '"null"'
    return (
        f'root ::= "{{\\"include\\":" list ",\\"exclude\\":" {exc} '
        f'",\\"from\\":" {yr} ",\\"to\\":" {yr} "}}"\n'
        f'list ::= "[]" | "[" cat{more} "]"\n'
        f"cat ::= {alts}\n"
        'year ::= "null" | [12] [0-9] [0-9] [0-9]\n'
    )


# What is left of a request after the rules (``intent.text``) that may still carry an
# exclusion or a period: only then may the LLM answer one.
_NEG_CUE = re.compile(
    r"\b(?:no|not|never|without|except|excluding|avoid|nothing|none|isn'?t|aren'?t|wasn'?t|"
    r"don'?t|doesn'?t|hate|skip|rather than|instead of|other than|free of|minus)\b"
    r"(?!\s+(?:too|very|so|that|overly)\b)",  # "isn't too long": a degree
    re.IGNORECASE,
)
_TIME_CUE = re.compile(  # whole words only: "six-year-old" is an age, not a period
    r"(?<![\w-])(?:\d{4}s?|'?\d0'?s|'\d\d|twenties|thirties|forties|fifties|sixties|"
    r"seventies|eighties|nineties|decades?|century|era|period|old|older|oldies?|new|newer|"
    r"newest|recent|recently|latest|modern|classics?|vintage|contemporary|silent|golden age|"
    r"black[- ]and[- ]white|today|nowadays|lately|current|years?)(?![\w-])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LLMAnswer:
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    year_min: int | None
    year_max: int | None


def parse_answer(
    text: str, categories: Sequence[str], span: tuple[int, int] | None = None
) -> LLMAnswer | None:
    """The model's JSON as constraints (unknown categories dropped, years clipped to
    ``span`` and ordered); None if it is not the grammar's JSON object."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or set(obj) != {"include", "exclude", "from", "to"}:
        return None
    known = set(categories)

    def cats(v: object) -> tuple[str, ...] | None:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return None
        return tuple(dict.fromkeys(x for x in v if x in known))

    inc, exc = cats(obj["include"]), cats(obj["exclude"])
    if inc is None or exc is None:
        return None
    years: list[int | None] = []
    for key in ("from", "to"):
        v = obj[key]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            return None
        if v is not None and span is not None:
            v = min(max(v, span[0]), span[1])
        years.append(v)
    lo, hi = years
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    return LLMAnswer(tuple(c for c in inc if c not in exc), exc, lo, hi)


class IntentParser:
    """Rules, then (if an LLM is given and the rules left something open) the LLM under the
    catalogue's grammar. ``categories``: the catalogue's own list
    (``frugalrec.pipeline.query.catalogue_categories(items)``); ``words``: the catalogue's
    own category-word table on top of the packaged one. ``parse`` returns a
    :class:`QueryIntent` whose ``parser`` says which ran (``rules`` or ``rules+<llm name>``).

    The LLM is asked only where the rules left content words unresolved *and* it could add
    something: the rules found no category, or a negation or time word is left over (or
    ``extend_includes``: it may add categories to the rules' too). ``examples``: how many
    worked examples the prompt shows (0: none)."""

    def __init__(
        self,
        categories: Sequence[str],
        span: tuple[int, int] | None = None,
        llm: LLM | None = None,
        max_tokens: int = 64,
        *,
        words: CategoryWords | None = None,
        examples: int = 5,
        extend_includes: bool = False,
    ) -> None:
        # The rules read every category; the LLM may name only meaningful ones.
        self.all_categories = tuple(c for c in dict.fromkeys(categories) if c)
        self.categories = sorted(c for c in self.all_categories if c.lower() != "unknown")
        self.span = span
        self.llm = llm
        self.max_tokens = max_tokens
        self.words = words
        self.n_examples = examples
        self.extend_includes = extend_includes
        self.grammar = intent_grammar(self.categories) if self.categories else ""
        self._grammars: dict[tuple[bool, bool], str] = {}
        # What the last ``parse`` did, per thread: the service parses concurrent requests
        # with one parser, and each reads back its own call's timing.
        self._last = threading.local()

    @property
    def last_ms(self) -> float:
        """Wall ms of this thread's last ``parse``."""
        return float(getattr(self._last, "ms", 0.0))

    @property
    def last_used_llm(self) -> bool:
        """Whether this thread's last ``parse`` asked the LLM."""
        return bool(getattr(self._last, "used_llm", False))

    @property
    def last_grammar(self) -> str:
        """The grammar of this thread's last LLM call ("" before any)."""
        return str(getattr(self._last, "grammar", ""))

    def grammar_for(self, exclude: bool, years: bool) -> str:
        """The grammar with the exclusion list and the years open or fixed (cached)."""
        key = (exclude, years)
        if key not in self._grammars:
            self._grammars[key] = intent_grammar(self.categories, exclude=exclude, years=years)
        return self._grammars[key]

    def _everyday(self) -> list[tuple[str, str]]:
        """(everyday phrase, the one category it names) from the rules' vocabulary: phrases
        that are not a category's own name, one per category, in a fixed order."""
        names = {c.lower() for c in self.categories}
        table = set(CATEGORY_WORDS) | {k.lower() for k in self.words or {}}
        seen: dict[str, str] = {}
        for phrase, cats in sorted(category_phrases(self.all_categories, self.words).items()):
            (cat,) = cats if len(cats) == 1 else (None,)
            if (
                cat in self.categories
                and cat not in seen
                and phrase in table
                and phrase not in names
                and not phrase.startswith("a ")
                and len(phrase) > 4
            ):
                seen[cat] = phrase
        return [(p, c) for c, p in seen.items()]

    def _examples(self) -> str:
        """Worked examples from the catalogue's own words: varied (several categories, an
        exclusion, a period, an empty answer), so that no one example is a template."""
        if self.n_examples <= 0:
            return ""
        c = self.categories
        every = self._everyday()
        # Spread the picks over the list; fall back to category names.
        pick = (
            [every[(i * 7) % len(every)] for i in range(4)]
            if len(every) >= 4
            else [(x.lower(), x) for x in (c[0], c[len(c) // 3], c[(2 * len(c)) // 3], c[-1])]
        )
        (p1, c1), (p2, c2), (p3, c3), (p4, c4) = pick
        lo = self.span[0] if self.span else 1950
        hi = self.span[1] if self.span else 2020
        dec = ((lo + hi) // 20) * 10
        empty: dict[str, object] = {"include": [], "exclude": [], "from": None, "to": None}
        rows = [
            (f"a {p1} for tonight", {**empty, "include": [c1]}),
            (f"something light, but no {p2}", {**empty, "exclude": [c2]}),
            (f"{p3} from the {str(dec)[2:]}s", {**empty, "include": [c3], "from": dec,
                                                "to": dec + 9}),
            ("surprise me with something good", empty),
            (f"{p4} or {p1}, made before {dec}", {**empty, "include": [c4, c1], "to": dec - 1}),
        ][: self.n_examples]  # fmt: skip
        return "".join(
            f"Request: {q}\nJSON: {json.dumps(o, separators=(',', ':'))}\n" for q, o in rows
        )

    def prompt(self, request: str) -> str:
        """The chat prompt: fixed header (categories, span, examples) first, so that the
        model's prefix cache reuses it across requests; the request last."""
        span = f" Years run from {self.span[0]} to {self.span[1]}." if self.span else ""
        ex = self._examples()
        return self.llm_chat(
            "Turn a catalogue request into JSON constraints. Categories: "
            + ", ".join(self.categories)
            + f".{span} Put in include the categories the request asks for, in exclude "
            "those it rules out, and a year range only if it names a period; otherwise "
            "leave them empty or null. At most 3 categories per list."
            + (f" Examples:\n{ex}" if ex else "\n")
            + f"Request: {request}\nJSON:"
        )

    def llm_chat(self, text: str) -> str:
        assert self.llm is not None
        return self.llm.chat_prompt(text)

    def open_fields(self, intent: QueryIntent) -> tuple[bool, bool, bool]:
        """(categories, exclusions, years): what the LLM may still add to the rules'
        ``intent``."""
        left = intent.text
        cats = self.extend_includes or not intent.include
        exclude = bool(_NEG_CUE.search(left))
        years = intent.year_min is None and intent.year_max is None and bool(_TIME_CUE.search(left))
        return cats, exclude, years

    def parse(self, request: str) -> QueryIntent:
        """Rules; the LLM only where they left words unresolved that it could still
        resolve (and an LLM is set)."""
        t0 = time.perf_counter()
        intent = parse_query(request, self.span, self.all_categories, self.words)
        last = self._last
        last.used_llm = False
        unresolved = unresolved_words(intent, self.all_categories, self.words)
        cats, exclude, years = self.open_fields(intent)
        if (
            self.llm is None
            or not self.categories
            or not unresolved
            or not (cats or exclude or years)
        ):
            last.ms = (time.perf_counter() - t0) * 1e3
            return intent
        last.used_llm = True
        last.grammar = self.grammar_for(exclude, years)
        try:
            text = self.llm.generate(self.prompt(intent.raw), self.max_tokens, grammar=last.grammar)
        except Exception:  # a failing model leaves the rules' answer
            text = ""
        answer = parse_answer(text, self.categories, self.span)
        if answer is not None:
            # What was not open is dropped here too: a runtime may ignore the grammar.
            answer = LLMAnswer(
                answer.include if cats else (),
                answer.exclude if exclude else (),
                answer.year_min if years else None,
                answer.year_max if years else None,
            )
            merge(intent, answer)
            intent.parser = f"rules+{self.llm.name}"
        last.ms = (time.perf_counter() - t0) * 1e3
        return intent


def merge(intent: QueryIntent, answer: LLMAnswer) -> None:
    """Add the LLM's constraints to the rules' (in place): the rules' stand where they
    conflict (a genre the rules include is never excluded, and their years stay)."""
    intent.exclude |= {g for g in answer.exclude if g not in intent.include}
    intent.include |= {g for g in answer.include if g not in intent.exclude}
    if intent.year_min is None and intent.year_max is None:
        intent.year_min, intent.year_max = answer.year_min, answer.year_max
