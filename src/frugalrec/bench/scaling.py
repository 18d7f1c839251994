"""Scaling curves: retrieval cost measured at growing catalogue sizes, and fitted growth laws.

:func:`measure_retrieval_scaling` builds each retriever on synthetic clustered vectors at each
size and measures build time, index bytes, batch-1 latency percentiles, throughput at larger
batches, recall@k against exact search, and (for exact search) the fraction of the measured
memory-bandwidth bound reached. The fits live in
:mod:`frugalrec.cost.scaling`.

Run it: ``python -m frugalrec.bench.scaling --sizes 1000,10000,100000,1000000 --out scaling.json``
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from frugalrec._threads import configure_threads, single_threaded_blas
from frugalrec.bench.profiler import measure_online, timed_stage
from frugalrec.cost.ceilings import (
    Ceilings,
    fraction_of_roofline,
    measure_ceilings,
    paired_bandwidth_fraction,
    quick_copy_bandwidth,
)
from frugalrec.cost.scaling import fit_retrieval_scaling, stage_costs
from frugalrec.data.synthetic import synthetic_vector_mixture
from frugalrec.opcount import StageCost
from frugalrec.pipeline.retrieval import (
    ExactConfig,
    ExactRetriever,
    HNSWConfig,
    IVFPQConfig,
    Retriever,
    RetrieverConfig,
    make_retriever,
    recall_at_k,
)


def default_retrievers() -> dict[str, RetrieverConfig]:
    """The configurations measured by default (tuned for recall@10 >= 0.95 at 1M items)."""
    return {
        "exact": ExactConfig(),
        "hnsw": HNSWConfig(M=32, ef_construction=64, ef_search=256),
        "ivfpq": IVFPQConfig(m=32, nbits=8, nprobe=48, rerank=200),
    }


def default_variants() -> dict[str, list[dict[str, Any]]]:
    """Search-time settings re-measured on each built index (the recall/latency trade-off)."""
    return {
        "hnsw": [{"ef_search": 128}, {"ef_search": 512}],
        "ivfpq": [{"nprobe": 16, "rerank": 100}],
    }


def measure_retrieval_scaling(
    sizes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
    d: int = 256,
    retrievers: Mapping[str, RetrieverConfig] | None = None,
    n_queries: int = 500,
    *,
    k: int = 10,
    batch_sizes: Sequence[int] = (1, 16, 256),
    n_requests: int = 400,
    seconds_per_batch: float = 8.0,
    min_seconds_per_batch: float = 2.0,
    seed: int = 0,
    ceilings: Ceilings | None = None,
    max_items: Mapping[str, int] | None = None,
    variants: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    bandwidth_now: bool = True,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Measure every retriever at every catalogue size; one dict per (retriever, size).

    Items and queries are drawn from one :func:`synthetic_vector_mixture` with
    ``sqrt(n)`` clusters (clipped to 8..1024). ``max_items`` skips a retriever above a size
    (e.g. ``{"hnsw": 200_000}`` when its build is too slow for the time available). Each
    batch size is timed for ``n_requests`` requests and at least ``min_seconds_per_batch``
    (at most ``seconds_per_batch``).
    ``variants`` re-measures a built index with search-time overrides (e.g.
    ``{"hnsw": [{"ef_search": 256}]}``), recorded as ``hnsw[ef_search=256]``. Each dict
    holds ``retriever, n_items, d, config, build_s, build_cpu_s, build_peak_mb, index_mb,
    p50_ms, p95_ms, p99_ms`` (batch 1), ``batches`` ({bs: p50/p99/items_per_s}), ``qps_<bs>``,
    ``recall@k``, ``flops``/``bytes`` per call per batch, ``roofline`` (fractions of the
    measured ceilings per batch; for exact search over >= 64 MB with ``bandwidth_now``, also
    ``bandwidth_fraction_now`` against ``copy_gbs_now``, a copy bandwidth measured just before
    and after, and ``paired_bandwidth_b1``: batch-1 searches interleaved with copies, see
    :func:`~frugalrec.cost.ceilings.paired_bandwidth_fraction`) and ``stage_costs``
    (:class:`StageCost` dicts with samples, for :func:`frugalrec.cost.roofline.calibrate`).
    """
    threads = configure_threads()
    ceilings = ceilings or measure_ceilings()
    retrievers = dict(retrievers or default_retrievers())
    max_items = dict(max_items or {})
    variants = dict(variants or {})
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    say = log or (lambda _msg: None)
    for n in sizes:
        n_clusters = int(np.clip(np.sqrt(n), 8, 1024))
        t0 = time.perf_counter()
        with single_threaded_blas():
            mix = synthetic_vector_mixture(
                d, np.random.default_rng(rng.integers(2**63)), n_clusters=n_clusters
            )
            gen = np.random.default_rng(rng.integers(2**63))
            items = mix.sample(n, gen)
            queries = mix.sample(n_queries, gen)
        say(f"n={n:,} d={d}: generated in {time.perf_counter() - t0:.1f}s")
        truth, _ = ExactRetriever().build(items).search(queries, k)
        for name, cfg in retrievers.items():
            if n > max_items.get(name, math.inf):
                say(f"  {name}: skipped (n > {max_items[name]:,})")
                continue
            with timed_stage(f"build:{name}") as bt:
                r = make_retriever(cfg).build(items)
            for override in [{}, *variants.get(name, [])]:
                label = name + (
                    "[" + ",".join(f"{a}={b}" for a, b in override.items()) + "]"
                    if override
                    else ""
                )
                r.config = dataclasses.replace(cfg, **override)
                rec = _measure_search(
                    label, r, items, queries, truth, k, batch_sizes, n_requests,
                    seconds_per_batch, min_seconds_per_batch, ceilings, bandwidth_now,
                )  # fmt: skip
                rec.update(
                    build_s=bt.wall_s,
                    build_cpu_s=bt.cpu_s,
                    build_peak_mb=bt.peak_delta_bytes / 2**20,
                    threads=threads,
                    variant_of=name if override else None,
                )
                say(_summary(rec, k, batch_sizes))
                out.append(rec)
            r.config = cfg
            del r
            gc.collect()
        del items, queries, truth
        gc.collect()
    return out


def _summary(rec: Mapping[str, Any], k: int, batch_sizes: Sequence[int]) -> str:
    text = (
        f"  {rec['retriever']}: build {rec['build_s']:.1f}s, {rec['index_mb']:.0f} MB, "
        f"p50 {rec['p50_ms']:.3f} ms, p99 {rec['p99_ms']:.3f} ms, "
        f"recall@{k} {rec[f'recall@{k}']:.3f}, "
        + ", ".join(f"qps@{bs} {rec[f'qps_{bs}']:.0f}" for bs in batch_sizes)
    )
    roof = rec["roofline"].get(1)
    if rec["kind"] == "exact" and roof is not None:
        text += f", bandwidth fraction@1 {roof['bandwidth_fraction']:.2f}"
        if "copy_gbs_now" in rec:
            text += (
                f" ({roof['bandwidth_fraction_now']:.2f} of the "
                f"{rec['copy_gbs_now']:.1f} GB/s measured alongside"
            )
            if "paired_bandwidth_b1" in rec:
                pb = rec["paired_bandwidth_b1"]
                text += (
                    f"; interleaved: {pb['achieved_gbs']:.1f} of {pb['copy_gbs']:.1f} GB/s "
                    f"= {pb['fraction']:.2f}"
                )
            text += ")"
    return text


def _measure_search(
    label: str,
    r: Retriever,
    items: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    batch_sizes: Sequence[int],
    n_requests: int,
    seconds_per_batch: float,
    min_seconds_per_batch: float,
    ceilings: Ceilings,
    bandwidth_now: bool,
) -> dict[str, Any]:
    n, d = items.shape
    cfg = r.config
    ids, _ = r.search(queries, k)
    recall = recall_at_k(ids, truth)
    # Exact search beyond the cache is a bandwidth benchmark; bracket it with copy-bandwidth
    # measurements so its fraction can also be read against what the machine gave just then.
    bracket = cfg.kind == "exact" and items.nbytes >= 64 * 2**20 and bandwidth_now
    bw_before = quick_copy_bandwidth(1.0) if bracket else None
    online = measure_online(
        lambda qb: r.search(qb, k),
        queries,
        batch_sizes,
        warmup=10,
        n_requests=n_requests,
        max_seconds=seconds_per_batch,
        min_seconds=min_seconds_per_batch,
    )
    bw_now = (bw_before + quick_copy_bandwidth(1.0)) / 2 if bw_before is not None else None
    paired = None
    if bracket:
        q1 = queries[:1]
        paired = paired_bandwidth_fraction(
            lambda: r.search(q1, k), r.search_cost(k, 1).bytes_moved, rounds=30
        )
    index_bytes = r.memory_bytes()
    rec: dict[str, Any] = {
        "retriever": label,
        "kind": cfg.kind,
        "n_items": n,
        "d": d,
        "k": k,
        "config": cfg.to_dict(),
        "index_mb": index_bytes / 2**20,
        f"recall@{k}": recall,
        "batches": {},
        "roofline": {},
        "stage_costs": [],
    }
    for bs, stats in online["batches"].items():
        ops = r.search_cost(k, bs)
        p50_s = stats["p50_ms"] / 1e3
        rec["batches"][bs] = {
            key: stats[key] for key in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "items_per_s", "n")
        }
        rec[f"qps_{bs}"] = stats["items_per_s"]
        rec["roofline"][bs] = fraction_of_roofline(ops.flops, ops.bytes_moved, p50_s, ceilings)
        rec["roofline"][bs].update({"flops": ops.flops, "bytes": ops.bytes_moved})
        if bw_now is not None:
            rec["roofline"][bs]["bandwidth_fraction_now"] = ops.bytes_moved / p50_s / (bw_now * 1e9)
        rec["stage_costs"].append(
            StageCost(
                name=f"{label}@{n}/b{bs}",
                kind=cfg.kind,
                flops=ops.flops,
                bytes_moved=ops.bytes_moved,
                seconds=online["samples_s"][bs],
                batch_size=bs,
                working_set_bytes=float(index_bytes),
                hot_bytes=ops.hot_bytes,
                streaming=cfg.kind == "exact",
                meta={"n_items": n, "d": d, "k": k, "config": label},
            ).to_dict()
        )
    if bw_now is not None:
        rec["copy_gbs_now"] = bw_now
    if paired is not None:
        rec["paired_bandwidth_b1"] = paired
    first = online["batches"][batch_sizes[0]]
    rec.update({key: first[key] for key in ("p50_ms", "p95_ms", "p99_ms")})
    return rec


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - manual tool
    import argparse

    from frugalrec._io import write_json_atomic
    from frugalrec.cost.hardware import load_profiles
    from frugalrec.cost.roofline import projection_error, split_half
    from frugalrec.cost.skill import format_skill, naive_constant, skill_summary

    p = argparse.ArgumentParser(description="Measure retrieval cost at growing catalogue sizes.")
    p.add_argument("--sizes", default="1000,10000,100000,1000000")
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--retrievers", default="exact,hnsw,ivfpq")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--batch-sizes", default="1,16,256", help="batch sizes timed per index")
    p.add_argument("--seconds-per-batch", type=float, default=8.0)
    p.add_argument("--min-seconds-per-batch", type=float, default=2.0)
    p.add_argument("--hnsw-max-items", type=int, default=0, help="skip HNSW above this size")
    p.add_argument("--no-variants", action="store_true", help="skip search-time variants")
    p.add_argument(
        "--cached-ceilings",
        action="store_true",
        help="reuse cached ceilings instead of measuring them at the start of this run",
    )
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    configure_threads()
    # Fresh by default: on a shared machine the ceilings move with the neighbours' load, and
    # ratios are only meaningful within one run.
    ceilings = measure_ceilings(refresh=not a.cached_ceilings)
    print(
        f"ceilings: copy {ceilings.copy_gbs:.1f} GB/s (r+w), gemv {ceilings.gemv_gbs:.1f} GB/s, "
        f"sgemm {ceilings.gemm_fp32_gflops:.0f} GFLOP/s, {ceilings.threads} threads"
    )
    wanted = [s.strip() for s in a.retrievers.split(",") if s.strip()]
    configs = {k: v for k, v in default_retrievers().items() if k in wanted}
    records = measure_retrieval_scaling(
        [int(s) for s in a.sizes.split(",")],
        a.d,
        configs,
        a.queries,
        n_requests=a.requests,
        batch_sizes=[int(b) for b in a.batch_sizes.split(",") if b.strip()],
        seconds_per_batch=a.seconds_per_batch,
        min_seconds_per_batch=a.min_seconds_per_batch,
        ceilings=ceilings,
        max_items={"hnsw": a.hnsw_max_items} if a.hnsw_max_items else None,
        variants=None if a.no_variants else default_variants(),
    )
    fits = {name: m.to_dict() for name, m in fit_retrieval_scaling(records, "p50_ms").items()}
    print("fits (p50_ms = a * n^b + c):", json.dumps(fits, indent=1))
    costs = stage_costs(records)
    err: dict[str, Any] = {}
    if len(costs) >= 4:
        local = load_profiles(ceilings=ceilings)["local"]
        train, test = split_half(costs)
        err = projection_error(train, test, local)
        print(
            f"projection error (p99, calibrate on half, check on the other half): "
            f"median {err['median_abs_error']:.1%}, mean {err['mean_abs_error']:.1%}, "
            f"max {err['max_abs_error']:.1%} over {len(test)} held-out points"
        )
        # The same held-out points against a constant (the calibration half's median p99).
        constant = naive_constant([s.quantile_s(0.99) for s in train])
        rows = [{"measured": r["measured_s"], "model": r["projected_s"], "constant": constant}
                for r in err["per_record"]]  # fmt: skip
        err["skill"] = skill_summary(rows, naive=("constant",))
        print(format_skill("held-out p99 (all sizes)", err["skill"]))
    sizes = sorted({int(r["n_items"]) for r in records})
    if len(sizes) >= 3:
        from frugalrec.bench.projection_check import check, report_lines

        size_check = check({"ceilings": ceilings.to_dict(), "records": records},
                           sizes[-2], sizes[-1])  # fmt: skip
        print("\n".join(report_lines(size_check)))
        err["catalogue_size_check"] = size_check
    if a.out:
        write_json_atomic(
            a.out,
            {
                "ceilings": ceilings.to_dict(),
                "records": records,
                "fits": fits,
                "projection_error": err,
            },
        )
        print(f"wrote {a.out}")


if __name__ == "__main__":  # pragma: no cover
    _main()
