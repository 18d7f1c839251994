"""The LLM ladder on this CPU: cost and zero-shot re-ranking quality per rung (ml-100k).

    python scripts/bench_ladder.py --rungs smollm2-135m,gemma3-270m,qwen2.5-0.5b,qwen2.5-1.5b \
        --users 300 --seconds 600

Per rung, in its own process: load seconds, RSS after load (MB), prompt-eval tokens/s and
generated tokens/s, per-request ms (p50/p99) of one re-rank of the cheap stage's top 10
(one forward pass, LlamaRec-style label logits), and the zero-shot NDCG@10 of the LLM's
order (weight 1: the LLM alone orders the 10) and of the default blend (weight 0.3), each as
a paired difference to the cheap stage (EASE, l2=300) on the same users with a 95% bootstrap
interval. Users are a seeded random order of the test users; a rung stops after
``--users`` users or ``--seconds`` seconds, and the JSON says how many it evaluated. Then
grounded-by-construction explanations (the LLM chooses evidence facts under a grammar) for
the first users' top 10, each audited by the independent checker. Writes
``docs/bench/llm_ladder.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_intent import machine  # noqa: E402


def _ci(diff: np.ndarray, seed: int = 0, n: int = 2000) -> list[float]:
    """95% percentile bootstrap interval of the mean of paired differences."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def worker(name: str, users: int, seconds: float, explain_users: int, seed: int) -> dict[str, Any]:
    import resource

    import psutil

    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.evaluate.metrics import per_user_metrics
    from frugalrec.llm.evidence import EvidenceBuilder
    from frugalrec.llm.explainers import ChoosingExplainer, TemplateExplainer
    from frugalrec.llm.guard import Guard
    from frugalrec.llm.request import DEFAULT_EASE_L2, history_in_order
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig, blend
    from frugalrec.llm.runtime import load_llm
    from frugalrec.models import EASERecommender

    ds = load_dataset("ml-100k")
    split = make_split(ds, "random")
    model = EASERecommender(l2=DEFAULT_EASE_L2).fit(split.train_dataset(with_valid=True))
    test = split.test
    all_users = np.flatnonzero(np.diff(test.indptr) > 0)
    order = np.random.default_rng(seed).permutation(all_users)[:users]
    top, scores = model.recommend(order, k=10)
    mask = split.train_mask | split.valid_mask

    rss0 = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    llm = load_llm(name)
    load_s = time.perf_counter() - t0
    rss_loaded = psutil.Process().memory_info().rss / 2**20
    rr = LLMReranker(llm, ds.items, RerankerConfig(candidates=10))
    probs, done = [], 0
    t_start = time.perf_counter()
    for r, u in enumerate(order):
        hist = history_in_order(ds, int(u), mask)
        probs.append(rr.llm_scores([hist], top[r : r + 1])[0])
        done += 1
        if time.perf_counter() - t_start > seconds:
            break
    fwd = [t for t in llm.timings if t.kind == "forward"]
    ms = np.array([t.ms for t in fwd])
    P = np.array(probs, dtype=np.float32)
    rel = test[order[:done]]
    cand, cs = top[:done], scores[:done]

    def ndcg(ids: np.ndarray) -> np.ndarray:
        return np.asarray(per_user_metrics(ids, rel, 10)["ndcg@10"], dtype=np.float64)

    cheap = ndcg(cand)
    quality: dict[str, Any] = {"cheap_ndcg@10": float(cheap.mean())}
    for w in (1.0, 0.3):
        ids, _ = blend(cand, cs, P, w)
        d = ndcg(ids) - cheap
        quality[f"weight_{w}"] = {"ndcg@10": float((cheap + d).mean()),
                                  "delta": float(d.mean()), "delta_ci95": _ci(d)}  # fmt: skip

    # Generation speed: the second call reuses the prompt's KV cache, so it is ~pure decoding.
    gp = llm.chat_prompt("Describe a good film for a rainy evening in two sentences.")
    llm.generate(gp, 1)
    llm.generate(gp, 32)
    gen = llm.timings[-1]

    # Explanations: the LLM chooses evidence facts; the independent checker audits each one.
    builder, guard = EvidenceBuilder(model, ds.items), Guard(ds.items)
    chooser, template = ChoosingExplainer(llm), TemplateExplainer()
    served = ungrounded = by_llm = 0
    ex_ms: list[float] = []
    bad: list[dict[str, Any]] = []
    t_explain = time.perf_counter()
    for r in range(min(explain_users, done)):
        hist = history_in_order(ds, int(order[r]), mask)
        for ev in builder.build(hist, top[r]):
            if time.perf_counter() - t_explain > seconds / 2:  # same budget rule, halved
                break
            ex = chooser.explain(ev, template)
            served += 1
            by_llm += ex.explainer != "template"
            ex_ms.append(ex.ms)
            verdict = guard.check(ex.explanation, ev)
            if not verdict.ok:
                ungrounded += 1
                bad.append({"text": ex.explanation, "violations": verdict.violations})
    info = llm.info()
    return {
        "rung": name,
        "params": info.get("params"),
        "file_mb": info.get("file_mb"),
        "load_s": load_s,
        "rss_after_load_mb": rss_loaded,
        "rss_load_delta_mb": rss_loaded - rss0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "users_evaluated": done,
        "users_requested": users,
        "rerank_prompt_tokens_mean": float(np.mean([t.prompt_tokens + t.reused_tokens
                                                    for t in fwd])),
        "rerank_ms_p50": float(np.percentile(ms, 50)),
        "rerank_ms_p99": float(np.percentile(ms, 99)),
        "prompt_tokens_per_s": float(sum(t.prompt_tokens for t in fwd) / (ms.sum() / 1e3)),
        "generated_tokens_per_s": gen.generated_tokens / (gen.ms / 1e3),
        "quality": quality,
        "explanations": {"served": served, "chosen_by_llm": by_llm,
                         "ungrounded_by_checker": ungrounded, "examples_ungrounded": bad[:5],
                         "ms_p50": float(np.percentile(ex_ms, 50)) if ex_ms else None,
                         "ms_p99": float(np.percentile(ex_ms, 99)) if ex_ms else None},
        "machine": machine(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rungs", default="smollm2-135m,gemma3-270m,qwen2.5-0.5b,qwen2.5-1.5b")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=600, help="re-rank time budget per rung")
    ap.add_argument("--explain-users", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs/bench/llm_ladder.json"))
    ap.add_argument("--worker", default="")
    args = ap.parse_args(argv)
    if args.worker:
        row = worker(args.worker, args.users, args.seconds, args.explain_users, args.seed)
        print(json.dumps(row))
        return 0
    out: dict[str, Any] = {
        "command": "python scripts/bench_ladder.py " + " ".join(argv or sys.argv[1:]),
        "dataset": "ml-100k, random split, test users, cheap stage EASE l2=300, K=10",
        "rows": [],
    }
    for name in [n for n in args.rungs.split(",") if n]:
        cmd = [sys.executable, __file__, "--worker", name, "--users", str(args.users),
               "--seconds", str(args.seconds), "--explain-users", str(args.explain_users),
               "--seed", str(args.seed)]  # fmt: skip
        print(f"rung {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            out["rows"].append({"rung": name, "error": proc.stderr.strip().splitlines()[-3:]})
        else:
            out["rows"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(out["rows"][-1])[:400], file=sys.stderr, flush=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
