"""Conversation: turns update a session state that the next list honours.

"something like Alien but funnier" adds Alien to the positives and Comedy to the wanted
genres; "no horror" excludes Horror; "more like the second one" adds the second item of the
last list to the positives; "not that one"/"less like the first one" adds a negative; "older
films" bounds the years. Rules parse first (microseconds, never invent anything); only a
turn the rules do not understand goes to the LLM, which may only choose one genre from a
fixed labelled list (one forward pass, the re-ranker's verbalizer trick). Every turn reports
which parser was used and what it cost.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalrec.data.dataset import domain_noun, singular
from frugalrec.llm.evidence import genre_matrix
from frugalrec.llm.guard import normalise_title
from frugalrec.llm.request import LLMTier
from frugalrec.llm.runtime import LLM
from frugalrec.pipeline.query import QueryIntent, constraint_mask, genre_match, parse_query
from frugalrec.privacy.scrub import scrub_text

_ORDINALS = {
    "first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
    "fifth": 4, "5th": 4, "sixth": 5, "6th": 5, "seventh": 6, "7th": 6, "eighth": 7, "8th": 7,
    "ninth": 8, "9th": 8, "tenth": 9, "10th": 9, "top": 0,
}  # fmt: skip
_ORDINAL = re.compile(
    r"\b(?:the\s+)?(" + "|".join(_ORDINALS) + r"|last)\s+(?:one|movie|film|item)\b"
    r"|\bnumber\s+(\d+)\b|#(\d+)",
    re.IGNORECASE,
)
_NEGATIVE_CUE = re.compile(
    r"\b(?:not|no|less|nothing|never|hate|hated|dislike|disliked|don't|didn't|without|"
    r"anything but|fewer)\b[^,.;]*$",
    re.IGNORECASE,
)
_THAT_ONE = re.compile(r"\bnot (?:that|this) one\b", re.IGNORECASE)
_RESET = re.compile(r"^\s*(?:reset|start over|clear)\s*$", re.IGNORECASE)
# Comparatives the query rules do not know.
_COMPARATIVES = {
    "funnier": "Comedy", "lighter": "Comedy", "scarier": "Horror", "creepier": "Horror",
    "more romantic": "Romance", "more action": "Action", "more exciting": "Action",
    "more thrilling": "Thriller", "darker": "Thriller", "more dramatic": "Drama",
    "more animated": "Animation", "more mysterious": "Mystery",
}  # fmt: skip
_COMPARATIVE = re.compile(r"\b(" + "|".join(map(re.escape, _COMPARATIVES)) + r")\b", re.I)


@dataclass
class SessionState:
    """What the conversation has established so far (item indices, genre names, years)."""

    positives: list[int] = field(default_factory=list)
    negatives: list[int] = field(default_factory=list)
    include: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    year_min: int | None = None
    year_max: int | None = None
    last_shown: list[int] = field(default_factory=list)

    def to_dict(self, titles: np.ndarray) -> dict[str, Any]:
        return {
            "liked": [str(titles[i]) for i in self.positives],
            "disliked": [str(titles[i]) for i in self.negatives],
            "want_genres": sorted(self.include),
            "exclude_genres": sorted(self.exclude),
            "year_min": self.year_min,
            "year_max": self.year_max,
        }


class ChatSession:
    """A conversation over one catalogue, optionally starting from a user's history."""

    def __init__(
        self,
        tier: LLMTier,
        history: np.ndarray | None = None,
        llm: LLM | None = None,
        k: int = 10,
        genre_weight: float = 0.5,
    ) -> None:
        self.tier = tier
        self.ds = tier.ds
        self.history = np.asarray(history if history is not None else [], dtype=np.int64)
        self.llm = llm
        self.k = k
        self.genre_weight = genre_weight
        self.state = SessionState()
        items = self.ds.items
        self.titles = items["title"].astype(str).to_numpy()
        years = items["year"].dropna() if "year" in items.columns else []
        self.span = (int(min(years)), int(max(years))) if len(years) else None
        self._G, self.genres = genre_matrix(items)
        popularity = np.bincount(self.ds.item, minlength=self.ds.n_items)
        # Normalised title -> item; among duplicates the most popular wins.
        self._title_index: dict[tuple[str, ...], int] = {}
        for i in np.argsort(-popularity, kind="stable"):
            key = tuple(normalise_title(self.titles[i]).split())
            if key:
                self._title_index.setdefault(key, int(i))
        self._max_title = max(len(k) for k in self._title_index)

    # ---- parsing ---------------------------------------------------------------------
    def _find_titles(self, text: str) -> list[tuple[int, int]]:
        """(item index, char offset) of catalogue titles named in ``text``; longest match
        first, a title must start with a capital letter (so "heat" the word is not *Heat*)."""
        words = [(m.group(0), m.start()) for m in re.finditer(r"[A-Za-z0-9][A-Za-z0-9'&-]*", text)]
        lower = [w.lower() for w, _ in words]
        found, p = [], 0
        while p < len(words):
            hit = None
            if words[p][0][0].isupper() or words[p][0][0].isdigit():
                for n in range(min(self._max_title, len(words) - p), 0, -1):
                    key = tuple(lower[p : p + n])
                    if key in self._title_index and not (n == 1 and key[0] in _STOP):
                        hit = (self._title_index[key], words[p][1], n)
                        break
            if hit:
                found.append(hit[:2])
                p += hit[2]
            else:
                p += 1
        return found

    def parse(self, text: str) -> tuple[dict[str, Any], bool]:
        """Apply the rules to the state. Returns (what was understood, understood anything)."""
        st = self.state
        got: dict[str, Any] = {}
        if _RESET.match(text):
            self.state = SessionState()
            return {"reset": True}, True
        for m in _ORDINAL.finditer(text):
            if not st.last_shown:
                continue
            if m.group(1):
                word = m.group(1).lower()
                pos = len(st.last_shown) - 1 if word == "last" else _ORDINALS[word]
            else:
                pos = int(m.group(2) or m.group(3)) - 1
            if 0 <= pos < len(st.last_shown):
                item = st.last_shown[pos]
                neg = bool(_NEGATIVE_CUE.search(text[: m.start()]))
                self._add(item, negative=neg)
                got.setdefault("disliked" if neg else "liked", []).append(self.titles[item])
        if _THAT_ONE.search(text) and st.last_shown:
            self._add(st.last_shown[0], negative=True)
            got.setdefault("disliked", []).append(self.titles[st.last_shown[0]])
        for item, pos in self._find_titles(text):
            neg = bool(_NEGATIVE_CUE.search(text[:pos]))
            self._add(item, negative=neg)
            got.setdefault("disliked" if neg else "liked", []).append(self.titles[item])
        # Titles are removed before genre rules so "Star Wars" is not the War genre.
        rest = text
        for item, _ in self._find_titles(text):
            rest = re.sub(re.escape(self.titles[item].split(" (")[0]), " ", rest, flags=re.I)
        intent = parse_query(rest, self.span, self.genres)
        for m in _COMPARATIVE.finditer(rest):
            intent.include.add(_COMPARATIVES[m.group(1).lower()])
        self._merge(intent, got)
        return got, bool(got)

    def _add(self, item: int, negative: bool) -> None:
        st = self.state
        src, dst = (st.positives, st.negatives) if negative else (st.negatives, st.positives)
        if item in src:
            src.remove(item)
        if item not in dst:
            dst.append(item)

    def _merge(self, intent: QueryIntent, got: dict[str, Any]) -> None:
        st = self.state
        if intent.include:
            st.include |= intent.include
            st.exclude -= intent.include
            got["want_genres"] = sorted(intent.include)
        if intent.exclude:
            st.exclude |= intent.exclude
            st.include -= intent.exclude
            got["exclude_genres"] = sorted(intent.exclude)
        if intent.year_min is not None:
            st.year_min = intent.year_min
            got["year_min"] = intent.year_min
        if intent.year_max is not None:
            st.year_max = intent.year_max
            got["year_max"] = intent.year_max

    def _llm_parse(self, text: str) -> dict[str, Any]:
        """One forward pass: the LLM picks one genre (or "none") from a labelled list."""
        assert self.llm is not None
        options = [*self.genres, "none of these"]
        labels = string.ascii_uppercase[: len(options)]
        lines = "\n".join(f"{lab}. {g}" for lab, g in zip(labels, options, strict=True))
        prompt = self.llm.chat_prompt(
            f'A user asked a {singular(domain_noun(self.ds.items))} recommender: "{text}"\n'
            f"Which category do they want?\n{lines}\n"
            "Answer with one letter."
        )
        logits = self.llm.logits_for_next_token([prompt])[0]
        ids = [t[0] for t in self.llm.token_ids(list(labels))]
        choice = options[int(np.argmax(logits[ids]))]
        if choice == "none of these":
            return {}
        intent = QueryIntent(raw=text, text=text, include={choice}, parser="llm")
        got: dict[str, Any] = {}
        self._merge(intent, got)
        return got

    # ---- turns -----------------------------------------------------------------------
    def turn(self, text: str) -> dict[str, Any]:
        """Parse one user turn (rules, then LLM if the rules found nothing) and answer.

        The turn is PII-scrubbed first: neither the LLM prompt nor the returned transcript
        carries an e-mail, phone or card number the user typed."""
        text = scrub_text(text)
        t0 = time.perf_counter()
        got, ok = self.parse(text)
        cost = {"parse_rules_ms": (time.perf_counter() - t0) * 1e3}
        parser = "rules" if ok else "none"
        if not ok and self.llm is not None:
            t1 = time.perf_counter()
            try:
                got = self._llm_parse(text)
            except Exception as exc:  # a failing model leaves the state as it was
                got = {"llm_error": type(exc).__name__}
            cost["parse_llm_ms"] = (time.perf_counter() - t1) * 1e3
            parser = "llm"
        answer = self.recommend()
        self.state.last_shown = [self.ds.items_vocab.index([r["item"]])[0] for r in answer["items"]]
        answer["cost_ms"] = {**cost, **answer["cost_ms"]}
        return {
            "turn": text,
            "parser": parser,
            "understood": got,
            "state": self.state.to_dict(self.titles),
            **answer,
        }

    def recommend(self) -> dict[str, Any]:
        """The list the current state implies: hard filters (excluded genres, years,
        disliked items), wanted genres and disliked items' neighbours as score shifts."""
        st = self.state
        intent = QueryIntent(
            raw="", text="", include=set(st.include), exclude=set(st.exclude),
            year_min=st.year_min, year_max=st.year_max,
        )  # fmt: skip
        allowed = constraint_mask(intent, self.ds.items)
        allowed[st.negatives] = False
        history = np.r_[self.history, np.asarray(st.positives, dtype=np.int64)].astype(np.int64)
        base = self._fold_in(history)
        finite = base[np.isfinite(base)]
        scale = float(np.abs(finite).max()) if finite.size else 1.0
        boost = np.float32(self.genre_weight * max(scale, 1e-6)) * genre_match(
            intent, self.ds.items
        )
        if st.negatives:
            boost = boost - self._fold_in(np.asarray(st.negatives, dtype=np.int64))
        return self.tier.answer(
            history, self.k, explain=True, allowed=allowed, query_genres=st.include, boost=boost
        )

    def _fold_in(self, items: np.ndarray) -> np.ndarray:
        import scipy.sparse as sp

        n = self.ds.n_items
        H = sp.csr_matrix((np.ones(len(items), np.float32), items, [0, len(items)]), shape=(1, n))
        H.sum_duplicates()
        H.data[:] = 1.0
        return np.asarray(self.tier.model.fold_in(H)[0], dtype=np.float32)


_STOP = {"a", "an", "the", "it", "i", "me", "we", "us", "you", "he", "she", "no", "not", "and",
         "but", "or", "more", "less", "like", "something", "anything", "older", "new", "now",
         "something like", "ok", "yes", "please", "show", "give", "films", "movies"}  # fmt: skip
