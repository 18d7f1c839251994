"""LoRA verbaliser: a tiny random Llama (no download), examples from training rows only."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from finetune_helpers import SENTINEL, garden_split

needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None or importlib.util.find_spec("transformers") is None,
    reason="peft/transformers not installed",
)


def tiny_llama():  # type: ignore[no-untyped-def]
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def toy_examples(n: int = 24, K: int = 4, seed: int = 1):  # type: ignore[no-untyped-def]
    """Prompts whose answer is readable from the prompt: the answer letter's token is the
    prompt's last-but-one token (a copy task a LoRA on attention can learn)."""
    rng = np.random.default_rng(seed)
    label_ids = np.arange(10, 10 + K)
    out = []
    for _ in range(n):
        label = int(rng.integers(K))
        ids = [int(t) for t in rng.integers(20, 60, size=8)] + [int(label_ids[label]), 1]
        out.append((ids, label_ids, label))
    return out


@needs_peft
def test_lora_learns_changes_logits_and_leaves_base_untouched(tmp_path) -> None:
    import torch
    from peft import PeftModel

    from frugalrec.llm.lora import LoraTrainConfig, label_logits, save_adapter, train_lora

    model = tiny_llama()
    base_before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = toy_examples()
    ids0, lab, _ = data[0]
    with torch.no_grad():
        z_base = label_logits(model, ids0, lab).clone()
    cfg = LoraTrainConfig(
        r=4, alpha=8, dropout=0.0, lr=3e-2, epochs=6, accumulate=4, candidates=4,
        targets="q_proj,k_proj,v_proj,o_proj",
    )  # fmt: skip
    peft_model, rec = train_lora(model, data, cfg)
    losses = np.array(rec["loss_per_example"]).reshape(cfg.epochs, -1).mean(axis=1)
    assert losses[-1] < losses[0], losses
    assert rec["trainable_params"] > 0 and rec["training"]["examples"] == cfg.epochs * len(data)

    # The adapter changes the re-ranker's label logits...
    with torch.no_grad():
        z_lora = label_logits(peft_model, ids0, lab)
        assert not torch.allclose(z_lora, z_base)
        # ...while every base weight is bit-identical to before training.
        base = peft_model.get_base_model()
        for name, p in base.named_parameters():
            if "lora_" in name:
                continue
            key = name.replace(".base_layer", "")
            assert torch.equal(p, base_before[key]), name
        with peft_model.disable_adapter():
            assert torch.equal(label_logits(peft_model, ids0, lab), z_base)

    # Saved as safetensors + JSON; reloaded onto a fresh base it gives identical logits.
    rec["base"] = "tiny"
    folder = save_adapter(peft_model, tmp_path / "adapter", rec)
    assert (folder / "adapter_model.safetensors").exists()
    assert (folder / "adapter_config.json").exists() and (folder / "frugalrec-lora.json").exists()
    again = PeftModel.from_pretrained(tiny_llama(), str(folder)).eval()
    sd1 = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    sd2 = {k: v for k, v in again.state_dict().items() if "lora_" in k}
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    with torch.no_grad():
        assert torch.equal(label_logits(again, ids0, lab), z_lora)


@needs_peft
def test_check_adapter_names_the_problem(tmp_path) -> None:
    from frugalrec.llm.lora import check_adapter

    with pytest.raises(ValueError, match=r"adapter_model\.safetensors"):
        check_adapter(tmp_path, "smollm2-135m")
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        (tmp_path / f).write_text("{}")
    (tmp_path / "frugalrec-lora.json").write_text('{"base": "qwen2.5-0.5b"}')
    with pytest.raises(ValueError, match=r"trained on 'qwen2\.5-0\.5b'"):
        check_adapter(tmp_path, "smollm2-135m")


def test_examples_use_training_rows_only() -> None:
    """A sentinel item bought only in valid/test rows never appears in any example."""
    from frugalrec.llm.lora import verbaliser_examples
    from frugalrec.models.itemknn import ItemKNNRecommender

    split = garden_split()
    ds = split.dataset
    sentinels = {int(ds.items_vocab.index(np.array([s]))[0]) for s in SENTINEL}
    cheap = ItemKNNRecommender().fit(split.train_dataset())
    ex, counts = verbaliser_examples(ds, split.train_mask, cheap, n=100, candidates=5)
    assert ex and counts["examples"] == len(ex) <= counts["users_tried"]
    m = split.train_mask
    train_pairs = set(zip(ds.user[m].tolist(), ds.item[m].tolist(), strict=True))
    for e in ex:
        assert not sentinels & set(e.history.tolist()) and not sentinels & set(
            e.candidates.tolist()
        )
        target = int(e.candidates[e.label])
        # the answer is the user's own held-out TRAIN item, never in the shown history
        assert (e.user, target) in train_pairs and target not in set(e.history.tolist())
        assert all((e.user, int(i)) in train_pairs for i in e.history)
