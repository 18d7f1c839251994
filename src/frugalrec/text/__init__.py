"""Text tier: the encoder ladder (static -> MiniLM -> MPNet, x torch / ONNX / int8) and a cache.

Every model is loaded from an installed package's folder or from frugalrec's cache; no code path
may reach a model hub, so the offline switches are set before anything imports
``huggingface_hub`` or ``transformers`` (both read them at import time).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from frugalrec.text.bench import benchmark_encoders  # noqa: E402
from frugalrec.text.cache import EmbeddingCache  # noqa: E402
from frugalrec.text.encoders import (  # noqa: E402
    BACKENDS,
    TIERS,
    ModelPackageMissingError,
    TextEncoder,
    load_encoder,
)
from frugalrec.text.items import item_texts  # noqa: E402

__all__ = [
    "BACKENDS",
    "TIERS",
    "EmbeddingCache",
    "ModelPackageMissingError",
    "TextEncoder",
    "benchmark_encoders",
    "item_texts",
    "load_encoder",
]
