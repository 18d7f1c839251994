"""Scale-out benchmarks (``python -m frugalrec.bench.engines ...``).

``encode``     catalogue encoding in-process vs ``--engine ray`` on the same texts: seconds,
               ratio, identical vectors; records Ray's overhead figures for ``plan-scale``.
``catalogue``  the large-catalogue path: a streamed synthetic catalogue (Parquet), static-tier
               encoding chunk by chunk, IVF-PQ / HNSW indexes, retrieval throughput and p99.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import write_json_atomic


def _machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _peak_rss_mb() -> float:
    from frugalrec.bench.profiler import process_peak_rss_bytes

    return process_peak_rss_bytes() / 2**20


def catalogue_texts(n: int, seed: int = 42) -> list[str]:
    """``n`` item texts of the synthetic catalogue (title + description + category)."""
    from frugalrec.data.synthetic_parquet import catalogue_chunks, item_popularity
    from frugalrec.text.items import item_texts

    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for df in catalogue_chunks(n, rng, item_popularity(n, rng)):
        texts += item_texts(df.drop(columns=["popularity"]))
    return texts


# ---------------------------------------------------------------------------------------------
# encode: in-process vs Ray


def bench_encode(args: argparse.Namespace) -> dict[str, Any]:
    from frugalrec._threads import configure_threads
    from frugalrec.engines.overhead import measure_serialisation, overhead_from_runs
    from frugalrec.engines.ray_engine import RayEngine
    from frugalrec.text.encoders import load_encoder

    machine_before = _machine()
    texts = catalogue_texts(args.n, args.seed)
    threads = configure_threads()
    t0 = time.perf_counter()
    encoder = load_encoder(args.tier, args.backend)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = encoder.encode(texts, batch_size=args.batch_size)
    local_s = time.perf_counter() - t0
    print(f"in-process: {args.n} texts in {local_s:.1f} s (+{load_s:.1f} s load)", file=sys.stderr)
    del encoder
    t0 = time.perf_counter()
    with RayEngine(workers=args.workers) as engine:
        start_s = engine.init_seconds
        t1 = time.perf_counter()
        vecs = engine.encode(texts, args.tier, args.backend, batch_size=args.batch_size)
        run_s = time.perf_counter() - t1
        run = dict(engine.last_run)
        ser = measure_serialisation()
    total_s = time.perf_counter() - t0
    print(f"ray: {run_s:.1f} s run, {total_s:.1f} s with start/stop", file=sys.stderr)
    mb_per_item = (vecs.shape[1] * 4 + np.mean([len(t) for t in texts[:10000]])) / 2**20
    key = f"encode/{_key(args)}"
    overhead = overhead_from_runs(
        key,
        n_items=args.n,
        local_seconds_=local_s,
        local_threads=threads,
        cluster_start_s=start_s,
        ray_run=run,
        serialise_s_per_mb=ser,
        mb_per_item=mb_per_item,
    )
    return {
        "benchmark": "encode in-process vs ray",
        "command": "python -m frugalrec.bench.engines " + " ".join(sys.argv[1:]),
        "texts": {
            "n": args.n,
            "source": "synthetic catalogue (title + description + category)",
            "mean_chars": float(np.mean([len(t) for t in texts])),
        },
        "encoder": _key(args),
        "batch_size": args.batch_size,
        "local": {
            "threads": threads,
            "load_s": load_s,
            "encode_s": local_s,
            "texts_per_s": args.n / local_s,
        },
        "ray": {
            "workers": run["workers"],
            "threads_per_worker": 1,
            "cluster_start_s": start_s,
            "encode_s": run_s,
            "with_start_stop_s": total_s,
            "texts_per_s": args.n / run_s,
            "run": run,
        },
        # Like for like: both sides load the encoder (the actors do it in their start-up).
        "ratio_ray_over_local": run_s / (load_s + local_s),
        "ratio_with_cluster_start": (run_s + start_s) / (load_s + local_s),
        "ratio_encode_only": (run_s - max(run["startup_s"], default=0.0)) / local_s,
        "identical_vectors": bool(np.array_equal(vecs, local)),
        "max_abs_diff": float(np.abs(vecs - local).max()),
        "overhead": overhead.to_dict(),
        "machine_before": machine_before,
        "machine_after": _machine(),
    }


def _key(args: argparse.Namespace) -> str:
    return f"{args.tier}/{args.backend or ('numpy' if args.tier == 'static' else 'torch')}"


def _merge_overhead(path: Path, result: dict[str, Any]) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    o = result["overhead"]
    data["stages"][o["stage"]] = o
    data["date"] = result["machine_after"]["date"]
    cpus, load = result["machine_after"]["cpus"], result["machine_before"]["load_avg_1_5_15"]
    data["machine"] = f"{cpus}-core shared box, load {load}"
    data["source"] = "python -m frugalrec.bench.engines encode (see docs/scaling.md)"
    write_json_atomic(path, data)


# ---------------------------------------------------------------------------------------------
# catalogue: 1M items end to end


def bench_catalogue(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from frugalrec._threads import configure_threads
    from frugalrec.bench.profiler import latency_percentiles
    from frugalrec.data.synthetic_parquet import write_synthetic_dataset
    from frugalrec.engines import make_engine
    from frugalrec.pipeline.retrieval import (
        ExactRetriever,
        HNSWConfig,
        IVFPQConfig,
        make_retriever,
        recall_at_k,
    )
    from frugalrec.text.items import item_texts

    machine_before = _machine()
    threads = configure_threads()
    data_dir = Path(args.data_dir)
    out: dict[str, Any] = {
        "benchmark": "large catalogue: generate, encode (static), index, retrieve",
        "command": "python -m frugalrec.bench.engines " + " ".join(sys.argv[1:]),
        "threads": threads,
    }
    t0 = time.perf_counter()
    if not (data_dir / "manifest.json").is_file() or args.regenerate:
        manifest = write_synthetic_dataset(
            data_dir, args.items, args.users, args.interactions, seed=args.seed
        )
    else:
        manifest = json.loads((data_dir / "manifest.json").read_text())
    out["generate"] = {
        "seconds": time.perf_counter() - t0,
        "manifest": manifest,
        "bytes": {f: (data_dir / f).stat().st_size for f in manifest["files"]},
        "peak_rss_mb": _peak_rss_mb(),
    }
    print(f"generate: {out['generate']}", file=sys.stderr)

    n = int(manifest["n_items"])
    vec_path = data_dir / "vectors-static.npy"
    t0 = time.perf_counter()
    with make_engine(args.engine, address=args.ray_address, workers=args.workers) as engine:
        vectors = None
        rows = 0
        pf = pq.ParquetFile(data_dir / "items.parquet")
        cols = ["title", "description", "category"]
        for batch in pf.iter_batches(batch_size=args.encode_chunk, columns=cols):
            texts = item_texts(batch.to_pandas())
            v = engine.encode(texts, "static")
            if vectors is None:
                vectors = np.lib.format.open_memmap(vec_path, "w+", np.float32, (n, v.shape[1]))
            vectors[rows : rows + len(v)] = v
            rows += len(v)
        assert vectors is not None
        vectors.flush()
        info = engine.info()
    enc_s = time.perf_counter() - t0
    out["encode"] = {
        "engine": info,
        "items": rows,
        "seconds": enc_s,
        "items_per_s": rows / enc_s,
        "dims": int(vectors.shape[1]),
        "peak_rss_mb": _peak_rss_mb(),
    }
    print(f"encode: {out['encode']}", file=sys.stderr)
    del vectors
    x = np.load(vec_path, mmap_mode="r")

    # Queries: users as the mean of a few popular-weighted items they "liked".
    rng = np.random.default_rng(args.seed + 1)
    pop = pq.read_table(data_dir / "items.parquet", columns=["popularity"])["popularity"]
    p = pop.to_numpy().astype(np.float64)
    liked = rng.choice(n, size=(args.queries, 5), p=p / p.sum())
    q = np.asarray(x[np.sort(liked.ravel())], dtype=np.float32)
    q = q[np.argsort(np.argsort(liked.ravel(), kind="stable"), kind="stable")]
    q = q.reshape(args.queries, 5, -1).mean(axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    X = np.ascontiguousarray(x, dtype=np.float32)
    t0 = time.perf_counter()
    truth, _ = ExactRetriever().build(X).search(q, args.k)
    exact_s = time.perf_counter() - t0
    out["exact"] = {"batch_seconds": exact_s, "qps_batch": args.queries / exact_s}
    out["indexes"] = {}
    kinds = {"ivfpq": IVFPQConfig(), "hnsw": HNSWConfig()}
    for name in args.indexes.split(","):
        cfg = kinds[name]
        t0 = time.perf_counter()
        r = make_retriever(cfg).build(X)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        found, _ = r.search(q, args.k)
        batch_s = time.perf_counter() - t0
        singles = []
        for i in range(min(args.single_queries, len(q))):
            t1 = time.perf_counter()
            r.search(q[i : i + 1], args.k)
            singles.append(time.perf_counter() - t1)
        lat = latency_percentiles(singles)
        out["indexes"][name] = {
            "config": cfg.to_dict(),
            "build_seconds": build_s,
            "memory_mb": r.memory_bytes() / 2**20,
            f"recall@{args.k}_vs_exact": recall_at_k(found, truth),
            "qps_batch": len(q) / batch_s,
            "single_query_ms": {"p50": lat["p50_ms"], "p99": lat["p99_ms"], "n": lat["n"]},
            "peak_rss_mb": _peak_rss_mb(),
        }
        print(f"{name}: {out['indexes'][name]}", file=sys.stderr)
        del r
    out["peak_rss_mb"] = _peak_rss_mb()
    out["machine_before"] = machine_before
    out["machine_after"] = _machine()
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    p = argparse.ArgumentParser(prog="python -m frugalrec.bench.engines")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="in-process vs ray catalogue encoding")
    e.add_argument("--n", type=int, default=100_000)
    e.add_argument("--tier", default="minilm")
    e.add_argument("--backend", default="onnx-int8")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--seed", type=int, default=42)
    e.add_argument("--out", required=True, help="result JSON")
    e.add_argument("--overhead", default="docs/bench/ray_overhead.json")
    c = sub.add_parser("catalogue", help="large synthetic catalogue end to end")
    c.add_argument("--items", type=int, default=1_000_000)
    c.add_argument("--users", type=int, default=1_000_000)
    c.add_argument("--interactions", type=int, default=50_000_000)
    c.add_argument("--data-dir", default="/tmp/frugalrec-synthetic-1m")
    c.add_argument("--regenerate", action="store_true")
    c.add_argument("--engine", default="local", choices=["local", "ray"])
    c.add_argument("--ray-address")
    c.add_argument("--workers", type=int)
    c.add_argument("--encode-chunk", type=int, default=100_000)
    c.add_argument("--indexes", default="ivfpq,hnsw")
    c.add_argument("--queries", type=int, default=1000)
    c.add_argument("--single-queries", type=int, default=1000)
    c.add_argument("-k", type=int, default=10)
    c.add_argument("--seed", type=int, default=42)
    c.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.cmd == "encode":
        result = bench_encode(args)
        _merge_overhead(Path(args.overhead), result)
    else:
        result = bench_catalogue(args)
    write_json_atomic(args.out, result)
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("overhead",)}, indent=1, default=str
        )[:4000]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
