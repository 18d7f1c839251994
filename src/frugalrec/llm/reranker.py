"""One-pass LLM re-ranker (evaluative): the LlamaRec "verbalizer" idea.

The cheap stage's top-K candidates are written into one prompt, labelled ``A``, ``B``,
``C``...; a single forward pass gives the next-token logits, and the logits of the K label
tokens are the LLM's scores. No free-form generation, so the output is always a permutation
of catalogue candidates: out-of-catalogue items are impossible by construction, and seen
items never enter because the cheap stage already excluded them.

The LLM score (softmax over the label logits) is blended with the cheap score (min-max
scaled within the list): ``(1 - weight) * cheap + weight * llm``.
"""

from __future__ import annotations

import dataclasses
import string
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from frugalrec._config import JsonConfig
from frugalrec.data.dataset import domain_noun, singular
from frugalrec.llm.runtime import LLM

LABELS = string.ascii_uppercase
Items = Sequence[int] | np.ndarray  # item indices
# The prompt names the catalogue's own items (its domain noun: "books", "films", default
# "items"), so a bookshop's prompt never says "movie".
SYSTEM = "You are a {one} recommender. You answer with a single letter."
INSTRUCTION = (
    "Pick the candidate {one} this user will enjoy most, given the {many} they liked. "
    "Answer with the letter of one candidate only."
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RerankerConfig(JsonConfig):
    """``candidates``: K cheap candidates re-ranked (<= 26); ``weight``: share of the LLM
    score in the blend; ``history_items``: most recent liked items shown in the prompt."""

    candidates: int = 10
    weight: float = 0.3
    history_items: int = 10

    def validate(self) -> None:
        if not 1 <= self.candidates <= len(LABELS):
            raise ValueError(f"RerankerConfig.candidates must be in 1..{len(LABELS)}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError("RerankerConfig.weight must be in [0, 1]")
        if self.history_items < 0:
            raise ValueError("RerankerConfig.history_items must be >= 0")


def item_line(items: pd.DataFrame, i: int, genres: bool = True) -> str:
    """``"Alien (1979), Action/Horror/Sci-Fi"`` for item index ``i``."""
    row = items.iloc[int(i)]
    text = str(row["title"]).strip()
    year = row.get("year") if "year" in items.columns else None
    if year is not None and pd.notna(year) and f"({int(year)})" not in text:
        text += f" ({int(year)})"
    if genres and "genres" in items.columns and pd.notna(row["genres"]) and row["genres"]:
        text += ", " + str(row["genres"]).replace("|", "/")
    return text


class LLMReranker:
    """Re-rank cheap top-K lists with one LLM forward pass per list."""

    def __init__(self, llm: LLM, items: pd.DataFrame, config: RerankerConfig | None = None) -> None:
        self.llm = llm
        self.items = items
        self.config = config or RerankerConfig()
        self.config.validate()
        ids = llm.token_ids(list(LABELS))
        if any(len(t) != 1 for t in ids) or len({t[0] for t in ids}) != len(LABELS):
            raise ValueError(f"{llm.name}: the labels A-Z are not distinct single tokens")
        self.label_ids = np.array([t[0] for t in ids], dtype=np.int64)
        many = domain_noun(items)
        self.system = SYSTEM.format(one=singular(many))
        self.instruction = INSTRUCTION.format(one=singular(many), many=many)
        self.liked_header = f"{many[:1].upper()}{many[1:]} the user liked:"

    def prompt(self, history: Items, candidates: Items) -> str:
        """The chat prompt for one list; the instruction comes first so that it is a shared
        prefix across requests (llama.cpp reuses its KV cache)."""
        recent = list(history)[-self.config.history_items :] if self.config.history_items else []
        liked = "\n".join(f"- {item_line(self.items, i, genres=False)}" for i in recent)
        cands = "\n".join(
            f"{LABELS[j]}. {item_line(self.items, i)}" for j, i in enumerate(candidates)
        )
        user = (
            f"{self.instruction}\n\n{self.liked_header}\n{liked or '- (none yet)'}\n\n"
            f"Candidates:\n{cands}\n\nAnswer:"
        )
        return self.llm.chat_prompt(user, self.system)

    def llm_scores(self, histories: Sequence[Items], candidates: np.ndarray) -> np.ndarray:
        """float32 [n, K]: softmax over the K label logits of each list's forward pass.

        ``candidates`` int64 [n, K] (-1 = empty slot, scored 0).
        """
        candidates = np.atleast_2d(candidates)
        n, K = candidates.shape
        out = np.zeros((n, K), dtype=np.float32)
        for r in range(n):
            valid = candidates[r] >= 0
            kk = int(valid.sum())
            if kk == 0:
                continue
            logits = self.llm.logits_for_next_token(
                [self.prompt(histories[r], candidates[r, valid])]
            )[0]
            z = logits[self.label_ids[:kk]].astype(np.float64)
            p = np.exp(z - z.max())
            out[r, np.flatnonzero(valid)] = (p / p.sum()).astype(np.float32)
        return out

    def rerank(
        self,
        histories: Sequence[Items],
        candidates: np.ndarray,
        cheap_scores: np.ndarray,
        weight: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Blend and re-sort. Returns (ids int64 [n, K], blended float32 [n, K], info).

        The output rows hold exactly the input candidates (a permutation); -1 slots stay
        last. ``info`` has the LLM probabilities and the wall ms of the LLM stage.
        """
        w = self.config.weight if weight is None else weight
        t0 = time.perf_counter()
        p = self.llm_scores(histories, candidates)
        ms = (time.perf_counter() - t0) * 1e3
        ids, blended = blend(candidates, cheap_scores, p, w)
        return ids, blended, {"llm_prob": p, "llm_ms": ms}


def blend(
    candidates: np.ndarray, cheap_scores: np.ndarray, llm_prob: np.ndarray, weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Min-max scale cheap scores per row, mix with LLM probabilities (also min-max scaled)
    and sort descending; -1/-inf slots stay last. Vectorised over rows."""
    valid = candidates >= 0
    c = np.where(valid, cheap_scores, np.nan).astype(np.float64)
    q = np.where(valid, llm_prob, np.nan).astype(np.float64)

    def scale(x: np.ndarray) -> np.ndarray:
        lo = np.nanmin(np.where(valid, x, np.inf), axis=1, keepdims=True)
        hi = np.nanmax(np.where(valid, x, -np.inf), axis=1, keepdims=True)
        return (x - lo) / np.maximum(hi - lo, 1e-12)

    s = (1.0 - weight) * scale(c) + weight * scale(q)
    s = np.where(valid, s, -np.inf)
    # Stable sort keeps the cheap order for ties (weight 0 reproduces the cheap list).
    order = np.argsort(-s, axis=1, kind="stable")
    return (
        np.take_along_axis(candidates, order, axis=1).astype(np.int64),
        np.take_along_axis(s, order, axis=1).astype(np.float32),
    )
