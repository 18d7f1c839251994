"""Item enrichment (generative): the LLM writes a short description for items whose metadata
is thin, cached on disk keyed by model + prompt version + item text, so each description is
paid for once.

The descriptions become an extra ``description`` column, which ``text.item_texts`` appends to
the item text that every encoder tier embeds. Whether that helps cold items is an empirical
question (``frugalrec.bench.llm``); a small model can also write plausible nonsense, which
is why enrichment only ever feeds a scorer, never a user-facing claim.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalrec._io import cache_dir, write_json_atomic
from frugalrec.llm.runtime import LLM
from frugalrec.text.items import item_texts

PROMPT_VERSION = "v1"


def thin_items(items: pd.DataFrame, min_chars: int = 80) -> np.ndarray:
    """bool [n_items]: items whose whole text is shorter than ``min_chars`` characters (on
    ml-100k: title, year and genres only, so almost every item)."""
    lengths = np.array([len(t) for t in item_texts(items)])
    return lengths < min_chars


class Enricher:
    """Descriptions for item texts through one LLM, with a JSON cache on disk."""

    def __init__(
        self, llm: LLM, path: str | Path | None = None, max_tokens: int = 48, noun: str = "item"
    ) -> None:
        """``noun``: what one item is called in the prompt ("book"); ml-100k's benchmarks
        pass "movie", the wording their cached v1 descriptions were written with."""
        self.llm = llm
        self.noun = noun
        self.max_tokens = max_tokens
        self.path = Path(path) if path else cache_dir("llm", "enrich") / f"{llm.name}.json"
        self._cache: dict[str, str] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )
        self.stats = {"hits": 0, "misses": 0, "generate_ms": 0.0}

    def key(self, text: str) -> str:
        raw = f"{self.llm.name}\0{PROMPT_VERSION}\0{text}".encode()
        return hashlib.sha256(raw).hexdigest()

    def prompt(self, text: str) -> str:
        return self.llm.chat_prompt(
            f"Describe this {self.noun} in one or two sentences for a catalogue: {text}"
        )

    def describe(self, texts: list[str]) -> list[str]:
        """One description per text (cached ones are free); the cache is saved at the end."""
        out = []
        changed = False
        for text in texts:
            k = self.key(text)
            if k in self._cache:
                self.stats["hits"] += 1
            else:
                t0 = time.perf_counter()
                desc = self.llm.generate(self.prompt(text), self.max_tokens)
                self.stats["generate_ms"] += (time.perf_counter() - t0) * 1e3
                self.stats["misses"] += 1
                self._cache[k] = " ".join(desc.split())
                changed = True
            out.append(self._cache[k])
        if changed:
            write_json_atomic(self.path, self._cache)
        return out

    def enrich(self, items: pd.DataFrame, mask: np.ndarray | None = None) -> pd.DataFrame:
        """A copy of ``items`` with a ``description`` column for ``mask`` (default: thin)."""
        mask = thin_items(items) if mask is None else mask
        texts = item_texts(items)
        desc = pd.Series([""] * len(items), index=items.index, dtype=object)
        idx = np.flatnonzero(mask)
        desc.iloc[idx] = self.describe([texts[i] for i in idx])
        out = items.copy()
        out["description"] = desc.replace("", pd.NA)
        return out

    def cost(self) -> dict[str, Any]:
        m = self.stats["misses"]
        return {**self.stats, "ms_per_generated_item": self.stats["generate_ms"] / m if m else None}
