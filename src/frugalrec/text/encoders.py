"""The encoder ladder: one small interface over static, MiniLM and MPNet sentence encoders.

Tiers and backends (``load_encoder(tier, backend)``; the table lives in
:mod:`frugalrec.text.registry`, where a user's own sentence-transformers folder can be added):

==========  ==============================================================================
tier        backends
==========  ==============================================================================
static      ``numpy``: model2vec vectors distilled locally from MiniLM (256-d, no torch)
minilm      ``torch`` (fp32), ``onnx`` (fp32), ``onnx-int8``, ``torch-int8``
mpnet       same four as minilm
==========  ==============================================================================

``onnx-int8`` is onnxruntime dynamic quantisation (int8 weights per channel, activations
quantised per call) with a per-encoder recipe (``EncoderSpec.int8``), the recommended fast
backend: mean cosine to fp32 0.992 (MiniLM) and 0.997 (MPNet) on MovieLens item texts.

``torch-int8`` is torch's own ``quantize_dynamic`` on every ``nn.Linear``: LOWER FIDELITY,
kept for measurement only and never a default. Mean cosine to fp32 on MovieLens item texts:
0.94 on MiniLM, 0.52 on MPNet (MPNet's feed-forward activation outliers); loading it emits a
:class:`LowFidelityWarning`.

Both int8 backends quantise activations with one scale per batch tensor, so a text's vector
depends on the batch it was encoded in: cosine between a text encoded alone and in a batch
is >= 0.987 for onnx-int8, down to 0.94 (MiniLM) / 0.89 (MPNet) for torch-int8. fp32 backends
agree to float rounding (< 1e-5) and the static tier is bit-exact.

Models come only from installed packages or frugalrec's cache (``$FRUGALREC_CACHE``); nothing
is written into site-packages and no model hub is contacted (``local_files_only`` everywhere,
offline switches set in :mod:`frugalrec.text`).

Modules, by idea: :mod:`~frugalrec.text.encoder` (the interface), :mod:`~frugalrec.text.static`
and :mod:`~frugalrec.text.transformer` (the two implementations), :mod:`~frugalrec.text.sources`
(where built-in weights come from), :mod:`~frugalrec.text.artefacts` (ONNX/int8 artefacts
built into the cache) and :mod:`~frugalrec.text.registry` (names -> specs, ``load_encoder``).
This module keeps the names older code imports.
"""

from __future__ import annotations

import os

# Set here too so importing this module directly (not through the package) stays offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from frugalrec.text.artefacts import Int8Recipe
from frugalrec.text.encoder import (
    LowFidelityWarning,
    ModelPackageMissingError,
    TextEncoder,
)
from frugalrec.text.registry import (
    BACKENDS,
    STATIC_PCA_DIMS,
    TIERS,
    EncoderSpec,
    encoder_names,
    encoder_spec,
    load_encoder,
    register_encoder,
    register_local_encoder,
)

# Per built-in tier, how onnx-int8 quantises it (kept for code that reads the old table).
INT8_RECIPES: dict[str, Int8Recipe] = {
    name: spec.int8 for name in TIERS if (spec := encoder_spec(name)).int8 is not None
}

__all__ = [
    "BACKENDS",
    "INT8_RECIPES",
    "STATIC_PCA_DIMS",
    "TIERS",
    "EncoderSpec",
    "Int8Recipe",
    "LowFidelityWarning",
    "ModelPackageMissingError",
    "TextEncoder",
    "encoder_names",
    "encoder_spec",
    "load_encoder",
    "register_encoder",
    "register_local_encoder",
]
