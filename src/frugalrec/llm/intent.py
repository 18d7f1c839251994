"""An LLM intent parser for what the rules leave unresolved, answering under a grammar.

Rules first (:func:`frugalrec.pipeline.query.parse_query`): they cost microseconds and never
invent. Only where they leave content words unresolved ("a tearjerker", "the seventies",
"sword fights") is a small LLM asked, and it can only answer JSON that a GBNF grammar admits:

    {"include": [<= 3 categories], "exclude": [<= 3 categories], "from": YEAR|null, "to": YEAR|null}

The category alternatives are the catalogue's own category list (a bookshop's genres, not
film genres), years are 4 digits inside the catalogue's span; the lists are bounded because
a grammar allowing any number of genres let Qwen2.5-0.5B loop until ``max_tokens``
(FINDINGS). The prompt shows worked examples built from the same category list. The answer
is merged into the rules' intent: the rules' constraints stand, the LLM adds what they lack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from frugalrec.llm.runtime import LLM
from frugalrec.pipeline.query import QueryIntent, parse_query, unresolved_words

MAX_LIST = 3


def _lit(s: str) -> str:
    """A GBNF string literal for the JSON string ``s`` (quotes included)."""
    return json.dumps(json.dumps(s, ensure_ascii=False), ensure_ascii=False)


def intent_grammar(categories: Sequence[str], max_list: int = MAX_LIST) -> str:
    """GBNF for the intent JSON over ``categories`` (non-empty), lists of at most
    ``max_list`` items, years as 4 digits or null."""
    cats = [c for c in dict.fromkeys(categories) if c]
    if not cats:
        raise ValueError("the intent grammar needs at least one category")
    more = ' ("," cat)?' * (max_list - 1)
    alts = " | ".join(_lit(c) for c in cats)
    return (
        'root ::= "{\\"include\\":" list ",\\"exclude\\":" list '
        '",\\"from\\":" year ",\\"to\\":" year "}"\n'
        f'list ::= "[]" | "[" cat{more} "]"\n'
        f"cat ::= {alts}\n"
        'year ::= "null" | [12] [0-9] [0-9] [0-9]\n'
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
    """Rules, then (if an LLM is given and the rules left words unresolved) the LLM under
    the catalogue's grammar. ``categories``: the catalogue's own list
    (``frugalrec.pipeline.query.catalogue_categories(items)``). ``parse`` returns a
    :class:`QueryIntent` whose ``parser`` says which ran (``rules`` or ``rules+<llm name>``)."""

    def __init__(
        self,
        categories: Sequence[str],
        span: tuple[int, int] | None = None,
        llm: LLM | None = None,
        max_tokens: int = 64,
    ) -> None:
        # The rules read every category; the LLM may name only meaningful ones.
        self.all_categories = tuple(c for c in dict.fromkeys(categories) if c)
        self.categories = sorted(c for c in self.all_categories if c.lower() != "unknown")
        self.span = span
        self.llm = llm
        self.max_tokens = max_tokens
        self.grammar = intent_grammar(self.categories) if self.categories else ""
        self.last_ms = 0.0
        self.last_used_llm = False

    def _examples(self) -> str:
        c = self.categories
        a, b, d = c[0], c[len(c) // 2], c[-1]
        lo = self.span[0] if self.span else 1950
        dec = (lo // 10 + 3) * 10
        rows = [
            (f"something {a.lower()}, but nothing {b.lower()}",
             {"include": [a], "exclude": [b], "from": None, "to": None}),
            (f"a {d.lower()} from the {str(dec)[2:]}s",
             {"include": [d], "exclude": [], "from": dec, "to": dec + 9}),
            (f"{b.lower()} or {a.lower()}, made before {dec + 20}",
             {"include": [b, a], "exclude": [], "from": None, "to": dec + 19}),
            ("anything nice", {"include": [], "exclude": [], "from": None, "to": None}),
        ]  # fmt: skip
        return "\n".join(
            f"Request: {q}\nJSON: {json.dumps(o, separators=(',', ':'))}" for q, o in rows
        )

    def prompt(self, request: str) -> str:
        """The chat prompt: fixed header (categories, span, examples) first, so that the
        model's prefix cache reuses it across requests; the request last."""
        span = f" Years run from {self.span[0]} to {self.span[1]}." if self.span else ""
        return self.llm_chat(
            "Turn a catalogue request into JSON constraints. Categories: "
            + ", ".join(self.categories)
            + f".{span} Use a category only if the request asks for it (include) or rules it "
            "out (exclude); give a year range only if the request names a period. Use at "
            "most 3 categories per list.\n" + self._examples() + f"\nRequest: {request}\nJSON:"
        )

    def llm_chat(self, text: str) -> str:
        assert self.llm is not None
        return self.llm.chat_prompt(text)

    def parse(self, request: str) -> QueryIntent:
        """Rules; the LLM only where they left words unresolved (and an LLM is set)."""
        t0 = time.perf_counter()
        intent = parse_query(request, self.span, self.all_categories)
        self.last_used_llm = False
        unresolved = unresolved_words(intent, self.all_categories)
        if self.llm is None or not self.categories or not unresolved:
            self.last_ms = (time.perf_counter() - t0) * 1e3
            return intent
        self.last_used_llm = True
        try:
            text = self.llm.generate(self.prompt(intent.raw), self.max_tokens, grammar=self.grammar)
        except Exception:  # a failing model leaves the rules' answer
            text = ""
        answer = parse_answer(text, self.categories, self.span)
        if answer is not None:
            merge(intent, answer)
            intent.parser = f"rules+{self.llm.name}"
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return intent


def merge(intent: QueryIntent, answer: LLMAnswer) -> None:
    """Add the LLM's constraints to the rules' (in place): the rules' stand where they
    conflict (a genre the rules include is never excluded, and their years stay)."""
    intent.exclude |= {g for g in answer.exclude if g not in intent.include}
    intent.include |= {g for g in answer.include if g not in intent.exclude}
    if intent.year_min is None and intent.year_max is None:
        intent.year_min, intent.year_max = answer.year_min, answer.year_max
