"""A LoRA-tuned one-pass verbaliser re-ranker (LlamaRec's recipe on a small local LLM).

Training examples come from the split's TRAINING interactions only: for a user, the last
training item (by time) is held out, the cheap stage (fitted on train) ranks the catalogue
from the rest of the history, and when the held-out item is among its top-K the example is
the re-ranker's own prompt (:meth:`LLMReranker.prompt`: candidates labelled A, B, C...) with
the held-out item's letter as the answer. The loss is the cross-entropy over the K label
logits at the last position, exactly the quantity :meth:`LLMReranker.llm_scores` turns into
scores. Only the LoRA matrices (``peft``) train; the base weights stay as loaded.

Weights for training come from the GGUF through transformers' GGUF loader (dequantised to
float32), so no model hub is involved. The adapter is saved by peft as
``adapter_model.safetensors`` + ``adapter_config.json``, with ``frugalrec-lora.json`` (config,
base model, examples, training cost, loss curve) beside them. :class:`LoraGGUFLLM` serves it
through torch (transformers + peft), behind the same :class:`~frugalrec.llm.runtime.LLM`
interface as the zero-shot runtimes.

``python -m frugalrec.llm.lora train|eval`` runs the ml-100k experiment (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._config import JsonConfig
from frugalrec._io import write_json_atomic
from frugalrec.llm.runtime import DEFAULT_MODEL, TransformersGGUFLLM

RECORD = "frugalrec-lora.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraTrainConfig(JsonConfig):
    """LoRA rank ``r``/``alpha``/``dropout`` on the ``targets`` projections (comma-separated
    module names); ``examples``: at most this many training prompts (seeded sample of
    users); ``candidates``/``history_items`` as in :class:`RerankerConfig`."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: str = "q_proj,v_proj"
    lr: float = 3e-4
    epochs: int = 1
    accumulate: int = 8
    examples: int = 200
    candidates: int = 10
    history_items: int = 10
    seed: int = 42

    def validate(self) -> None:
        if self.r < 1 or self.alpha < 1 or self.epochs < 1 or self.accumulate < 1:
            raise ValueError("LoraTrainConfig: r, alpha, epochs and accumulate must be >= 1")
        if not 0.0 <= self.dropout < 1.0 or self.lr <= 0:
            raise ValueError("LoraTrainConfig: dropout in [0, 1), lr > 0")
        if not 2 <= self.candidates <= 26:
            raise ValueError("LoraTrainConfig.candidates must be in 2..26")

    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.targets.split(",") if t.strip()]


@dataclasses.dataclass(frozen=True)
class Example:
    """One training prompt's parts: history (item indices, oldest first), K candidates in
    cheap order, and the position of the held-out item among them."""

    user: int
    history: np.ndarray
    candidates: np.ndarray
    label: int


def verbaliser_examples(
    ds: Any,
    train_mask: np.ndarray,
    cheap: Any,
    n: int,
    candidates: int = 10,
    seed: int = 42,
) -> tuple[list[Example], dict[str, int]]:
    """Up to ``n`` examples from training interactions only (``train_mask`` over ``ds``'s
    rows); ``cheap`` is a Recommender fitted on the training interactions.

    Users are visited in a seeded order; a user with >= 3 training items gives one example
    when the cheap stage, folded in on the history without the held-out (latest) item, ranks
    that item in its top ``candidates``. Returns the examples and counts (users tried, hits).
    """
    import scipy.sparse as sp

    from frugalrec.llm.request import history_in_order

    rng = np.random.default_rng(seed)
    train_users = np.unique(ds.user[train_mask])
    out: list[Example] = []
    tried = 0
    for u in rng.permutation(train_users):
        if len(out) >= n:
            break
        hist = history_in_order(ds, int(u), train_mask)
        if len(hist) < 3:
            continue
        tried += 1
        target, rest = int(hist[-1]), hist[:-1]
        row = sp.csr_matrix(
            (np.ones(len(rest), np.float32), (np.zeros(len(rest), np.int64), rest)),
            shape=(1, ds.n_items),
        )
        top, _ = cheap.recommend_history(row, k=candidates)
        cands = top[0][top[0] >= 0]
        hit = np.flatnonzero(cands == target)
        if len(hit):
            out.append(Example(int(u), rest, cands.astype(np.int64), int(hit[0])))
    return out, {"users_tried": tried, "examples": len(out)}


def attach_lora(model: Any, config: LoraTrainConfig) -> Any:
    """Wrap ``model`` (a transformers causal LM) in a peft LoRA model; base weights frozen."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules(),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def label_logits(model: Any, ids: Sequence[int], label_ids: np.ndarray) -> Any:
    """Logits (torch [K]) of the label tokens at the position after ``ids``."""
    import torch

    out = model(input_ids=torch.tensor([list(ids)], dtype=torch.long)).logits[0, -1]
    return out[torch.as_tensor(label_ids, dtype=torch.long)]


def train_lora(
    model: Any,
    examples: Sequence[tuple[Sequence[int], np.ndarray, int]],
    config: LoraTrainConfig,
    progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train LoRA adapters on ``(prompt token ids, label token ids [K], answer position)``
    examples; returns (the peft model, a record with the loss curve and the training cost:
    wall/CPU seconds, examples/s, peak RSS). Gradient accumulation over ``accumulate``
    examples (prompts differ in length, so no padding is needed)."""
    import torch

    from frugalrec._threads import configure_threads, thread_count

    configure_threads(thread_count())
    torch.manual_seed(config.seed)
    peft_model = attach_lora(model, config)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    rng = np.random.default_rng(config.seed)
    losses: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    seen = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.epochs * len(examples), desc="LoRA", unit="ex", file=sys.stderr)
    for _epoch in range(config.epochs):
        opt.zero_grad(set_to_none=True)
        for step, j in enumerate(rng.permutation(len(examples)), start=1):
            ids, lab_ids, label = examples[int(j)]
            z = label_logits(peft_model, ids, lab_ids)
            loss = torch.nn.functional.cross_entropy(z[None], torch.tensor([label]))
            (loss / config.accumulate).backward()
            losses.append(float(loss.detach()))
            seen += 1
            if step % config.accumulate == 0 or step == len(examples):
                opt.step()
                opt.zero_grad(set_to_none=True)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {np.mean(losses[-config.accumulate :]):.3f}")
    if bar is not None:
        bar.close()
    peft_model.eval()
    wall = time.perf_counter() - t0
    trainable = sum(p.numel() for p in params)
    record = {
        "config": config.to_dict(),
        "examples": len(examples),
        "loss_per_example": losses,
        "trainable_params": int(trainable),
        "training": {
            "wall_seconds": wall,
            "cpu_seconds": time.process_time() - cpu0,
            "examples": seen,
            "examples_per_second": seen / wall if wall > 0 else None,
            "peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            "threads": int(torch.get_num_threads()),
        },
    }
    return peft_model, record


def save_adapter(peft_model: Any, folder: str | Path, record: dict[str, Any]) -> Path:
    """peft's safetensors + JSON adapter files, and ``frugalrec-lora.json`` beside them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    write_json_atomic(folder / RECORD, record)
    return folder


def check_adapter(folder: str | Path, base: str) -> dict[str, Any]:
    """The adapter's record; ValueError (naming the file) when it is missing or was trained
    on another base model."""
    folder = Path(folder)
    for f in ("adapter_model.safetensors", "adapter_config.json", RECORD):
        if not (folder / f).is_file():
            raise ValueError(f"{folder / f}: missing; not a frugalrec LoRA adapter folder")
    record: dict[str, Any] = json.loads((folder / RECORD).read_text())
    if record.get("base") not in (None, base):
        raise ValueError(
            f"{folder / RECORD}: adapter was trained on {record.get('base')!r}, not {base!r}"
        )
    return record


class LoraGGUFLLM(TransformersGGUFLLM):
    """The GGUF base through transformers (float32) with a peft LoRA adapter on top."""

    runtime = "transformers+lora"

    def __init__(
        self, name: str = DEFAULT_MODEL, adapter: str | Path = "", threads: int | None = None
    ) -> None:
        from peft import PeftModel

        self.adapter = Path(adapter)
        self.adapter_record = check_adapter(self.adapter, name)
        super().__init__(name, threads=threads)
        self.model = PeftModel.from_pretrained(self.model, str(self.adapter))  # type: ignore[assignment]
        self.model.eval()

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["adapter"] = str(self.adapter)
        out["adapter_trainable_params"] = self.adapter_record.get("trainable_params")
        return out


def load_adapter_llm(
    name: str, adapter: str | Path, threads: int | None = None, *, in_process: bool = False
) -> Any:
    """``--llm NAME --llm-adapter DIR``: the base GGUF with the adapter, served by torch.

    Like :func:`~frugalrec.llm.runtime.load_llm`, in a worker process by default (a crash or
    hang there is the cheap answer, not a dead caller); ``in_process=True`` loads it here.
    """
    if in_process:
        return LoraGGUFLLM(name, adapter, threads)
    from frugalrec._threads import thread_count
    from frugalrec.llm.worker import WorkerLLM

    check_adapter(adapter, name)  # a bad folder is a ValueError here, not a dead child
    kwargs = {"name": name, "adapter": str(adapter), "threads": threads or thread_count(),
              "in_process": True, "runtime": LoraGGUFLLM.runtime}  # fmt: skip
    return WorkerLLM(f"{__name__}:_worker_factory", kwargs, name=name)


def _worker_factory(
    name: str, adapter: str, threads: int, in_process: bool, runtime: str
) -> LoraGGUFLLM:
    """Built in the worker process (``runtime`` only labels the worker's LLM)."""
    return LoraGGUFLLM(name, adapter, threads)


# ---- the ml-100k experiment -----------------------------------------------------------------


def _prompts(llm: Any, reranker: Any, examples: Sequence[Example]) -> list[Any]:
    return [
        (llm.token_ids([reranker.prompt(e.history, e.candidates)])[0], reranker.label_ids, e.label)
        for e in examples
    ]


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """Fit EASE on ml-100k's random-split TRAIN interactions, build examples, train LoRA."""
    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.llm.bench import machine
    from frugalrec.llm.request import fit_cheap_model
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig

    cfg = LoraTrainConfig(
        examples=args.examples, epochs=args.epochs, r=args.r, lr=args.lr, seed=args.seed
    )
    cfg.validate()
    before = machine()
    ds = load_dataset(args.dataset)
    split = make_split(ds, "random", seed=42)
    cheap = fit_cheap_model(split.train_dataset())
    examples, counts = verbaliser_examples(
        ds, split.train_mask, cheap, cfg.examples, cfg.candidates, cfg.seed
    )
    llm = TransformersGGUFLLM(args.llm)
    rr = LLMReranker(
        llm, ds.items, RerankerConfig(candidates=cfg.candidates, history_items=cfg.history_items)
    )
    data = _prompts(llm, rr, examples)
    peft_model, record = train_lora(llm.model, data, cfg, progress=True)
    record.update(
        {"base": args.llm, "dataset": args.dataset, "split": "random (seed 42), train only",
         "example_counts": counts, "machine_before": before, "machine_after": machine(),
         "mean_prompt_tokens": float(np.mean([len(d[0]) for d in data]))}
    )  # fmt: skip
    save_adapter(peft_model, args.out, record)
    return record


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Paired NDCG@10 of the re-ranked lists vs the cheap stage on a seeded test sample."""
    from frugalrec.evaluate.metrics import bootstrap_ci
    from frugalrec.llm.bench import _ndcg, _ordered_history, _setup, machine
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig, blend

    before = machine()
    s = _setup(args.seed, args.users, "test")
    ds, sample = s["ds"], s["sample"]
    llm = (
        load_adapter_llm(args.llm, args.adapter) if args.adapter else TransformersGGUFLLM(args.llm)
    )
    K = args.candidates
    rr = LLMReranker(llm, ds.items, RerankerConfig(candidates=K, history_items=args.history))
    cand = s["top"][sample, :K]
    probs = np.zeros((len(sample), K), np.float32)
    t0 = time.perf_counter()
    for r, i in enumerate(sample):
        probs[r] = rr.llm_scores([_ordered_history(ds, s["users"][i], s["mask"])], cand[r : r + 1])[
            0
        ]
        if (r + 1) % 10 == 0:
            print(f"{r + 1}/{len(sample)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    rel = s["test"][sample]
    cheap = _ndcg(s["top"][sample, :10], rel)
    rng = np.random.default_rng(args.seed)
    out: dict[str, Any] = {
        "llm": llm.info(), "users": len(sample), "sample": f"seeded (seed {args.seed})",
        "candidates": K, "cheap_ndcg@10": float(cheap.mean()), "by_weight": {},
        "ms_per_request_mean": (time.perf_counter() - t0) * 1e3 / max(1, len(sample)),
        "machine_before": before,
    }  # fmt: skip
    for w in (0.3, 0.5, 1.0):
        ids, _ = blend(cand, s["scores"][sample, :K], probs, w)
        full = np.concatenate([ids, s["top"][sample, K:]], axis=1)[:, :10]
        diff = _ndcg(full, rel) - cheap
        lo, hi = bootstrap_ci(diff, rng, n_boot=2000)
        out["by_weight"][str(w)] = {
            "ndcg@10": float(cheap.mean() + diff.mean()),
            "paired_diff_mean": float(diff.mean()),
            "paired_diff_ci95": [float(lo), float(hi)],
        }
    out["machine_after"] = machine()
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m frugalrec.llm.lora train|eval``."""
    p = argparse.ArgumentParser(prog="python -m frugalrec.llm.lora")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a LoRA verbaliser on training-split histories")
    t.add_argument("--dataset", default="ml-100k")
    t.add_argument("--llm", default=DEFAULT_MODEL)
    t.add_argument("--examples", type=int, default=200)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--r", type=int, default=8)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--out", required=True, help="adapter folder")
    e = sub.add_parser("eval", help="paired NDCG@10 vs the cheap stage on sampled test users")
    e.add_argument("--llm", default=DEFAULT_MODEL)
    e.add_argument("--adapter", default="", help="adapter folder ('' = zero-shot)")
    e.add_argument("--users", type=int, default=300)
    e.add_argument("--candidates", type=int, default=10)
    e.add_argument("--history", type=int, default=10)
    e.add_argument("--seed", type=int, default=0)
    for q in (t, e):
        q.add_argument("--json", help="write the record here")
    args = p.parse_args(argv)
    rec = cmd_train(args) if args.cmd == "train" else cmd_eval(args)
    if args.json:
        write_json_atomic(args.json, rec)
    summary = {k: v for k, v in rec.items() if k not in ("loss_per_example",)}
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
