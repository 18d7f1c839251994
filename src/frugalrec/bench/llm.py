"""Benchmarks of the LLM tier on ml-100k (random protocol, test users).

    python -m frugalrec.bench.llm runtime            # llama.cpp vs transformers-GGUF
    python -m frugalrec.bench.llm rerank --users 60  # NDCG@10 with/without, cost, K=5/10/20
    python -m frugalrec.bench.llm guard --llm-users 10
    python -m frugalrec.bench.llm cascade --users 60
    python -m frugalrec.bench.llm enrich --items 5

Each writes JSON under ``docs/bench/`` (``llm-<name>.json``) with the machine load (uptime)
and date. The cheap stage always ranks the full catalogue (every item not in train+valid);
the LLM sees its top K. Where the real model is too slow for all 943 test users on a shared
CPU, a seeded sample of users is used and the JSON says so (``users_evaluated``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from frugalrec._io import write_json_atomic
from frugalrec.bench.profiler import process_peak_rss_bytes

OUT = Path("docs/bench")
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "loadavg_1_5_15": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
    }


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def setup_split(seed: int = 0, n_users: int | None = None, stage: str = "test") -> dict[str, Any]:
    """Split, EASE on train+valid (``stage="valid"``: on train), cheap full-ranking top-20
    for every user with ``stage`` items."""
    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.llm.request import DEFAULT_EASE_L2
    from frugalrec.models import EASERecommender

    ds = load_dataset("ml-100k")
    split = make_split(ds, "random")
    train = split.train_dataset(with_valid=stage == "test")
    model = EASERecommender(l2=DEFAULT_EASE_L2).fit(train)
    test = split.test if stage == "test" else split.valid
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    top, scores = model.recommend(users, k=20)
    rng = np.random.default_rng(seed)
    sample = (
        np.sort(rng.choice(len(users), size=n_users, replace=False))
        if n_users and n_users < len(users)
        else np.arange(len(users))
    )
    mask = split.train_mask | split.valid_mask if stage == "test" else split.train_mask
    return {"ds": ds, "split": split, "model": model, "users": users, "top": top,
            "scores": scores, "sample": sample, "mask": mask, "test": test[users]}  # fmt: skip


def ndcg_rows(top: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> np.ndarray:
    from frugalrec.evaluate.metrics import per_user_metrics

    return per_user_metrics(top, relevant, k)[f"ndcg@{k}"]


def ordered_history(ds: Any, u: int, mask: np.ndarray) -> np.ndarray:
    from frugalrec.llm.request import history_in_order

    return history_in_order(ds, int(u), mask)


# ---- runtime ----------------------------------------------------------------------------


def _runtime_worker(name: str, runtime: str, repeats: int) -> dict[str, Any]:
    """Load one model with one runtime and time a ~174-token prompt (no prefix reuse)."""

    from frugalrec._threads import configure_threads
    from frugalrec.llm.runtime import load_llm

    configure_threads()
    # In this process (already a subprocess per runtime): its peak RSS is the runtime's.
    llm = load_llm(name, runtime, in_process=True)
    # A re-ranker-like prompt cut to about 174 tokens.
    body = ("A user liked: Star Wars (1977); Fargo (1996); Contact (1997); Titanic (1997). "
            "Candidates: A. Toy Story (1995), Animation/Children's/Comedy. ") * 12  # fmt: skip
    prompt = llm.chat_prompt(body)
    while llm.count_tokens(prompt) > 174:
        body = body[: int(len(body) * 0.97)]
        prompt = llm.chat_prompt(body)
    ms = []
    for _ in range(repeats + 1):
        llm.reset_cache()  # measure a full prompt evaluation
        t0 = time.perf_counter()
        llm.logits_for_next_token([prompt])
        ms.append((time.perf_counter() - t0) * 1e3)
    gen0 = time.perf_counter()
    text = llm.generate(llm.chat_prompt("Describe Star Wars (1977) in one sentence."), 32)
    gen_ms = (time.perf_counter() - gen0) * 1e3
    gen_tokens = llm.timings[-1].generated_tokens
    return {
        "model": name,
        "runtime": runtime,
        "prompt_tokens": llm.count_tokens(prompt),
        "prompt_eval_ms_first": ms[0],
        "prompt_eval_ms_median": float(np.median(ms[1:])),
        "prompt_eval_ms_all": ms,
        "generate_32_ms": gen_ms,
        "generated_tokens": gen_tokens,
        "sample_generation": text,
        "peak_rss_mb": process_peak_rss_bytes() / 2**20,
        **{f"info_{k}": v for k, v in llm.info().items()},
    }


def bench_runtime(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for name in args.models.split(","):
        for runtime in args.runtimes.split(","):
            _progress(f"runtime: {name} / {runtime}")
            cmd = [sys.executable, "-m", "frugalrec.bench.llm", "_runtime_worker", name, runtime,
                   str(args.repeats)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                rows.append({"model": name, "runtime": runtime,
                             "error": proc.stderr.strip().splitlines()[-1:]})  # fmt: skip
                continue
            import json

            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"rows": rows}


# ---- re-ranker --------------------------------------------------------------------------


def bench_rerank(args: argparse.Namespace) -> dict[str, Any]:
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig, blend
    from frugalrec.llm.runtime import load_llm, timing_summary

    s = setup_split(args.seed, args.users, args.stage)
    ds, sample = s["ds"], s["sample"]
    rel_all = s["test"]
    cheap_all = ndcg_rows(s["top"][:, :10], rel_all)
    llm = load_llm(args.llm)
    rel = rel_all[sample]
    hists = [ordered_history(ds, s["users"][i], s["mask"]) for i in sample]
    out: dict[str, Any] = {
        "llm": llm.info(),
        "stage": args.stage,
        "cheap_ndcg@10_all_test_users": float(cheap_all.mean()),
        "test_users": len(s["users"]),
        "users_evaluated": len(sample),
        "sample": "all" if len(sample) == len(s["users"]) else f"seeded (seed {args.seed}) sample",
        "cheap_ndcg@10_sample": float(cheap_all[sample].mean()),
        "by_K": {},
    }  # fmt: skip
    for K in args.ks:
        rr = LLMReranker(llm, ds.items, RerankerConfig(candidates=K, history_items=args.history))
        cand = s["top"][sample, :K]
        probs = np.zeros((len(sample), K), np.float32)
        llm.timings.clear()
        t0 = time.perf_counter()
        for r in range(len(sample)):
            probs[r] = rr.llm_scores([hists[r]], cand[r : r + 1])[0]
            if (r + 1) % 10 == 0:
                _progress(f"rerank K={K}: {r + 1}/{len(sample)} ({time.perf_counter() - t0:.0f} s)")
        ms = np.array([t.ms for t in llm.timings])
        row: dict[str, Any] = {
            "ms_per_request_p50": float(np.median(ms)),
            "ms_per_request_mean": float(ms.mean()),
            "ms_per_request_p99": float(np.quantile(ms, 0.99)),
            "prompt_tokens_mean": float(np.mean([t.prompt_tokens + t.reused_tokens for t in llm.timings])),  # noqa: E501
            "reused_tokens_mean": float(np.mean([t.reused_tokens for t in llm.timings])),
            "totals": timing_summary(llm.timings),
            "llm_top1_is_cheap_top1": float((probs.argmax(1) == 0).mean()),
            "ndcg@10": {},
        }  # fmt: skip
        for w in WEIGHTS:
            ids, _ = blend(cand, s["scores"][sample, :K], probs, w)
            full = np.concatenate([ids, s["top"][sample, K:]], axis=1)[:, :10]
            row["ndcg@10"][str(w)] = float(ndcg_rows(full, rel).mean())
        # The LLM alone on its K candidates, as a sanity signal: is it better than chance?
        rng = np.random.default_rng(0)
        rand = np.argsort(rng.random(cand.shape), axis=1)
        full = np.concatenate([np.take_along_axis(cand, rand, 1), s["top"][sample, K:]], 1)[:, :10]
        row["ndcg@10_random_order_of_K"] = float(ndcg_rows(full, rel).mean())
        out["by_K"][str(K)] = row
        _progress(f"K={K}: {row['ndcg@10']} p50 {row['ms_per_request_p50']:.0f} ms")
    return out


# ---- explanations and the guard --------------------------------------------------------


def bench_guard(args: argparse.Namespace) -> dict[str, Any]:
    from frugalrec.llm.evidence import EvidenceBuilder
    from frugalrec.llm.explainers import LLMExplainer, TemplateExplainer, explain_all
    from frugalrec.llm.guard import Guard
    from frugalrec.llm.runtime import load_llm

    s = setup_split(args.seed, args.llm_users)
    ds, model = s["ds"], s["model"]
    builder, guard = EvidenceBuilder(model, ds.items), Guard(ds.items)
    n_t = ok_t = 0
    hists = {}
    t0 = time.perf_counter()
    for r, u in enumerate(s["users"]):
        h = ordered_history(ds, u, s["mask"])
        hists[r] = h
        evs = builder.build(h, s["top"][r, :10])
        for ev, ex in zip(evs, explain_all(evs), strict=True):
            n_t += 1
            ok_t += guard.check(ex.explanation, ev).ok
    template_ms = (time.perf_counter() - t0) * 1e3 / len(s["users"])
    out: dict[str, Any] = {
        "template": {"users": len(s["users"]), "explanations": n_t,
                     "grounded": ok_t, "grounded_rate": ok_t / n_t,
                     "evidence_plus_template_ms_per_user": template_ms},
    }  # fmt: skip
    llm = load_llm(args.llm)
    exp = LLMExplainer(llm, guard)
    template = TemplateExplainer()
    served_ok = rejected = total = 0
    reasons: dict[str, int] = {}
    examples: list[dict[str, Any]] = []
    for r in s["sample"]:
        evs = builder.build(hists[r], s["top"][r, : args.items])
        for ev in evs:
            ex = exp.explain(ev, template)
            total += 1
            served_ok += guard.check(ex.explanation, ev).ok
            if ex.explainer == "template":
                rejected += 1
                for v in ex.rejected:
                    kind = v.split(":")[0]
                    reasons[kind] = reasons.get(kind, 0) + 1
            if len(examples) < 8:
                examples.append({"title": ev.title, "served": ex.explanation,
                                 "explainer": ex.explainer, "rejected": ex.rejected})  # fmt: skip
        _progress(f"guard: {total} LLM explanations, {rejected} rejected")
    ms = [t.ms for t in llm.timings]
    out["llm"] = {
        "model": llm.name,
        "users": len(s["sample"]),
        "sample": f"seeded (seed {args.seed}) sample, top {args.items} items each",
        "explanations": total,
        "rejected": rejected,
        "rejection_rate": rejected / max(total, 1),
        "served_grounded": served_ok,
        "served_grounded_rate": served_ok / max(total, 1),
        "rejection_reasons": reasons,
        "ms_per_explanation_p50": float(np.median(ms)) if ms else None,
        "examples": examples,
    }
    return out


# ---- cascade ----------------------------------------------------------------------------


def bench_cascade(args: argparse.Namespace) -> dict[str, Any]:
    from frugalrec.llm.cascade import Cascade, CascadeConfig, relative_margin
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig
    from frugalrec.llm.runtime import load_llm
    from frugalrec.pipeline.config import PipelineConfig
    from frugalrec.pipeline.recommend import RecommendPipeline

    s = setup_split(args.seed, args.users)
    ds, model, users = s["ds"], s["model"], s["users"]
    H = s["split"].train_valid[users]
    llm = load_llm(args.llm)
    rr = LLMReranker(llm, ds.items, RerankerConfig(candidates=args.K, weight=args.weight))
    margins = relative_margin(s["scores"][:, : args.K])
    threshold = float(np.quantile(margins, args.fire_quantile))
    out: dict[str, Any] = {
        "llm": llm.info(), "K": args.K, "weight": args.weight,
        "margin_threshold": threshold,
        "margin_rule": f"fire when (s1-sK)/|s1| < its {args.fire_quantile:.0%} quantile",
        "prior_ms_per_token": args.ms_per_token, "budgets": {},
    }  # fmt: skip
    for budget in args.budgets:
        # A budget too small for any LLM call is checked on every test user; the others run
        # the model, so they use the seeded sample.
        sel = np.arange(len(users)) if budget <= 100 else s["sample"]
        pipe = RecommendPipeline(PipelineConfig(model="ease", threads=1), model).build()
        cfg = CascadeConfig(
            budget_ms=budget, margin=threshold, prior_ms_per_token=args.ms_per_token
        )
        cascade = Cascade(pipe, rr, cfg)
        # Budget decisions start from a measured cost (a user outside the evaluated sample).
        spare = int(np.setdiff1d(np.arange(len(users)), s["sample"])[0])
        h0 = ordered_history(ds, users[spare], s["mask"])
        out.setdefault("calibrated_ms_per_token", {})[str(int(budget))] = cascade.calibrate(
            h0, s["top"][spare, : args.K]
        )
        tops, lat, routes = [], [], []
        t0 = time.perf_counter()
        for n, r in enumerate(sel):
            h = ordered_history(ds, users[r], s["mask"])
            start = time.perf_counter()
            ans = cascade.recommend(H[r], 10, history_order=h, start=start)
            lat.append((time.perf_counter() - start) * 1e3)
            tops.append(np.r_[ans.ids, np.full(10 - len(ans.ids), -1)][:10])
            routes.append(ans.reason)
            if budget > 100 and (n + 1) % 10 == 0:
                _progress(
                    f"cascade {budget:.0f} ms: {n + 1}/{len(sel)} ({time.perf_counter() - t0:.0f}s)"
                )
        top = np.array(tops, dtype=np.int64)
        rel = s["test"][sel]
        nd = ndcg_rows(top, rel)
        cheap = ndcg_rows(s["top"][sel, :10], rel)
        lat_a = np.array(lat)
        counts = {k: routes.count(k) for k in sorted(set(routes))}
        out["budgets"][str(int(budget))] = {
            "users": len(sel),
            "sample": "all test users" if len(sel) == len(users) else f"seeded sample {args.seed}",
            "routes": counts,
            "fire_rate": counts.get("llm", 0) / len(sel),
            "wanted_to_fire_rate": float((margins[sel] < threshold).mean()),
            "ndcg@10_cascade": float(nd.mean()),
            "ndcg@10_cheap": float(cheap.mean()),
            "ndcg@10_change": float(nd.mean() - cheap.mean()),
            "p50_ms": float(np.median(lat_a)),
            "p99_ms": float(np.quantile(lat_a, 0.99)),
            "max_ms": float(lat_a.max()),
            "learned_ms_per_token": cascade.ms_per_token(),
        }  # fmt: skip
        _progress(f"budget {budget}: {out['budgets'][str(int(budget))]}")
    return out


# ---- enrichment -------------------------------------------------------------------------


def bench_enrich(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from frugalrec.data.sources import load_dataset
    from frugalrec.llm.enrichment import Enricher, thin_items
    from frugalrec.llm.runtime import load_llm

    ds = load_dataset("ml-100k")
    thin = thin_items(ds.items)
    llm = load_llm(args.llm)
    with tempfile.TemporaryDirectory() as tmp:
        enr = Enricher(llm, Path(tmp) / "enrich.json", noun="movie")
        idx = np.flatnonzero(thin)[: args.items]
        mask = np.zeros(len(thin), bool)
        mask[idx] = True
        t0 = time.perf_counter()
        out = enr.enrich(ds.items, mask)
        first = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        Enricher(llm, Path(tmp) / "enrich.json", noun="movie").enrich(ds.items, mask)
        cached = (time.perf_counter() - t0) * 1e3
    per_item = first / len(idx)
    return {
        "llm": llm.name,
        "thin_items": int(thin.sum()),
        "catalogue_items": len(thin),
        "items_generated": len(idx),
        "ms_per_item": per_item,
        "cached_ms_all": cached,
        "projected_minutes_whole_catalogue": per_item * thin.sum() / 6e4,
        "examples": [
            {
                "title": str(ds.items["title"].iloc[i]),
                "description": str(out["description"].iloc[i]),
            }
            for i in idx[:5]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_runtime_worker":
        import json

        print(json.dumps(_runtime_worker(argv[1], argv[2], int(argv[3]))))
        return 0
    p = argparse.ArgumentParser(prog="python -m frugalrec.bench.llm")
    p.add_argument("what", choices=["runtime", "rerank", "guard", "cascade", "enrich"])
    p.add_argument("--llm", default="smollm2-135m")
    p.add_argument("--users", type=int, default=60, help="seeded sample where the LLM runs")
    p.add_argument("--llm-users", type=int, default=10)
    p.add_argument("--items", type=int, default=3)
    p.add_argument("--ks", type=lambda v: [int(x) for x in v.split(",")], default=[5, 10, 20])
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--weight", type=float, default=0.3)
    p.add_argument("--history", type=int, default=10)
    p.add_argument("--fire-quantile", type=float, default=0.5)
    p.add_argument(
        "--budgets", type=lambda v: [float(x) for x in v.split(",")], default=[50.0, 2000.0]
    )
    p.add_argument("--ms-per-token", type=float, default=8.0)
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--runtimes", default="llama-cpp,transformers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", default="test", choices=["test", "valid"], help="rerank only")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from frugalrec._threads import configure_threads

    configure_threads()
    before = machine()
    t0 = time.perf_counter()
    fn = {"runtime": bench_runtime, "rerank": bench_rerank, "guard": bench_guard,
          "cascade": bench_cascade, "enrich": bench_enrich}[args.what]  # fmt: skip
    result = fn(args)
    result["machine_before"] = before
    result["machine_after"] = machine()
    result["wall_seconds"] = time.perf_counter() - t0
    result["command"] = "python -m frugalrec.bench.llm " + " ".join(argv)
    out = Path(args.out) if args.out else OUT / f"llm-{args.what}.json"
    write_json_atomic(out, result)
    _progress(f"wrote {out}")
    return 0 if not math.isnan(result["wall_seconds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
