"""Fine-tune a sentence-transformers encoder on a split's training interactions.

What is learned: "items bought together read alike". Each warm item is paired with its
``neighbours`` nearest items by *shrunk co-occurrence cosine* in the training interactions,
``c_ij / (sqrt(n_i n_j) + shrink)``, and the encoder is trained with in-batch negatives
(sentence-transformers' ``MultipleNegativesRankingLoss``). Measured before this module on
ml-100k cold items (FINDINGS.md): raw co-consumption pairs (two random items of one history)
taught nothing (final loss = ln 64), neighbour pairs lifted textmap NDCG@10 0.281 -> 0.318.

Only the interaction matrix passed in is read, so a caller that passes ``split.train`` can
never leak valid or test interactions into the weights. Early stopping asks a caller-given
``valid_score(item_vectors) -> float`` after every epoch (and once before training: if no
epoch beats the frozen encoder on valid, the frozen weights are kept and saved).

The result is a sentence-transformers folder (``model.safetensors`` + JSON configs +
tokenizer) plus ``frugalrec-finetune.json`` in ``cache_dir("finetuned")``, named by a key over
(base encoder, item texts, training interactions, config). It is registered as an encoder
(:func:`~frugalrec.text.registry.register_local_encoder`), so every backend (torch, onnx,
onnx-int8) and the embedding cache work on it unchanged. No pickles: weights are safetensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from frugalrec._config import JsonConfig
from frugalrec._io import cache_dir, write_json_atomic
from frugalrec.text.artefacts import MANIFEST, publish_dir

# Bump when the training procedure changes: old folders are then never reused.
FORMAT = 2
RECORD = "frugalrec-finetune.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneConfig(JsonConfig):
    """``neighbours``: positives per warm item; ``shrink``: co-occurrence cosine shrinkage
    (damps pairs seen by one or two users); ``epochs``: at most this many (early stopping on
    valid with ``patience``); ``max_pairs``: 0 = all pairs, else a seeded sample."""

    neighbours: int = 5
    shrink: float = 10.0
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    scale: float = 20.0
    patience: int = 1
    max_pairs: int = 0
    seed: int = 42

    def validate(self) -> None:
        for name in ("neighbours", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"FinetuneConfig.{name} must be >= 1")
        if self.batch_size < 2:
            raise ValueError("FinetuneConfig.batch_size must be >= 2 (in-batch negatives)")
        if self.lr <= 0 or self.shrink < 0 or self.max_pairs < 0:
            raise ValueError("FinetuneConfig: lr must be > 0, shrink and max_pairs >= 0")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError("FinetuneConfig.warmup must be in [0, 1)")


@dataclasses.dataclass
class FinetuneResult:
    """The registered encoder name, its folder and the training record (cost, curves)."""

    name: str
    path: Path
    record: dict[str, Any]
    cached: bool
    # The trained SentenceTransformer when trained in this call (None when read from cache).
    model: Any = None


def neighbour_pairs(
    train: sp.csr_matrix, neighbours: int = 5, shrink: float = 10.0, block: int = 1024
) -> np.ndarray:
    """int64 [m, 2] (anchor, positive) item pairs: every item with training interactions ->
    its ``neighbours`` nearest items by shrunk co-occurrence cosine (ties: lower index).

    ``train`` is a binary CSR [n_users, n_items]; only it is read. Computed in item blocks
    (memory O(block x n_items)) so a large catalogue does not need a dense n x n matrix.
    """
    X = sp.csr_matrix(train, dtype=np.float32)
    X.data[:] = 1.0
    Xt = X.T.tocsr()
    n_items = X.shape[1]
    counts = np.asarray(X.sum(axis=0)).ravel()
    root = np.sqrt(counts)
    out = []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        C = np.asarray((Xt[start:stop] @ X).todense(), dtype=np.float32)
        rows = np.arange(stop - start)
        C[rows, rows + start] = 0.0  # an item is not its own neighbour
        S = C / (root[start:stop, None] * root[None, :] + shrink + 1e-12)
        S[C <= 0] = -np.inf
        kk = min(neighbours, n_items - 1)
        if kk <= 0:
            break
        part = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(S, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        part = np.take_along_axis(part, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        anchor = np.repeat(np.arange(start, stop), kk).reshape(-1, kk)
        keep = np.isfinite(vals)
        out.append(np.stack([anchor[keep], part[keep]], axis=1))
    if not out:
        return np.empty((0, 2), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def finetune_key(
    base: str, model_name: str, texts: list[str], train: sp.csr_matrix, config: FinetuneConfig
) -> str:
    """Hex digest naming one fine-tune: base encoder, item texts, the training interactions
    (as item-index pairs per user index; no ids) and the config."""
    X = sp.csr_matrix(train)
    X.sort_indices()
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, base, model_name, config.to_dict()], sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    h.update(np.asarray(X.shape, dtype=np.int64).tobytes())
    h.update(X.indptr.astype(np.int64).tobytes())
    h.update(X.indices.astype(np.int64).tobytes())
    return h.hexdigest()


def finetune_encoder(
    base: str,
    texts: list[str],
    train: sp.csr_matrix,
    config: FinetuneConfig | None = None,
    valid_score: Callable[[np.ndarray], float] | None = None,
    root: Path | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune encoder ``base`` (a registered sentence-transformers encoder) on ``train``
    (binary CSR [n_users, n_items] whose columns are ``texts``) and register the result.

    ``valid_score(vectors float32 [n_items, d]) -> float`` (higher is better) picks the epoch;
    without it the last epoch is kept. A folder already in the cache under the same key is
    reused without training (``cached=True``). Returns the registered encoder name (e.g.
    ``minilm-ft-1a2b3c4d5e6f``), its folder and the training record.
    """
    from frugalrec.text.registry import encoder_spec, register_local_encoder

    config = config or FinetuneConfig()
    config.validate()
    spec = encoder_spec(base)
    if spec.kind != "sentence-transformers":
        raise ValueError(f"encoder {base!r} ({spec.kind}) cannot be fine-tuned; use minilm/mpnet")
    if train.shape[1] != len(texts):
        raise ValueError(f"train has {train.shape[1]} item columns but {len(texts)} texts")
    key = finetune_key(base, spec.model_name, texts, train, config)
    name = f"{base}-ft-{key[:12]}"
    final = (root or cache_dir("finetuned")) / name
    final.parent.mkdir(parents=True, exist_ok=True)
    if (final / MANIFEST).exists() and (final / RECORD).exists():
        register_local_encoder(name, final)
        return FinetuneResult(name, final, json.loads((final / RECORD).read_text()), True)
    record: dict[str, Any] = {}
    trained: list[Any] = []

    def build(tmp: Path) -> None:
        model, rec = _train(spec.source(), texts, train, config, valid_score, progress)
        model.save(str(tmp), create_model_card=False)
        rec.update({"format": FORMAT, "key": key, "base": base, "name": name})
        write_json_atomic(tmp / RECORD, rec)
        write_json_atomic(tmp / MANIFEST, {"source": spec.model_name, "finetune_key": key})
        record.update(rec)
        trained.append(model)

    publish_dir(final, build)
    register_local_encoder(name, final)
    if not record:  # another process published the same key first
        record = json.loads((final / RECORD).read_text())
    return FinetuneResult(name, final, record, False, trained[0] if trained else None)


def _train(
    source: Path,
    texts: list[str],
    train: sp.csr_matrix,
    config: FinetuneConfig,
    valid_score: Callable[[np.ndarray], float] | None,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """The training loop -> (SentenceTransformer holding the chosen weights, record)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from frugalrec.text.encoder import size_threads

    size_threads()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    pairs = neighbour_pairs(train, config.neighbours, config.shrink)
    if config.max_pairs and len(pairs) > config.max_pairs:
        pairs = pairs[np.sort(rng.choice(len(pairs), config.max_pairs, replace=False))]
    if len(pairs) < 2:
        raise ValueError(
            f"only {len(pairs)} training pair(s): too few co-occurring items to fine-tune on"
        )
    loss_fn = MultipleNegativesRankingLoss(model, scale=config.scale)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = (len(pairs) + config.batch_size - 1) // config.batch_size
    total = steps_per_epoch * config.epochs
    warm = max(1, int(config.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )

    def vectors() -> np.ndarray:
        out = model.encode(texts, batch_size=128, convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(out, dtype=np.float32)

    rss0 = _peak_rss_bytes()
    cpu0, t0 = time.process_time(), time.perf_counter()
    valid_curve: list[float | None] = [valid_score(vectors()) if valid_score else None]
    best_epoch, best_valid = 0, valid_curve[0]
    best_state = _copy_state(model) if valid_score else None
    losses: list[float] = []
    bad, seen, train_s = 0, 0, 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"fine-tune {source.name}", unit="step", file=sys.stderr)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(len(pairs))
        epoch_loss, t_ep = 0.0, time.perf_counter()
        for s in range(steps_per_epoch):
            idx = pairs[order[s * config.batch_size : (s + 1) * config.batch_size]]
            if len(idx) < 2:
                continue
            feats = [model.tokenize([texts[i] for i in idx[:, j]]) for j in (0, 1)]
            loss = loss_fn(feats, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            epoch_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"epoch {epoch} loss {float(loss.detach()):.3f}")
        train_s += time.perf_counter() - t_ep
        losses.append(epoch_loss / len(pairs))
        if valid_score is None:
            valid_curve.append(None)
            best_epoch = epoch
            continue
        v = valid_score(vectors())
        valid_curve.append(v)
        if best_valid is None or v > best_valid:
            best_epoch, best_valid, bad = epoch, v, 0
            best_state = _copy_state(model)
        else:
            bad += 1
            if bad >= config.patience:
                break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    record = {
        "config": config.to_dict(),
        "pairs": len(pairs),
        "items": len(texts),
        "warm_items": int((np.diff(sp.csc_matrix(train).indptr) > 0).sum()),
        "epochs_run": len(losses),
        "best_epoch": best_epoch,
        "loss_per_epoch": losses,
        "valid_per_epoch": valid_curve,
        "training": {
            "wall_seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - cpu0,
            "train_wall_seconds": train_s,
            "examples": seen,
            "examples_per_second": seen / train_s if train_s > 0 else None,
            "peak_rss_bytes": _peak_rss_bytes(),
            "peak_rss_before_bytes": rss0,
            "threads": int(torch.get_num_threads()),
        },
    }
    return model, record


def _copy_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _peak_rss_bytes() -> int:
    """This process's peak resident set so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
