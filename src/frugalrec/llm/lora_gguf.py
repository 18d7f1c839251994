"""A peft LoRA adapter as a llama.cpp GGUF adapter, so the quantised runtime can serve it.

The adapter is trained on the GGUF base *as transformers dequantises it*, and transformers'
GGUF loader undoes llama.cpp's row permutation of the query and key projections for the
``llama`` architecture (rotary embeddings pair rows differently in the two codebases). The
LoRA product ``B @ A`` lives in the same output-row order as the weight it adds to, so for
those two projections the rows of ``B`` are permuted back the way llama.cpp's own converter
(``convert_lora_to_gguf.py``, by way of ``convert_hf_to_gguf.py``) permutes the base weight.
``qwen2`` stores its projections unpermuted. Other architectures are refused rather than
guessed at: a wrong permutation loads without error and silently scrambles the adapter.

Layout (what ``llama-adapter.cpp`` reads): ``general.type = "adapter"``, ``adapter.type =
"lora"``, ``adapter.lora.alpha``, and per adapted weight ``blk.N.<name>.weight.lora_a``
(numpy [r, in]) and ``.lora_b`` ([out, r]); llama.cpp scales the product by alpha / r, as
peft does. Tensors are float32: an r=8 adapter is 10-17 MB and is not worth quantising.

The file is written once beside the adapter (``adapter-<base>.gguf``) with its SHA-256 and
the safetensors' SHA-256 in ``adapter-<base>.gguf.json``; a changed adapter is re-exported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import write_json_atomic

# peft module name -> llama.cpp tensor name (both architectures below use these names).
GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
# architectures whose query/key rows llama.cpp stores permuted (see the module docstring)
PERMUTED_QK = {"llama": True, "qwen2": False}
_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    part = f.parts[f.data[0]]
    return bytes(part).decode("utf-8") if f.types and f.types[0].name == "STRING" else part[0]


def base_geometry(gguf_path: str | Path) -> dict[str, Any]:
    """``{"arch", "n_head", "n_head_kv"}`` of a base GGUF (header only; no tensor is read)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    arch = _field(reader, "general.architecture")
    n_head = _field(reader, f"{arch}.attention.head_count")
    n_kv = _field(reader, f"{arch}.attention.head_count_kv")
    return {"arch": arch, "n_head": int(n_head), "n_head_kv": int(n_kv or n_head)}


def permute_rows(b: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary row order from transformers' (rows of a [out, ...] matrix):
    within each head, interleave the first and second halves."""
    dim = b.shape[0] // n_head // 2
    return b.reshape(n_head, 2, dim, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def adapter_tensors(
    state: dict[str, np.ndarray], geometry: dict[str, Any]
) -> dict[str, np.ndarray]:
    """peft safetensors state -> llama.cpp adapter tensors (float32), permuted as needed.

    Raises ValueError for an architecture not in :data:`PERMUTED_QK`, an adapted module
    llama.cpp has no name for here, or an A without its B.
    """
    arch = geometry["arch"]
    if arch not in PERMUTED_QK:
        raise ValueError(
            f"GGUF adapters are written for {', '.join(sorted(PERMUTED_QK))} bases; "
            f"this base is {arch!r}"
        )
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        m = _KEY.search(key)
        if m is None or m.group(2) not in GGUF_NAMES:
            raise ValueError(f"adapter tensor {key!r}: no llama.cpp name for this module")
        layer, module, ab = int(m.group(1)), m.group(2), m.group(3)
        t = np.ascontiguousarray(value, dtype=np.float32)
        if ab == "B" and PERMUTED_QK[arch] and module in ("q_proj", "k_proj"):
            heads = geometry["n_head"] if module == "q_proj" else geometry["n_head_kv"]
            t = np.ascontiguousarray(permute_rows(t, heads))
        out[f"blk.{layer}.{GGUF_NAMES[module]}.weight.lora_{ab.lower()}"] = t
    for name in out:
        pair = name[:-1] + ("b" if name.endswith("a") else "a")
        if pair not in out:
            raise ValueError(f"adapter tensor {name!r} has no {pair!r}")
    return out


def export_gguf_adapter(folder: str | Path, base: str, base_path: str | Path) -> Path:
    """Write (once) the llama.cpp adapter for the peft adapter in ``folder``; return its path.

    ``base``: the LLM's registry name (the adapter's record must name it); ``base_path``: its
    GGUF. Re-exported only when the safetensors' SHA-256 changed.
    """
    import gguf
    from safetensors.numpy import load_file

    from frugalrec.llm.lora import check_adapter

    folder = Path(folder)
    check_adapter(folder, base)
    config = json.loads((folder / "adapter_config.json").read_text())
    src = folder / "adapter_model.safetensors"
    out = folder / f"adapter-{base}.gguf"
    meta_path = folder / f"adapter-{base}.gguf.json"
    src_sha = _sha256(src)
    if out.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("source_sha256") == src_sha and meta.get("sha256") == _sha256(out):
            return out
    if config.get("use_dora") or config.get("use_rslora"):
        raise ValueError(f"{folder / 'adapter_config.json'}: llama.cpp serves plain LoRA only")
    geometry = base_geometry(base_path)
    tensors = adapter_tensors(load_file(str(src)), geometry)
    tmp = out.with_suffix(f".gguf.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), geometry["arch"])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for name in sorted(tensors):
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    write_json_atomic(
        meta_path,
        {"base": base, "arch": geometry["arch"], "tensors": len(tensors),
         "lora_alpha": float(config["lora_alpha"]), "r": int(config["r"]),
         "source_sha256": src_sha, "sha256": _sha256(out)},
    )  # fmt: skip
    return out
