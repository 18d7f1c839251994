"""The ``Engine`` seam: where the batch stages (catalogue encoding, recommendation for many
users) run. ``local`` runs them in this process; ``ray`` spreads them over a Ray cluster.

Both engines give the same answers: the same vectors for the same texts, the same top-K lists
for the same users. That is a contract, tested in ``tests/test_engines.py``; an engine may
only change where work runs, never what it computes.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import numpy as np

from frugalrec.models.base import Recommender
from frugalrec.text.encoders import TextEncoder

ENGINES: tuple[str, ...] = ("local", "ray")


class Engine(ABC):
    """Runs batch stages. Use as a context manager so a started cluster is released."""

    name: str

    @abstractmethod
    def encode(
        self, texts: Sequence[str], tier: str, backend: str | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """Encode ``texts`` with ``load_encoder(tier, backend)`` -> float32 [n, d], unit-norm
        rows in input order (no embedding cache: callers wrap it, see ``encode_cached``)."""

    @abstractmethod
    def recommend(
        self,
        model: Recommender,
        users: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``model.recommend`` for every user index in ``users`` -> (int64 [n, k],
        float32 [n, k]), rows aligned with ``users``."""

    def info(self) -> dict[str, Any]:
        """What runs where (engine name, workers, cluster address)."""
        return {"engine": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers (and a Ray instance this engine started)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def make_engine(
    name: str = "local", *, address: str | None = None, workers: int | None = None
) -> Engine:
    """The engine called ``name``. ``address`` joins an existing Ray cluster (``ray`` only;
    default: start a local Ray); ``workers`` is the actor count (default: the cores Ray has)."""
    if name == "local":
        if address:
            raise ValueError("--ray-address applies only to --engine ray")
        from frugalrec.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from frugalrec.engines.ray_engine import RayEngine

        return RayEngine(address=address, workers=workers)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


ENV_ENGINE = "FRUGALREC_ENGINE"
ENV_RAY_ADDRESS = "FRUGALREC_RAY_ADDRESS"


def engine_from_env() -> Engine:
    """The engine a parent process chose for its sub-processes (``frugalrec bench`` measures
    each configuration in a fresh interpreter): ``$FRUGALREC_ENGINE`` (default local) and
    ``$FRUGALREC_RAY_ADDRESS`` (the cluster the parent started or joined)."""
    name = os.environ.get(ENV_ENGINE, "local") or "local"
    return make_engine(name, address=os.environ.get(ENV_RAY_ADDRESS) or None)


def engine_encoder(encoder: TextEncoder, engine: Engine) -> TextEncoder:
    """``encoder`` with its ``encode`` run by ``engine`` (same key, dims and variant, so the
    embedding cache treats both as one encoder: their vectors are identical)."""
    if engine.name == "local":
        return encoder
    return _EngineEncoder(encoder, engine)


class _EngineEncoder(TextEncoder):
    uses_thread_pools = False

    def __init__(self, encoder: TextEncoder, engine: Engine) -> None:
        super().__init__(encoder.tier, encoder.backend, encoder.name)
        self.variant = encoder.variant
        self._dims = encoder.dims
        self._inner = encoder
        self._engine = engine

    def info(self) -> dict[str, Any]:
        return {**self._inner.info(), "engine": self._engine.info()}

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        return self._engine.encode(texts, self.tier, self.backend, batch_size=batch_size)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - unused
        return self._inner._encode_batch(texts)
