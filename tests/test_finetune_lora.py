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


def test_holdout_rows_pick_one_training_row_per_user() -> None:
    from frugalrec.llm.lora import holdout_rows
    from frugalrec.llm.request import history_in_order

    split = garden_split()
    ds, train = split.dataset, split.train_mask
    users = np.unique(ds.user[train])
    latest = holdout_rows(ds, train, "latest")
    assert not np.any(latest & ~train)
    assert sorted(ds.user[latest].tolist()) == users.tolist()  # every shopper has 3 train rows
    for u in users:
        assert ds.item[latest & (ds.user == u)].tolist() == [history_in_order(ds, u, train)[-1]]
    a, b = (holdout_rows(ds, train, "random", seed=s) for s in (3, 4))
    assert not np.any(a & ~train) and sorted(ds.user[a].tolist()) == users.tolist()
    assert np.array_equal(a, holdout_rows(ds, train, "random", seed=3))  # seeded
    assert not np.array_equal(a, b)  # ... and a different seed picks other rows
    assert not holdout_rows(ds, train, "latest", min_items=4).any()  # nobody has 4
    with pytest.raises(ValueError, match="latest"):
        holdout_rows(ds, train, "oldest")


def test_examples_predict_the_held_out_training_row() -> None:
    """With held-out rows the answer is that row's item, the cheap stage never saw it, and
    held-out rows outside train are refused."""
    from frugalrec.llm.lora import holdout_rows, verbaliser_examples
    from frugalrec.models.itemknn import ItemKNNRecommender

    split = garden_split()
    ds, train = split.dataset, split.train_mask
    held = holdout_rows(ds, train, "random", seed=5)
    cheap = ItemKNNRecommender().fit(ds.subset(train & ~held))
    ex, counts = verbaliser_examples(ds, train, cheap, n=100, candidates=5, held_out=held)
    assert ex and counts["users_tried"] == len(np.unique(ds.user[train]))
    target_of = dict(zip(ds.user[held].tolist(), ds.item[held].tolist(), strict=True))
    for e in ex:
        assert int(e.candidates[e.label]) == target_of[e.user]
        assert target_of[e.user] not in set(e.history.tolist()) and len(e.history) == 2
    bad = held.copy()
    bad[np.flatnonzero(split.valid_mask)[0]] = True
    with pytest.raises(ValueError, match="training rows"):
        verbaliser_examples(ds, train, cheap, n=5, held_out=bad)


@needs_peft
def test_training_stops_at_max_seconds() -> None:
    from frugalrec.llm.lora import LoraTrainConfig, train_lora

    cfg = LoraTrainConfig(r=2, alpha=4, epochs=3, accumulate=4, candidates=4)
    _, rec = train_lora(tiny_llama(), toy_examples(), cfg, max_seconds=0.0)
    assert rec["training"]["stopped_at_max_seconds"] is True
    assert rec["training"]["examples"] == cfg.accumulate  # after the first optimiser step
    _, full = train_lora(tiny_llama(), toy_examples(), cfg)
    assert not full["training"]["stopped_at_max_seconds"]
    assert full["training"]["examples"] == cfg.epochs * 24


@needs_peft
def test_label_logits_equal_the_full_forward_at_the_last_position() -> None:
    """Only the last position goes through the output head; the label logits are those of
    the full forward pass."""
    import torch

    from frugalrec.llm.lora import label_logits

    model = tiny_llama()
    ids, lab, _ = toy_examples()[0]
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits[0, -1][torch.as_tensor(lab)]
        torch.testing.assert_close(label_logits(model, ids, lab), full)


def test_shuffled_candidates_keep_the_answer_and_lose_the_position() -> None:
    from frugalrec.llm.lora import Example, shuffle_candidates

    # every answer is the cheap stage's first candidate: the position prior at its extreme
    ex = [Example(u, np.arange(3), np.arange(10 * u, 10 * u + 10), 0) for u in range(400)]
    sh = shuffle_candidates(ex, seed=3)
    for a, b in zip(ex, sh, strict=True):
        assert b.candidates[b.label] == a.candidates[a.label]
        assert sorted(b.candidates.tolist()) == sorted(a.candidates.tolist())
    counts = np.bincount([e.label for e in sh], minlength=10)
    assert counts.min() >= 20 and counts.max() <= 65  # about 40 each, none dominant
    again = shuffle_candidates(ex, seed=3)
    assert all(np.array_equal(a.candidates, b.candidates) for a, b in zip(sh, again, strict=True))
