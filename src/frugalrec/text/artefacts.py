"""Artefacts built once into frugalrec's cache: ONNX exports, int8 quantisations, and the
atomic publish/manifest helpers every built model folder uses.

A built folder appears in one rename (a crash leaves nothing half-built) and carries a
``frugalrec_model.json`` manifest (source, sizes, one-time build seconds).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import cache_dir, write_json_atomic
from frugalrec._threads import thread_count
from frugalrec.text.encoder import size_threads

MANIFEST = "frugalrec_model.json"


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


def ort_kwargs(file_name: str | None = None) -> dict[str, Any]:
    """ONNX Runtime session arguments for sentence-transformers: CPU, one sized pool."""
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


def onnx_dir(name: str, source: Path) -> Path:
    """Cache folder with the fp32 ONNX export of encoder ``name`` (``onnx/model.onnx``) made
    from the sentence-transformers folder ``source``, built once."""
    final = cache_dir("models") / f"{name}-onnx"
    if (final / "onnx" / "model.onnx").exists() and (final / MANIFEST).exists():
        return final
    src = source
    size_threads()
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
                model_kwargs=ort_kwargs(),
            )
        finally:
            st_log.setLevel(level)
        model.save_pretrained(str(tmp))
        seconds = time.perf_counter() - t0
        write_json_atomic(
            tmp / MANIFEST,
            {
                "source": str(src),
                "files": {"model.onnx": onnx_weight_stats(tmp / "onnx" / "model.onnx")},
                "build_seconds": {"model.onnx": seconds},
            },
        )

    return publish_dir(final, build)


def int8_config(recipe: Int8Recipe, fp32_path: Path) -> Any:
    """optimum dynamic-quantisation config for ``recipe`` (see Int8Recipe)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantizationMode, QuantType
    from optimum.onnxruntime.configuration import QuantizationConfig

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


def fuse_and_quantize(folder: Path, config: Any, out: Path) -> None:
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


def onnx_int8_file(name: str, source: Path, recipe: Int8Recipe) -> tuple[Path, str]:
    """(folder, file name) of the int8 ONNX model of encoder ``name``, quantised on first use.

    The quantised file is written into a temp folder and moved into ``<name>-onnx/onnx/`` in
    one rename, then the folder's manifest is updated (atomically) with its size and cost.
    """
    folder = onnx_dir(name, source)
    file_name = f"model_{recipe.suffix}.onnx"
    final = folder / "onnx" / file_name
    if final.exists():
        return folder, file_name
    size_threads()
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    t0 = time.perf_counter()
    model = SentenceTransformer(
        str(folder),
        device="cpu",
        backend="onnx",
        local_files_only=True,
        model_kwargs=ort_kwargs("onnx/model.onnx"),
    )
    config = int8_config(recipe, folder / "onnx" / "model.onnx")
    with tempfile.TemporaryDirectory(prefix=f".{name}-int8.", dir=folder) as tmp:
        if recipe.fuse_bert:
            fuse_and_quantize(folder, config, Path(tmp) / "onnx" / file_name)
        else:
            export_dynamic_quantized_onnx_model(model, config, tmp, file_suffix=recipe.suffix)
        stats = onnx_weight_stats(Path(tmp) / "onnx" / file_name)
        os.replace(Path(tmp) / "onnx" / file_name, final)
    manifest = read_manifest(folder)
    manifest.setdefault("files", {})[file_name] = stats
    # The int8 model's one-time cost includes the fp32 export it starts from.
    base = manifest.setdefault("build_seconds", {}).get("model.onnx") or 0.0
    manifest["build_seconds"][file_name] = base + time.perf_counter() - t0
    manifest.setdefault("int8_recipes", {})[file_name] = dataclasses.asdict(recipe)
    write_json_atomic(folder / MANIFEST, manifest)
    return folder, file_name


def onnx_weight_stats(path: Path) -> dict[str, int]:
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


def torch_weight_stats(module: Any) -> tuple[int, int]:
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


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def publish_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build`` into a temp folder beside ``final`` and rename it into place.

    A crash leaves no half-built model behind; if another process published first, its
    folder wins and ours is discarded.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        if final.exists() and not (final / MANIFEST).exists():
            shutil.rmtree(final)  # an incomplete folder from an older layout or a manual copy
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
