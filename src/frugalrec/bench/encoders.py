"""Measure the encoder ladder: throughput, memory, size and fidelity per tier/backend.

Each tier/backend runs in a fresh spawned process, so its peak RSS is its own (models loaded
earlier in the same process would otherwise hide it) and nothing it warms up helps the next.
Fidelity is measured against the same tier's torch fp32 vectors (run as an extra reference
when not requested); the static tier lives in another space, so it only gets the correlation
of pairwise similarities with MiniLM fp32.

Command line::

    python -m frugalrec.bench.encoders --texts ml100k --repeats 3 --out bench.json
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_CONFIGS: tuple[tuple[str, str], ...] = (
    ("static", "numpy"),
    ("minilm", "torch"),
    ("minilm", "onnx"),
    ("minilm", "onnx-int8"),
    ("minilm", "torch-int8"),
    ("mpnet", "torch"),
    ("mpnet", "onnx-int8"),
)


def _measure(
    tier: str, backend: str, texts: list[str], repeats: int, batch_size: int, n_single: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Load, warm up, time ``repeats`` full passes; runs inside the worker process."""
    import psutil

    from frugalrec.text.encoders import load_encoder

    load_start = os.getloadavg()[0]
    rss_before = psutil.Process().memory_info().rss
    enc = load_encoder(tier, backend)
    rss_loaded = psutil.Process().memory_info().rss
    enc.encode(texts[: 2 * batch_size], batch_size=batch_size)  # warm-up: lazy inits, caches
    seconds: list[float] = []
    vecs = np.empty((0, enc.dims), dtype=np.float32)
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        vecs = enc.encode(texts, batch_size=batch_size)
        seconds.append(time.perf_counter() - t0)
    single_ms: list[float] = []
    for text in texts[:n_single]:  # serving latency: one request, one text
        t0 = time.perf_counter()
        enc.encode([text])
        single_ms.append((time.perf_counter() - t0) * 1e3)
    from frugalrec.bench.profiler import process_peak_rss_bytes

    # the high-water mark of this worker process image (not inherited from its parent)
    peak = process_peak_rss_bytes()
    from frugalrec._threads import thread_count

    row = {
        **enc.info(),
        "n_texts": len(texts),
        "batch_size": batch_size,
        "threads": thread_count(),
        "repeats": len(seconds),
        "seconds": seconds,
        "texts_per_s": len(texts) / statistics.median(seconds),
        "single_ms_p50": float(np.median(single_ms)) if single_ms else None,
        "rss_before_mb": rss_before / 2**20,
        "rss_loaded_mb": rss_loaded / 2**20,
        "peak_rss_mb": peak / 2**20,
        "peak_rss_delta_mb": (peak - rss_before) / 2**20,
        # Other work on the machine skews wall-clock numbers; keep the evidence with them.
        "loadavg_1m": [load_start, os.getloadavg()[0]],
    }
    return row, vecs


def _run(
    tier: str,
    backend: str,
    texts: list[str],
    repeats: int,
    batch_size: int,
    n_single: int,
    isolate: bool,
) -> tuple[dict[str, Any], np.ndarray]:
    if not isolate:
        return _measure(tier, backend, texts, repeats, batch_size, n_single)
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (tier, backend, texts, repeats, batch_size, n_single))


def _pair_sim_corr(a: np.ndarray, b: np.ndarray, n_pairs: int = 20_000, seed: int = 0) -> float:
    """Pearson correlation of cos(x_i, x_j) under two encoders over random pairs (i != j)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(a), n_pairs)
    j = rng.integers(0, len(a), n_pairs)
    keep = i != j
    sa = np.einsum("nd,nd->n", a[i[keep]], a[j[keep]])
    sb = np.einsum("nd,nd->n", b[i[keep]], b[j[keep]])
    return float(np.corrcoef(sa, sb)[0, 1])


def benchmark_encoders(
    tiers_backends: Sequence[tuple[str, str]],
    texts: Sequence[str],
    repeats: int = 3,
    batch_size: int = 64,
    n_single: int = 50,
    isolate: bool = True,
    reference: bool = True,
) -> list[dict[str, Any]]:
    """One row per (tier, backend), in the order given.

    Row keys: everything in ``TextEncoder.info()`` plus ``texts_per_s`` (median over
    ``repeats`` full passes after a warm-up), ``seconds`` (each pass), ``single_ms_p50``
    (one-text latency), ``peak_rss_mb`` / ``peak_rss_delta_mb`` (worker high-water mark, and
    minus its RSS before loading the model), ``cosine_to_fp32_mean``/``_min`` (row-wise cosine
    to the same tier's torch fp32 vectors; None for the reference itself and for static) and
    ``sim_corr_to_fp32`` (correlation of pairwise similarities with that reference; static is
    compared with MiniLM). ``isolate=False`` runs in-process (faster, but peak RSS is then
    shared with whatever ran before); ``reference=False`` skips the fidelity columns (None)
    instead of running a missing torch fp32 reference.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("benchmark_encoders needs at least one text")
    rows: list[dict[str, Any]] = []
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for tier, backend in tiers_backends:
        row, vecs = _run(tier, backend, texts, repeats, batch_size, n_single, isolate)
        logger.info("%s: %.1f texts/s", row["key"], row["texts_per_s"])
        rows.append(row)
        vectors[(row["tier"], row["backend"])] = vecs
    for row in rows:
        ref_tier = "minilm" if row["tier"] == "static" else row["tier"]
        if (row["tier"], row["backend"]) == (ref_tier, "torch") or (
            not reference and (ref_tier, "torch") not in vectors
        ):
            row.update(cosine_to_fp32_mean=None, cosine_to_fp32_min=None, sim_corr_to_fp32=None)
            continue
        if (ref_tier, "torch") not in vectors:
            # Reference only: one pass, no timing worth keeping.
            _, vectors[(ref_tier, "torch")] = _run(
                ref_tier, "torch", texts, 1, batch_size, 0, isolate
            )
        ref = vectors[(ref_tier, "torch")]
        vecs = vectors[(row["tier"], row["backend"])]
        if row["tier"] == "static":
            row.update(cosine_to_fp32_mean=None, cosine_to_fp32_min=None)
        else:
            cos = np.einsum("nd,nd->n", vecs, ref)
            row.update(cosine_to_fp32_mean=float(cos.mean()), cosine_to_fp32_min=float(cos.min()))
        row["sim_corr_to_fp32"] = _pair_sim_corr(vecs, ref)
    for row in rows:
        base = next((r for r in rows if (r["tier"], r["backend"]) == ("minilm", "torch")), None)
        row["speedup_vs_minilm_torch"] = (
            row["texts_per_s"] / base["texts_per_s"] if base is not None else None
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the headline numbers."""

    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    head = (
        "| tier/backend | texts/s | x MiniLM torch | 1-text ms | peak RSS MB | +RSS MB "
        "| model MB | params M | dims | cos fp32 mean | cos min | sim corr |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['key']} | {f(r['texts_per_s'], '.0f')}"
            f" | {f(r['speedup_vs_minilm_torch'], '.2f')}"
            f" | {f(r['single_ms_p50'], '.2f')} | {f(r['peak_rss_mb'], '.0f')}"
            f" | {f(r['peak_rss_delta_mb'], '.0f')} | {r['model_bytes'] / 1e6:.1f}"
            f" | {r['params'] / 1e6:.2f} | {r['dims']} | {f(r['cosine_to_fp32_mean'], '.4f')}"
            f" | {f(r['cosine_to_fp32_min'], '.4f')} | {f(r['sim_corr_to_fp32'], '.4f')} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m frugalrec.bench.encoders``: run the ladder benchmark and print a table."""
    p = argparse.ArgumentParser(prog="python -m frugalrec.bench.encoders", description=__doc__)
    p.add_argument(
        "--configs",
        default=",".join(f"{t}/{b}" for t, b in DEFAULT_CONFIGS),
        help="comma-separated tier/backend list",
    )
    p.add_argument("--texts", choices=("ml100k", "synthetic"), default="ml100k")
    p.add_argument("--n", type=int, default=2000, help="at most this many texts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from frugalrec.text.items import item_texts, synthetic_movie_texts

    if args.texts == "ml100k":
        from frugalrec.data.movielens import load_ml100k

        texts = item_texts(load_ml100k().items)[: args.n]
    else:
        texts = synthetic_movie_texts(args.n)
    configs = [tuple(c.strip().split("/", 1)) for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if len(c) != 2]
    if bad:
        p.error(f"configs must look like tier/backend, got {bad}")
    print(f"{len(texts)} texts ({args.texts}), {os.cpu_count()} CPUs, repeats={args.repeats}")
    print(f"load average before: {os.getloadavg()}")
    rows = benchmark_encoders(
        [(c[0], c[1]) for c in configs], texts, repeats=args.repeats, batch_size=args.batch_size
    )
    print(format_table(rows))
    print(f"load average after: {os.getloadavg()}")
    if args.out:
        from frugalrec._io import write_json_atomic

        write_json_atomic(args.out, {"source": args.texts, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
