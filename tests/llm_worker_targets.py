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
    def logits_for_next_token(self, prompts: Sequence[str]) -> np.ndarray:
        for p in prompts:
            _misbehave(p)
        return super().logits_for_next_token(prompts)

    def generate(self, prompt: str, max_tokens: int = 48, grammar: str | None = None) -> str:
        _misbehave(prompt)
        text = super().generate(prompt, max_tokens)
        return f"{text}|grammar={grammar}" if grammar is not None else text


def crash_on_load(**_: Any) -> None:
    """A model whose loading segfaults."""
    ctypes.string_at(0)
