"""Worker targets for tests/test_llm_worker.py, imported inside the worker process (the child
gets this process's sys.path, so the test directory is importable there).

``Misbehaving`` is the FakeLLM with real failures on request: a prompt containing
``SEGFAULT`` reads address 0 (a real SIGSEGV in native code), ``HANG`` sleeps in a way no
deadline interrupts, ``ALLOCATE`` asks for 8 GiB (a MemoryError under an address-space
limit). ``generate`` takes a ``grammar`` keyword, as a runtime may add.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from frugalrec.llm.fake import FakeLLM


def _misbehave(prompt: str) -> None:
    if "SEGFAULT" in prompt:
        ctypes.string_at(0)
    if "HANG" in prompt:
        time.sleep(3600)  # not a llama.cpp forward pass: the abort callback never fires
    if "ALLOCATE" in prompt:
        np.ones(2**30, dtype=np.float64)


class Misbehaving(FakeLLM):
    """``slow_after``: forward calls after this many sleep ``slow_ms`` (a service's start-up
    calibration stays fast, its requests are slow enough to be killed in flight)."""

    def __init__(self, slow_after: int | None = None, slow_ms: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.slow_after, self.slow_ms, self.forwards = slow_after, slow_ms, 0

    def logits_for_next_token(self, prompts: Sequence[str]) -> np.ndarray:
        for p in prompts:
            _misbehave(p)
        self.forwards += 1
        if self.slow_after is not None and self.forwards > self.slow_after:
            time.sleep(self.slow_ms / 1e3)
        return super().logits_for_next_token(prompts)

    def generate(self, prompt: str, max_tokens: int = 48, grammar: str | None = None) -> str:
        _misbehave(prompt)
        text = super().generate(prompt, max_tokens)
        return f"{text}|grammar={grammar}" if grammar is not None else text


def crash_on_load(**_: Any) -> None:
    """A model whose loading segfaults."""
    ctypes.string_at(0)
