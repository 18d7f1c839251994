"""Text tier: the encoder ladder (static -> MiniLM -> MPNet, x torch / ONNX / int8) and a cache.

Every model is loaded from an installed package's folder or from frugalrec's cache; no code path
may reach a model hub, so the offline switches are set before anything imports
``huggingface_hub`` or ``transformers`` (both read them at import time).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from frugalrec.text.cache import EmbeddingCache
from frugalrec.text.encoders import (
    BACKENDS,
    INT8_RECIPES,
    TIERS,
    EncoderSpec,
    LowFidelityWarning,
    ModelPackageMissingError,
    TextEncoder,
    encoder_names,
    encoder_spec,
    load_encoder,
    register_encoder,
    register_local_encoder,
)
from frugalrec.text.items import item_texts

__all__ = [
    "BACKENDS",
    "INT8_RECIPES",
    "TIERS",
    "EmbeddingCache",
    "EncoderSpec",
    "LowFidelityWarning",
    "ModelPackageMissingError",
    "TextEncoder",
    "encoder_names",
    "encoder_spec",
    "item_texts",
    "load_encoder",
    "register_encoder",
    "register_local_encoder",
]
