"""The encoder interface: texts -> float32 [n, d] unit vectors, plus the errors loaders raise.

Implementations: :mod:`frugalrec.text.static` (model2vec) and :mod:`frugalrec.text.transformer`
(sentence-transformers on torch / ONNX Runtime); :mod:`frugalrec.text.registry` names them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from frugalrec._threads import configure_threads, thread_count


class ModelPackageMissingError(RuntimeError):
    """A model's weights package is not installed; the message names the pip command."""


class LowFidelityWarning(UserWarning):
    """The loaded backend's vectors drift measurably from the tier's fp32 vectors."""


class TextEncoder(ABC):
    """Texts -> float32 [n, d] L2-normalised vectors, in input order.

    Subclasses implement :meth:`_encode_batch` for one batch of similar-length texts; the base
    class sorts by length (so padding is small), batches, scatters rows back to input order,
    normalises, and sizes thread pools before each call.
    """

    tier: str
    backend: str
    name: str
    # Whether encoding runs BLAS/torch/ORT pools that must be sized before each call.
    uses_thread_pools = True

    def __init__(self, tier: str, backend: str, name: str) -> None:
        self.tier = tier
        self.backend = backend
        self.name = name
        self._params = 0
        self._model_bytes = 0
        self._dims = 0
        self._load_seconds = 0.0
        self._build_seconds: float | None = None
        # Which artefact within tier/backend (e.g. the int8 recipe): caches keep them apart.
        self.variant = ""

    @property
    def key(self) -> str:
        """Stable id of tier and backend, e.g. ``"minilm/onnx-int8"`` (used by caches)."""
        return f"{self.tier}/{self.backend}"

    @property
    def dims(self) -> int:
        """Output dimensionality d."""
        return self._dims

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Encode ``texts`` -> float32 [n, d], unit-norm rows, row i belongs to ``texts[i]``.

        A text with no known token (only possible for the static tier, e.g. ``""``) gets a zero
        row rather than an arbitrary direction.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(texts)
        out = np.zeros((n, self._dims), dtype=np.float32)
        if n == 0:
            return out
        if self.uses_thread_pools:
            size_threads()
        arr = np.asarray(texts, dtype=object)
        lengths = np.fromiter(map(len, arr), dtype=np.int64, count=n)
        # Longest first: the most memory-hungry batch runs first, so an OOM shows up at once.
        order = np.argsort(-lengths, kind="stable")
        starts: Iterable[int] = range(0, n, batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, total=(n + batch_size - 1) // batch_size, desc=self.key)
        for start in starts:
            idx = order[start : start + batch_size]
            out[idx] = self._encode_batch(arr[idx].tolist())
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """One batch -> [len(texts), d] vectors (any float dtype, need not be normalised)."""

    def info(self) -> dict[str, Any]:
        """Cost facts: tier, backend, name, params (count), dims, model_bytes (weights held in
        memory), load_seconds (this process), build_seconds (one-time export/distillation,
        None when the artefact needs none or was built before it was recorded)."""
        return {
            "tier": self.tier,
            "backend": self.backend,
            "key": self.key,
            "name": self.name,
            "params": int(self._params),
            "dims": int(self._dims),
            "model_bytes": int(self._model_bytes),
            "load_seconds": float(self._load_seconds),
            "build_seconds": self._build_seconds,
            "variant": self.variant,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, dims={self._dims})"


def size_threads() -> None:
    # thread_count() keeps a count the application chose earlier via configure_threads(n);
    # a bare configure_threads() would reset it to "all cores".
    configure_threads(thread_count())
