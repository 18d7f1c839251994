"""The default engine: every batch stage in this process (thread pools sized once, by
:mod:`frugalrec._threads`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from frugalrec.engines.base import Engine
from frugalrec.models.base import Recommender


class LocalEngine(Engine):
    name = "local"

    def encode(
        self, texts: Sequence[str], tier: str, backend: str | None = None, batch_size: int = 64
    ) -> np.ndarray:
        from frugalrec.text.encoders import load_encoder

        return load_encoder(tier, backend).encode(texts, batch_size=batch_size)

    def recommend(
        self,
        model: Recommender,
        users: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return model.recommend(users, k=k, exclude_seen=exclude_seen, items=items)
