"""The encoder registry: one entry per rung of the encoder ladder.

An :class:`EncoderSpec` says where the weights come from (``source()``: a folder, built or
assembled on first use), how to get them (``install``), what they cost (params, dims, size),
their licence, how to load them (``kind``) and with which backends. Adding an encoder is one
:func:`register_encoder` call; a user's own sentence-transformers folder is one
:func:`register_local_encoder` call. ``load_encoder``, ``PipelineConfig.validate`` and
``frugalrec encoders list`` all read this table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from frugalrec.text.artefacts import Int8Recipe
from frugalrec.text.encoder import TextEncoder
from frugalrec.text.sources import MINILM_PIP, MPNET_PIP

KINDS = ("static", "sentence-transformers")
TRANSFORMER_BACKENDS = ("torch", "onnx", "onnx-int8", "torch-int8")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder. ``source()`` -> the weights folder (may build or assemble it, or raise
    ModelPackageMissingError naming ``install``); ``backends[0]`` is the default backend."""

    name: str
    kind: str
    model_name: str
    source: Callable[[], Path]
    install: str
    backends: tuple[str, ...]
    dims: int | None = None
    params: int | None = None
    size_mb: float | None = None
    licence: str = "unknown"
    int8: Int8Recipe | None = None
    # Mean cosine to fp32 of torch-int8 on MovieLens item texts (frugalrec.bench.encoders).
    torch_int8_cosine: float | None = None
    description: str = ""

    def row(self) -> dict[str, object]:
        """A table row for ``frugalrec encoders list``."""
        return {
            "tier": self.name,
            "kind": self.kind,
            "model": self.model_name,
            "backends": ", ".join(self.backends),
            "dims": self.dims,
            "params": self.params,
            "size_mb": self.size_mb,
            "licence": self.licence,
            "install": self.install,
        }


_ENCODERS: dict[str, EncoderSpec] = {}
_ALIASES = {("static", "static"): "numpy"}


def register_encoder(spec: EncoderSpec, replace: bool = False) -> EncoderSpec:
    """Add ``spec`` to the registry (ValueError on a bad or taken name unless ``replace``)."""
    if not _NAME.match(spec.name) or spec.name == "none":
        raise ValueError(f"encoder name {spec.name!r}: use lower-case letters, digits, . _ -")
    if spec.kind not in KINDS:
        raise ValueError(f"encoder {spec.name!r}: kind {spec.kind!r} not in {KINDS}")
    if not spec.backends:
        raise ValueError(f"encoder {spec.name!r}: no backends")
    if "onnx-int8" in spec.backends and spec.int8 is None:
        raise ValueError(f"encoder {spec.name!r}: onnx-int8 needs an Int8Recipe")
    if spec.name in _ENCODERS and not replace:
        raise ValueError(f"encoder {spec.name!r} is already registered")
    _ENCODERS[spec.name] = spec
    return spec


def register_local_encoder(name: str, path: str | Path, licence: str = "unknown") -> EncoderSpec:
    """Register a sentence-transformers folder of the user's own (e.g. a fine-tuned model):
    backends torch, onnx and onnx-int8 (plain dynamic int8, no graph fusion)."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (a sentence-transformers model folder)")
    if not any((folder / f).exists() for f in ("modules.json", "config.json")):
        raise ValueError(f"{folder}: no modules.json or config.json; not a model folder")
    return register_encoder(
        EncoderSpec(
            name=name,
            kind="sentence-transformers",
            model_name=folder.name,
            source=lambda: folder,
            install=f"local folder {folder}",
            backends=("torch", "onnx", "onnx-int8"),
            licence=licence,
            int8=Int8Recipe("qint8_rr"),
            description="registered by path",
        ),
        replace=True,
    )


def encoder_spec(name: str) -> EncoderSpec:
    """The spec registered as ``name``; ValueError lists the registered names."""
    try:
        return _ENCODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown encoder tier {name!r}; choose one of {', '.join(_ENCODERS)}"
        ) from None


def encoder_names() -> tuple[str, ...]:
    """Registered encoder names, in registration order (cheapest built-in first)."""
    return tuple(_ENCODERS)


def resolve_backend(name: str, backend: str | None = None) -> str:
    """The backend ``load_encoder(name, backend)`` would use; ValueError if it has none such."""
    spec = encoder_spec(name)
    backend = backend or spec.backends[0]
    backend = _ALIASES.get((name, backend), backend)
    if backend not in spec.backends:
        raise ValueError(
            f"tier {name!r} has no backend {backend!r}; choose one of {', '.join(spec.backends)}"
        )
    return backend


def load_encoder(tier: str, backend: str | None = None) -> TextEncoder:
    """Load one rung of the ladder on CPU.

    ``backend`` defaults to the encoder's first backend (``torch``; ``numpy`` for ``static``).
    The first call per encoder/backend may build an artefact into the cache (static:
    distillation ~1 min; onnx/onnx-int8: export + quantisation; mpnet: unzip of 438 MB).

    Raises ValueError for an unknown encoder or backend, ModelPackageMissingError (with the
    pip command) when the weights package is absent.
    """
    backend = resolve_backend(tier, backend)
    spec = _ENCODERS[tier]
    if spec.kind == "static":
        from frugalrec.text.static import load_static

        return load_static(spec)
    from frugalrec.text.transformer import load_transformer

    return load_transformer(spec, backend)


class _BackendsView(Mapping[str, tuple[str, ...]]):
    """name -> backends, live over the registry (the old ``BACKENDS`` dict's shape)."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return _ENCODERS[name].backends

    def __iter__(self) -> Iterator[str]:
        return iter(_ENCODERS)

    def __len__(self) -> int:
        return len(_ENCODERS)


BACKENDS: Mapping[str, tuple[str, ...]] = _BackendsView()

# ---------------------------------------------------------------------------------------------
# Built-in rungs

STATIC_PCA_DIMS = 256


def _minilm() -> Path:
    from frugalrec.text.sources import minilm_dir

    return minilm_dir()


def _mpnet() -> Path:
    from frugalrec.text.sources import mpnet_dir

    return mpnet_dir()


def _static() -> Path:
    from frugalrec.text.static import static_dir

    # Distilled from whatever is registered as "minilm" (the teacher's vocabulary and space).
    return static_dir(
        encoder_spec("minilm").source(),
        f"static-minilm-l6-v2-pca{STATIC_PCA_DIMS}-f32",
        STATIC_PCA_DIMS,
    )


register_encoder(
    EncoderSpec(
        name="static",
        kind="static",
        model_name=f"model2vec-distilled-all-MiniLM-L6-v2-pca{STATIC_PCA_DIMS}",
        source=_static,
        install=MINILM_PIP,
        backends=("numpy",),
        dims=STATIC_PCA_DIMS,
        params=30522 * STATIC_PCA_DIMS,
        size_mb=31.3,
        licence="Apache-2.0 (distilled from all-MiniLM-L6-v2)",
        description="model2vec static vectors distilled locally from MiniLM (no torch)",
    )
)
register_encoder(
    EncoderSpec(
        name="minilm",
        kind="sentence-transformers",
        model_name="all-MiniLM-L6-v2",
        source=_minilm,
        install=MINILM_PIP,
        backends=TRANSFORMER_BACKENDS,
        dims=384,
        params=22_700_000,
        size_mb=90.9,
        licence="Apache-2.0",
        # Fusing the graph first (onnxruntime's BERT optimizer: one Attention op per layer,
        # SkipLayerNorm, BiasGelu) lets the quantiser emit QAttention instead of six separate
        # int8 MatMuls with fp32 glue: 1.21x the unfused int8 throughput at the same cosine
        # (0.9919 vs 0.9916) on ml-100k texts. MiniLM has no activation outliers.
        int8=Int8Recipe("qint8_rr_fused", fuse_bert=True),
        torch_int8_cosine=0.94,
    )
)
register_encoder(
    EncoderSpec(
        name="mpnet",
        kind="sentence-transformers",
        model_name="all-mpnet-base-v2",
        source=_mpnet,
        install=MPNET_PIP,
        backends=TRANSFORMER_BACKENDS,
        dims=768,
        params=109_500_000,
        size_mb=438.0,
        licence="Apache-2.0",
        # MPNet's feed-forward MatMuls see activation outliers (max |x| 40-90 where the
        # 99.9th percentile is 2-9), so one uint8 scale per tensor wipes out the ordinary
        # values: quantising them gave mean cosine 0.86-0.87 to fp32 (0.988 with only the
        # down-projections kept fp32). Keeping both FFN MatMuls fp32 gives 0.997.
        int8=Int8Recipe("qint8_rr_ffn32", keep_fp32=r"/layer\.\d+/(intermediate|output)/dense/"),
        torch_int8_cosine=0.52,
    )
)

# The built-in names, in ladder order (user registrations are appended to the registry).
TIERS: tuple[str, ...] = encoder_names()
