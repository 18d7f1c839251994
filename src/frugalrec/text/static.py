"""The static tier: model2vec token vectors distilled locally from a sentence-transformer.

No torch at encode time: a text's vector is the mean of its tokens' static vectors, one
sparse matmul per batch. The table is distilled once (about a minute on 2 cores) into the
cache from the teacher named in the registry (MiniLM).
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from frugalrec._io import cache_dir, write_json_atomic
from frugalrec.text.artefacts import MANIFEST, publish_dir, read_manifest
from frugalrec.text.encoder import TextEncoder, size_threads

if TYPE_CHECKING:
    from frugalrec.text.registry import EncoderSpec

logger = logging.getLogger(__name__)


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

    def __init__(self, model: Any, path: Path, tier: str = "static", name: str = "") -> None:
        super().__init__(tier, "numpy", name or path.name)
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


def static_dir(teacher: Path, folder: str, pca_dims: int) -> Path:
    """Cache folder ``folder`` of a static model distilled from the sentence-transformers
    folder ``teacher`` (PCA to ``pca_dims``), distilling it on first use."""
    root = cache_dir("models")
    final = root / folder
    if (final / "model.safetensors").exists() and (final / MANIFEST).exists():
        return final
    src = teacher
    logger.info("distilling the static tier from %s (one-time, about a minute on 2 cores)", src)
    size_threads()
    from model2vec.distill import distill_from_model
    from transformers import AutoModel, AutoTokenizer

    t0 = time.perf_counter()
    model = AutoModel.from_pretrained(str(src), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True, use_fast=True)
    # float32 on disk: the table is 31 MB either way in memory (scipy has no fp16 matmul).
    static = distill_from_model(
        model=model,
        tokenizer=tokenizer,
        pca_dims=pca_dims,
        device="cpu",
        quantize_to="float32",
    )
    seconds = time.perf_counter() - t0
    no_padding(static)

    def build(tmp: Path) -> None:
        static.save_pretrained(str(tmp))
        write_json_atomic(
            tmp / MANIFEST,
            {"source": str(src), "pca_dims": pca_dims, "build_seconds": seconds},
        )

    return publish_dir(final, build)


def no_padding(model: Any) -> None:
    # MiniLM's tokenizer.json pads every input to a fixed 128 tokens (and truncates at 128);
    # model2vec copies that into the static tokenizer, which would average 100+ [PAD] vectors
    # into every short text. Static encoding wants exactly the text's own tokens.
    model.tokenizer.no_padding()
    model.tokenizer.no_truncation()


def load_static(spec: EncoderSpec) -> StaticEncoder:
    """Load the static encoder ``spec`` describes (its ``source()`` distils on first use)."""
    t0 = time.perf_counter()
    path = spec.source()
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(str(path), force_download=False)
    no_padding(model)
    enc = StaticEncoder(model, path, spec.name, spec.model_name)
    enc._load_seconds = time.perf_counter() - t0
    enc._build_seconds = read_manifest(path).get("build_seconds")
    return enc
