"""The LoRA verbaliser experiment on ml-100k (random protocol, issue #17).

    python -m frugalrec.bench.lora train --examples 300 --out adapter/ --json train.json
    python -m frugalrec.bench.lora eval --adapter adapter/ --stage valid --users 150 --json v.json
    python -m frugalrec.bench.lora eval --adapter adapter/ --stage test --users 300 \\
        --choose-from v.json --json t.json

``train`` builds examples from the random split's TRAINING rows only
(:func:`~frugalrec.llm.lora.holdout_rows`, :func:`~frugalrec.llm.lora.verbaliser_examples`)
and trains the adapter (:func:`~frugalrec.llm.lora.train_lora`). ``eval`` re-ranks the cheap
stage's top-K for a seeded sample of users of one stage: ``valid`` (EASE on train, histories
from train, valid items relevant) to choose the blend weight, ``test`` (EASE on train+valid) to
report it, with the bootstrap 95% CI of the per-user paired NDCG@10 difference to the cheap
stage on the same users. The LLM probabilities are kept in the JSON, so a weight chosen on
valid is applied to test without running the model again.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import write_json_atomic
from frugalrec.bench.llm import WEIGHTS, machine, ndcg_rows, ordered_history, setup_split
from frugalrec.cost.ceilings import cpu_model
from frugalrec.llm.runtime import DEFAULT_MODEL


def _cost(t0: float, cpu0: float) -> dict[str, Any]:
    return {
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - cpu0,
        "peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
    }


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """Hold out one training item per user, fit EASE on the rest of train, build examples
    whose answer is the held-out item's letter, train LoRA."""
    from frugalrec._threads import configure_threads
    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.llm.lora import (
        LoraTrainConfig,
        holdout_rows,
        save_adapter,
        shuffle_candidates,
        train_lora,
        verbaliser_examples,
    )
    from frugalrec.llm.request import fit_cheap_model
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig
    from frugalrec.llm.runtime import TransformersGGUFLLM

    configure_threads()
    cfg = LoraTrainConfig(
        examples=args.examples, epochs=args.epochs, r=args.r, alpha=2 * args.r, lr=args.lr,
        accumulate=args.accumulate, targets=args.targets, seed=args.seed,
        autocast=args.autocast, shuffle_candidates=args.shuffle_candidates,
    )  # fmt: skip
    cfg.validate()
    before = machine()
    t0, cpu0 = time.perf_counter(), time.process_time()
    ds = load_dataset(args.dataset)
    split = make_split(ds, "random", seed=42)
    # Each round holds out another (seeded) training item per user and refits the cheap stage
    # without those rows; a (user, item) answer already used is not used twice.
    examples: list[Any] = []
    counts: list[dict[str, int]] = []
    used: set[tuple[int, int]] = set()
    for r in range(args.rounds):
        held = holdout_rows(ds, split.train_mask, args.holdout, cfg.seed + r)
        assert not np.any(held & ~split.train_mask)  # training rows only, by construction
        cheap = fit_cheap_model(ds.subset(split.train_mask & ~held))
        ex, cnt = verbaliser_examples(
            ds, split.train_mask, cheap, 10**9, cfg.candidates, cfg.seed + r, held_out=held
        )
        new = [e for e in ex if (e.user, int(e.candidates[e.label])) not in used]
        used |= {(e.user, int(e.candidates[e.label])) for e in new}
        counts.append({**cnt, "new": len(new)})
        examples += new
    rng = np.random.default_rng(cfg.seed)
    if len(examples) > cfg.examples:  # a seeded sample, whichever round it came from
        examples = [examples[i] for i in np.sort(rng.choice(len(examples), cfg.examples, False))]
    if cfg.shuffle_candidates:
        examples = shuffle_candidates(examples, cfg.seed)
    llm = TransformersGGUFLLM(args.llm)
    rr = LLMReranker(
        llm, ds.items, RerankerConfig(candidates=cfg.candidates, history_items=cfg.history_items)
    )
    data = [
        (llm.token_ids([rr.prompt(e.history, e.candidates)])[0], rr.label_ids, e.label)
        for e in examples
    ]
    setup = _cost(t0, cpu0)
    max_s = args.max_minutes * 60 if args.max_minutes else None
    peft_model, record = train_lora(llm.model, data, cfg, progress=True, max_seconds=max_s)
    labels = np.bincount([e.label for e in examples], minlength=cfg.candidates)
    record.update(
        {"base": args.llm, "dataset": args.dataset,
         "split": "random (seed 42), train rows only", "holdout": args.holdout,
         "rounds": args.rounds, "example_counts": counts,
         "examples_available": sum(c["new"] for c in counts),
         "label_position_counts": labels.tolist(),
         "reranker": {"candidates": cfg.candidates, "history_items": cfg.history_items},
         "mean_prompt_tokens": float(np.mean([len(d[0]) for d in data])),
         "setup": setup, "cpu_model": cpu_model(), "machine_before": before,
         "machine_after": machine()}
    )  # fmt: skip
    save_adapter(peft_model, args.out, record)
    return record


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Paired NDCG@10 of the re-ranked lists vs the cheap stage on a seeded user sample."""
    import contextlib

    import torch

    from frugalrec._threads import configure_threads
    from frugalrec.evaluate.metrics import bootstrap_ci
    from frugalrec.llm.lora import ADAPTER_RUNTIMES
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig, blend
    from frugalrec.llm.runtime import LlamaCppLLM, TransformersGGUFLLM

    configure_threads()
    before = machine()
    t0, cpu0 = time.perf_counter(), time.process_time()
    s = setup_split(args.seed, args.users, args.stage)
    ds, sample = s["ds"], s["sample"]
    llm: Any
    if args.adapter:
        llm = ADAPTER_RUNTIMES[args.runtime](args.llm, args.adapter)
    elif args.runtime == "llama-cpp":
        llm = LlamaCppLLM(args.llm)
    else:
        llm = TransformersGGUFLLM(args.llm)
    K = args.candidates
    rr = LLMReranker(llm, ds.items, RerankerConfig(candidates=K, history_items=args.history))
    cand = s["top"][sample, :K]
    probs = np.zeros((len(sample), K), np.float32)
    setup = _cost(t0, cpu0)
    ctx: Any = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if args.autocast == "bfloat16"
        else contextlib.nullcontext()
    )
    t1, cpu1 = time.perf_counter(), time.process_time()
    llm.timings.clear()
    with ctx:
        for r, i in enumerate(sample):
            hist = ordered_history(ds, s["users"][i], s["mask"])
            probs[r] = rr.llm_scores([hist], cand[r : r + 1])[0]
            if (r + 1) % 10 == 0:
                print(f"{r + 1}/{len(sample)} ({time.perf_counter() - t1:.0f} s)", file=sys.stderr)
    scoring = _cost(t1, cpu1)
    ms = np.array([t.ms for t in llm.timings])
    rel = s["test"][sample]
    cheap = ndcg_rows(s["top"][sample, :10], rel)
    out: dict[str, Any] = {
        "llm": llm.info(), "adapter": args.adapter or None, "stage": args.stage,
        "users": len(sample), "users_in_stage": len(s["users"]),
        "sample": f"seeded (seed {args.seed})", "candidates": K, "history_items": args.history,
        "autocast": args.autocast, "cheap_ndcg@10": float(cheap.mean()),
        "prompt_tokens_mean": float(np.mean([t.prompt_tokens for t in llm.timings])),
        "ms_per_request_p50": float(np.median(ms)), "ms_per_request_mean": float(ms.mean()),
        "llm_top1_is_cheap_top1": float((probs.argmax(1) == 0).mean()),
        "setup": setup, "scoring": scoring, "by_weight": {},
    }  # fmt: skip
    rng = np.random.default_rng(args.seed)
    for w in WEIGHTS:
        ids, _ = blend(cand, s["scores"][sample, :K], probs, w)
        full = np.concatenate([ids, s["top"][sample, K:]], axis=1)[:, :10]
        diff = ndcg_rows(full, rel) - cheap
        lo, hi = bootstrap_ci(diff, rng, n_boot=2000)
        out["by_weight"][str(w)] = {
            "ndcg@10": float(cheap.mean() + diff.mean()),
            "paired_diff_mean": float(diff.mean()),
            "paired_diff_ci95": [lo, hi],
        }
    # the best LLM-using weight (0.0 is the cheap stage itself)
    nonzero = [w for w in out["by_weight"] if w != "0.0"]
    best = max(nonzero, key=lambda w: out["by_weight"][w]["paired_diff_mean"])
    out["best_weight_here"] = float(best)
    if args.choose_from:
        chosen = json.loads(Path(args.choose_from).read_text())
        if chosen.get("stage") != "valid":
            raise ValueError(f"{args.choose_from}: --choose-from takes a record of --stage valid")
        wkey = str(chosen["best_weight_here"])
        out["chosen_on_valid"] = {"weight": float(wkey), "from": args.choose_from,
                                  **out["by_weight"][wkey]}  # fmt: skip
    out.update({"users_index": s["users"][sample].tolist(),
                "llm_prob": np.round(probs, 5).tolist(), "cpu_model": cpu_model(),
                "machine_before": before, "machine_after": machine(),
                "threads": int(torch.get_num_threads())})  # fmt: skip
    return out


def cmd_runtimes(args: argparse.Namespace) -> dict[str, Any]:
    """The same re-rank requests through llama.cpp (base, base + GGUF adapter) and torch
    (base + peft adapter), interleaved request by request in one process so that a busy
    machine slows all three alike: ms per request, load time, and how far llama.cpp's
    adapted letter probabilities are from torch's (the runtime that trained them)."""
    import gc

    from frugalrec._threads import configure_threads
    from frugalrec.llm.lora import LoraGGUFLLM, LoraLlamaCppLLM
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig
    from frugalrec.llm.runtime import LlamaCppLLM

    configure_threads()
    before = machine()
    s = setup_split(args.seed, args.users, args.stage)
    ds, sample = s["ds"], s["sample"]
    K = args.candidates
    runtimes: dict[str, Any] = {}
    load_s: dict[str, float] = {}
    for label, make in (
        ("llama-cpp", lambda: LlamaCppLLM(args.llm)),
        ("llama-cpp+lora", lambda: LoraLlamaCppLLM(args.llm, args.adapter)),
        ("transformers+lora", lambda: LoraGGUFLLM(args.llm, args.adapter)),
    ):
        gc.collect()
        t = time.perf_counter()
        runtimes[label] = make()
        load_s[label] = time.perf_counter() - t
    rrs = {k: LLMReranker(m, ds.items, RerankerConfig(candidates=K, history_items=args.history))
           for k, m in runtimes.items()}  # fmt: skip
    cand = s["top"][sample, :K]
    probs = {k: np.zeros((len(sample), K), np.float32) for k in runtimes}
    ms: dict[str, list[float]] = {k: [] for k in runtimes}
    order = list(runtimes)
    for r, i in enumerate(sample):
        hist = ordered_history(ds, s["users"][i], s["mask"])
        for k in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
            t = time.perf_counter()
            probs[k][r] = rrs[k].llm_scores([hist], cand[r : r + 1])[0]
            ms[k].append((time.perf_counter() - t) * 1e3)
        if (r + 1) % 10 == 0:
            print(f"{r + 1}/{len(sample)}", file=sys.stderr)
    ref = probs["transformers+lora"]
    out: dict[str, Any] = {"llm": args.llm, "adapter": args.adapter, "stage": args.stage,
                           "users": len(sample), "sample": f"seeded (seed {args.seed})",
                           "candidates": K, "runtimes": {}}  # fmt: skip
    for k in runtimes:
        a = np.array(ms[k])
        p = probs[k]
        out["runtimes"][k] = {
            "load_s": load_s[k],
            "ms_per_request_p50": float(np.median(a)),
            "ms_per_request_p99": float(np.quantile(a, 0.99)),
            "ms_per_request_mean": float(a.mean()),
            "top1_same_as_torch_adapter": float((p.argmax(1) == ref.argmax(1)).mean()),
            "mean_abs_prob_diff_to_torch_adapter": float(np.abs(p - ref).mean()),
            "top_letter_counts": np.bincount(p.argmax(1), minlength=K).tolist(),
        }
    out.update({"llm_prob": {k: np.round(v, 5).tolist() for k, v in probs.items()},
                "cpu_model": cpu_model(), "machine_before": before,
                "machine_after": machine()})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m frugalrec.bench.lora train|eval|runtimes``."""
    p = argparse.ArgumentParser(prog="python -m frugalrec.bench.lora")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a LoRA verbaliser on training-split histories")
    t.add_argument("--dataset", default="ml-100k")
    t.add_argument("--llm", default=DEFAULT_MODEL)
    t.add_argument("--examples", type=int, default=200)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--r", type=int, default=8, help="LoRA rank (alpha = 2r)")
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--accumulate", type=int, default=8, help="examples per optimiser step")
    t.add_argument("--targets", default="q_proj,v_proj", help="comma-separated module names")
    t.add_argument("--holdout", choices=("random", "latest"), default="random")
    t.add_argument("--rounds", type=int, default=1, help="held-out items per user (one a round)")
    t.add_argument("--max-minutes", type=float, default=0, help="stop training after (0: none)")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--out", required=True, help="adapter folder")
    t.add_argument(
        "--shuffle-candidates",
        action="store_true",
        help="seeded random candidate order per training prompt (the letter carries no rank)",
    )
    e = sub.add_parser("eval", help="paired NDCG@10 vs the cheap stage on sampled users")
    e.add_argument("--llm", default=DEFAULT_MODEL)
    e.add_argument("--adapter", default="", help="adapter folder ('' = zero-shot)")
    e.add_argument("--stage", choices=("valid", "test"), default="test")
    e.add_argument("--users", type=int, default=300)
    e.add_argument("--candidates", type=int, default=10)
    e.add_argument("--history", type=int, default=10)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--choose-from", help="a --stage valid record: report its best weight")
    e.add_argument(
        "--runtime",
        choices=("transformers", "llama-cpp"),
        default="transformers",
        help="transformers: peft on the float32 base; llama-cpp: GGUF adapter, quantised base",
    )
    c = sub.add_parser("runtimes", help="llama.cpp vs torch on the same requests, interleaved")
    c.add_argument("--llm", default=DEFAULT_MODEL)
    c.add_argument("--adapter", required=True, help="adapter folder")
    c.add_argument("--stage", choices=("valid", "test"), default="valid")
    c.add_argument("--users", type=int, default=30)
    c.add_argument("--candidates", type=int, default=10)
    c.add_argument("--history", type=int, default=10)
    c.add_argument("--seed", type=int, default=2)
    for q in (t, e, c):
        q.add_argument("--autocast", choices=("none", "bfloat16"), default="none")
        q.add_argument("--json", help="write the record here")
    args = p.parse_args(argv)
    commands = {"train": cmd_train, "eval": cmd_eval, "runtimes": cmd_runtimes}
    rec = commands[args.cmd](args)
    if args.json:
        write_json_atomic(args.json, rec)
    summary = {k: v for k, v in rec.items() if k not in ("loss_per_example", "llm_prob",
                                                          "users_index")}  # fmt: skip
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
