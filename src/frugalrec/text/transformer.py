"""sentence-transformers encoders on CPU: torch (fp32), torch-int8, onnx (fp32), onnx-int8.

``onnx-int8`` is onnxruntime dynamic quantisation with the spec's recipe
(:class:`~frugalrec.text.artefacts.Int8Recipe`), the recommended fast backend. ``torch-int8``
is torch's own ``quantize_dynamic`` on every ``nn.Linear``: LOWER FIDELITY, kept for
measurement only; loading it emits a :class:`~frugalrec.text.encoder.LowFidelityWarning`.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from frugalrec.text.artefacts import (
    onnx_dir,
    onnx_int8_file,
    onnx_weight_stats,
    ort_kwargs,
    read_manifest,
    torch_weight_stats,
)
from frugalrec.text.encoder import LowFidelityWarning, TextEncoder, size_threads

if TYPE_CHECKING:
    from frugalrec.text.registry import EncoderSpec


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model on CPU (torch, torch-int8, onnx or onnx-int8 backend)."""

    def __init__(self, tier: str, backend: str, model: Any, path: Path, name: str = "") -> None:
        super().__init__(tier, backend, name or path.name)
        self._model = model
        dims = model.get_embedding_dimension()
        if dims is None:
            raise ValueError(f"{path}: model does not report its embedding dimension")
        self._dims = int(dims)
        self.path = path
        self._session = direct_onnx_session(model) if backend.startswith("onnx") else None

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


def direct_onnx_session(model: Any) -> tuple[Any, list[str]] | None:
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


def require_sentence_transformers() -> None:
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ImportError(
            "the minilm/mpnet tiers need the text extras: pip install 'frugalrec[text]'"
        )


def load_transformer(spec: EncoderSpec, backend: str) -> SentenceTransformerEncoder:
    """Load the sentence-transformers encoder ``spec`` describes with ``backend`` (building
    its ONNX / int8 artefact into the cache on first use)."""
    require_sentence_transformers()
    tier = spec.name
    t0 = time.perf_counter()
    size_threads()
    build_seconds: float | None = None
    if backend in ("torch", "torch-int8"):
        path = spec.source()
        import torch
        from sentence_transformers import SentenceTransformer

        size_threads()  # torch is imported now: size its pool too
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.eval()
        if backend == "torch-int8":
            warnings.warn(
                f"{tier}/torch-int8 is a low-fidelity backend (mean cosine to fp32 about "
                f"{spec.torch_int8_cosine or 0.0:.2f}); use onnx-int8 for int8 speed at >= 0.99",
                LowFidelityWarning,
                stacklevel=3,
            )
            with warnings.catch_warnings():
                # torch.ao eager quantisation is deprecated in favour of torchao; still works.
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
                )
        params, nbytes = torch_weight_stats(model)
    else:
        if backend == "onnx":
            path, file_name = onnx_dir(tier, spec.source()), "model.onnx"
        else:
            assert spec.int8 is not None  # the registry offers onnx-int8 only with a recipe
            path, file_name = onnx_int8_file(tier, spec.source(), spec.int8)
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(
            str(path),
            device="cpu",
            backend="onnx",
            local_files_only=True,
            model_kwargs=ort_kwargs(f"onnx/{file_name}"),
        )
        manifest = read_manifest(path)
        stats = manifest.get("files", {}).get(file_name) or onnx_weight_stats(
            path / "onnx" / file_name
        )
        params, nbytes = int(stats["params"]), int(stats["bytes"])
        build_seconds = manifest.get("build_seconds", {}).get(file_name)
    enc = SentenceTransformerEncoder(tier, backend, model, path, spec.model_name)
    enc._params, enc._model_bytes = params, nbytes
    enc._load_seconds = time.perf_counter() - t0
    enc._build_seconds = build_seconds
    if backend == "onnx-int8":
        enc.variant = spec.int8.suffix if spec.int8 else ""
    return enc
