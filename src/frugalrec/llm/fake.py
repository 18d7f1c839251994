"""``FakeLLM``: a tiny deterministic stand-in implementing the ``LLM`` interface.

Unit tests of the guard, the cascade fallback and the chat session need an LLM that answers
instantly and predictably; the real models are covered by one slow test and the benchmarks.
Tokens are UTF-8 bytes (vocab 256).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from frugalrec.llm.runtime import CallTiming

_LABEL_LINE = re.compile(r"^([A-Z])\. (.*)$", re.MULTILINE)


class FakeLLM:
    """Byte-level fake. ``favour``: candidate lines containing this text get the highest
    next-token logit for their label; ``replies``: what ``generate`` answers, in turn (a
    callable gets the prompt); ``fail``: raise on every call; ``sleep_ms``: pretend cost."""

    def __init__(
        self,
        favour: str | None = None,
        replies: Sequence[str] | Callable[[str], str] = ("",),
        fail: bool = False,
        sleep_ms: float = 0.0,
        name: str = "fake",
    ) -> None:
        self.name = name
        self.favour = favour
        self.replies = replies
        self.fail = fail
        self.sleep_ms = sleep_ms
        self.timings: list[CallTiming] = []
        self.deadline: float | None = None
        self._turn = 0
        self.grammars: list[str | None] = []  # the grammar of each generate call

    def reset_cache(self) -> None:
        """Nothing cached."""

    def _cost(self, kind: str, prompt: str, generated: int, t0: float) -> None:
        if self.sleep_ms:
            time.sleep(self.sleep_ms / 1e3)
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise TimeoutError("FakeLLM: past the deadline")
        ms = (time.perf_counter() - t0) * 1e3
        self.timings.append(CallTiming(kind, len(prompt.encode()), 0, generated, ms))

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        return (f"[system] {system}\n" if system else "") + f"[user] {user}\n[assistant] "

    def logits_for_next_token(self, prompts: Sequence[str]) -> np.ndarray:
        if self.fail:
            raise RuntimeError("FakeLLM: asked to fail")
        out = np.zeros((len(prompts), 256), dtype=np.float32)
        for i, prompt in enumerate(prompts):
            t0 = time.perf_counter()
            # A fixed, prompt-independent preference: later labels slightly lower.
            out[i, 65:91] = -0.01 * np.arange(26, dtype=np.float32)
            if self.favour:
                for m in _LABEL_LINE.finditer(prompt):
                    if self.favour.lower() in m.group(2).lower():
                        out[i, ord(m.group(1))] = 10.0
            self._cost("forward", prompt, 0, t0)
        return out

    def generate(self, prompt: str, max_tokens: int = 48, grammar: str | None = None) -> str:
        self.grammars.append(grammar)
        if self.fail:
            raise RuntimeError("FakeLLM: asked to fail")
        t0 = time.perf_counter()
        if callable(self.replies):
            text = self.replies(prompt)
        else:
            text = self.replies[self._turn % len(self.replies)]
            self._turn += 1
        self._cost("generate", prompt, len(text.split()), t0)
        return text

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "runtime": "fake", "vocab": 256}
