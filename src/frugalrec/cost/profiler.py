"""Profiling building blocks: stage timers, latency percentiles, online load, sizes, op counts.

Offline stages (encode, fit, index build) are measured with :func:`timed_stage`: wall and CPU
seconds and resident memory. Online stages are measured with :func:`measure_online`: warmed
up, per-request latency percentiles at batch 1 and throughput at larger batches. Each stage also
gets an analytic count of FLOPs and bytes moved (the ``*_cost`` functions), so a measurement can
be read as a fraction of the machine's ceilings and projected onto other hardware
(:mod:`frugalrec.cost.roofline`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# ---------------------------------------------------------------------------------------------
# Offline stages
# ---------------------------------------------------------------------------------------------


@dataclass
class StageTiming:
    """Wall/CPU seconds and memory of one offline stage.

    ``peak_rss_bytes`` is the highest resident set size seen while the stage ran (sampled by a
    background thread, so a spike shorter than ``sample_interval_s`` can be missed);
    ``peak_delta_bytes`` is that peak minus the RSS at entry, i.e. what the stage added.
    ``py_peak_bytes`` is the tracemalloc peak (numpy reports its buffers to tracemalloc), only
    when the stage ran with ``trace_alloc=True``.
    """

    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_before_bytes: int = 0
    rss_after_bytes: int = 0
    peak_rss_bytes: int = 0
    peak_delta_bytes: int = 0
    py_peak_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RssSampler:
    """Polls this process's RSS in a daemon thread; ru_maxrss alone is a lifetime maximum,
    so it cannot tell what a later, smaller stage peaked at."""

    def __init__(self, interval_s: float) -> None:
        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


@contextlib.contextmanager
def timed_stage(
    name: str, *, trace_alloc: bool = False, sample_interval_s: float = 0.005
) -> Iterator[StageTiming]:
    """Measure the enclosed block; the yielded :class:`StageTiming` is filled in on exit.

    CPU seconds are process-wide (all threads), so ``cpu_s / wall_s`` approximates the cores
    the stage kept busy. ``trace_alloc`` adds tracemalloc, which slows Python allocations.
    """
    timing = StageTiming(name=name)
    proc = psutil.Process()
    timing.rss_before_bytes = proc.memory_info().rss
    started_trace = False
    if trace_alloc and not tracemalloc.is_tracing():
        tracemalloc.start()
        started_trace = True
    if trace_alloc:
        tracemalloc.reset_peak()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        with _RssSampler(sample_interval_s) as sampler:
            yield timing
    finally:
        timing.wall_s = time.perf_counter() - t0
        timing.cpu_s = time.process_time() - cpu0
        timing.rss_after_bytes = proc.memory_info().rss
        timing.peak_rss_bytes = max(sampler.peak, timing.rss_after_bytes)
        timing.peak_delta_bytes = timing.peak_rss_bytes - timing.rss_before_bytes
        if trace_alloc:
            timing.py_peak_bytes = tracemalloc.get_traced_memory()[1]
            if started_trace:
                tracemalloc.stop()


class Stopwatch:
    """Named offline stages, in order: ``with sw.stage("fit"): ...``; ``sw.to_dict()``."""

    def __init__(self, *, trace_alloc: bool = False) -> None:
        self.trace_alloc = trace_alloc
        self.stages: list[StageTiming] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageTiming]:
        with timed_stage(name, trace_alloc=self.trace_alloc) as t:
            yield t
        self.stages.append(t)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s.name: s.to_dict() for s in self.stages}


def process_peak_rss_bytes() -> int:
    """Lifetime peak RSS of this process (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# ---------------------------------------------------------------------------------------------
# Online stages
# ---------------------------------------------------------------------------------------------


def latency_percentiles(samples_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``{p50_ms, p95_ms, p99_ms, mean_ms, max_ms, n}`` of latency samples given in seconds.

    Percentiles use linear interpolation; with fewer than 100 samples p99 is close to the max,
    so callers should collect at least a few hundred samples for a meaningful p99.
    """
    x = np.asarray(samples_s, dtype=np.float64) * 1e3
    if x.size == 0:
        raise ValueError("no latency samples")
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(x.mean()),
        "max_ms": float(x.max()),
        "n": int(x.size),
    }


def _take(requests: Any, idx: np.ndarray) -> Any:
    if isinstance(requests, np.ndarray):
        return requests[idx]
    return [requests[int(i)] for i in idx]


def measure_online(
    fn: Callable[[Any], Any],
    requests: Any,
    batch_sizes: Sequence[int] = (1, 16, 256),
    *,
    warmup: int = 10,
    n_requests: int = 300,
    max_seconds: float | None = 20.0,
    min_calls: int = 5,
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """Time ``fn(batch)`` on batches cut cyclically from ``requests`` (array rows or a list).

    For every batch size: ``warmup`` untimed calls, then timed calls until ``n_requests``
    requests were served and ``min_seconds`` passed, or ``max_seconds`` passed (but at least
    ``min_calls`` calls). On a shared machine a tail percentile from a fraction of a second of
    samples mostly records whether a neighbour happened to be scheduled in that window;
    ``min_seconds`` spreads the samples over more of the neighbours' activity.
    Returns ``{"batches": {bs: {p50_ms, p95_ms, p99_ms, mean_ms, max_ms, n, items_per_s}},
    "latency": <batch-1 percentiles, i.e. per request>, "samples_s": {bs: [...]}}``.
    ``items_per_s`` is requests served divided by the summed call time.
    """
    n_total = len(requests)
    if n_total == 0:
        raise ValueError("requests is empty")
    out: dict[str, Any] = {"batches": {}, "samples_s": {}}
    cursor = 0

    def next_batch(bs: int) -> Any:
        nonlocal cursor
        idx = (cursor + np.arange(bs)) % n_total
        cursor = (cursor + bs) % n_total
        return _take(requests, idx)

    for bs in batch_sizes:
        if bs <= 0:
            raise ValueError(f"batch sizes must be positive, got {bs}")
        for _ in range(warmup if bs == 1 else max(1, min(warmup, 3))):
            fn(next_batch(bs))
        n_calls = max(min_calls, math.ceil(n_requests / bs))
        samples: list[float] = []
        t_start = time.perf_counter()
        while True:
            batch = next_batch(bs)
            t0 = time.perf_counter()
            fn(batch)
            samples.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - t_start
            if len(samples) < min_calls:
                continue
            if max_seconds is not None and elapsed > max_seconds:
                break
            if len(samples) >= n_calls and elapsed >= min_seconds:
                break
        stats: dict[str, Any] = latency_percentiles(samples)
        stats["items_per_s"] = bs * len(samples) / float(np.sum(samples))
        out["batches"][int(bs)] = stats
        out["samples_s"][int(bs)] = samples
    if 1 in out["batches"]:
        out["latency"] = out["batches"][1]
    return out


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------


def nbytes(obj: Any) -> int:
    """Bytes held in memory by ``obj``: numpy arrays, scipy sparse, faiss indexes, torch
    modules/tensors, pandas objects, objects with ``memory_bytes()``, and containers of these.

    Views are counted at their own size, so shared buffers may be counted twice.
    """
    if obj is None:
        return 0
    if hasattr(obj, "memory_bytes") and callable(obj.memory_bytes):
        return int(obj.memory_bytes())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, bytes | bytearray | memoryview):
        return len(obj)
    mod = type(obj).__module__ or ""
    if mod.startswith("scipy.sparse"):
        return sum(
            int(getattr(obj, a).nbytes)
            for a in ("data", "indices", "indptr", "row", "col", "offsets")
            if isinstance(getattr(obj, a, None), np.ndarray)
        )
    if mod.startswith("faiss"):
        return faiss_index_bytes(obj)
    if mod.startswith("torch"):
        return _torch_bytes(obj)
    if mod.startswith("pandas"):
        usage = obj.memory_usage(deep=True)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    if isinstance(obj, Mapping):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(nbytes(v) for v in obj)
    return int(sys.getsizeof(obj))


def _torch_bytes(obj: Any) -> int:
    if hasattr(obj, "parameters") and hasattr(obj, "buffers"):
        tensors = [*obj.parameters(), *obj.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))
    if hasattr(obj, "element_size"):
        return int(obj.numel() * obj.element_size())
    return int(sys.getsizeof(obj))


def faiss_index_bytes(index: Any) -> int:
    """Bytes a faiss index holds: codes, graph links, inverted lists, quantisers.

    Walks the common index types directly (serialising a 1 GB index just to measure it would
    double peak memory); unknown types fall back to the size of their serialisation.
    """
    import faiss

    index = faiss.downcast_index(index)
    h: Any
    if isinstance(index, faiss.IndexHNSW):
        h = index.hnsw  # the stubs lack the graph vectors; they exist at runtime
        graph = h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
        return int(graph + faiss_index_bytes(index.storage))
    if isinstance(index, faiss.IndexFlatCodes):
        return int(index.codes.size())
    if isinstance(index, faiss.IndexIVF):
        invlists: Any = index.invlists
        total = 0
        for i in range(index.nlist):
            # ids are int64 per entry beside each code
            total += invlists.list_size(i) * (invlists.code_size + 8)
        total += faiss_index_bytes(index.quantizer)
        if isinstance(index, faiss.IndexIVFPQ):
            total += index.pq.centroids.size() * 4
            total += getattr(index, "precomputed_table").size() * 4  # noqa: B009 (not in stubs)
        return int(total)
    if isinstance(index, faiss.IndexRefine):
        return int(faiss_index_bytes(index.base_index) + faiss_index_bytes(index.refine_index))
    return int(faiss.serialize_index(index).size)


def disk_bytes(path: str | os.PathLike[str]) -> int:
    """Size on disk of a file, or the sum over a directory tree."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------
# Stage costs and analytic op counts
# ---------------------------------------------------------------------------------------------


@dataclass
class StageCost:
    """One online stage: analytic work per call plus measured seconds per call.

    ``flops`` and ``bytes_moved`` are per call of ``batch_size`` requests; ``seconds`` are
    latency samples of such calls. ``kind`` groups stages that share a calibration (e.g.
    ``"exact"``, ``"hnsw"``); it defaults to ``name``. ``dtype`` picks the peak FLOP/s used
    in projections (``fp32``, ``fp16``, ``int8``). ``working_set_bytes`` is what the stage
    touches again on every call (the index or model it reads), for the cache-aware roofline;
    0 means unknown (every byte assumed to come from memory). ``hot_bytes`` (part of
    ``bytes_moved``) come from small always-cached structures (see :class:`OpCount`);
    ``streaming`` marks a sequential scan of the working set (exact search, dense scoring),
    which gets no cache hits once the working set outgrows the cache. ``launches`` counts the
    kernels one call dispatches (framework ops that are not views; 0 = not counted), which
    bounds the call on an accelerator driven from the host (see :func:`roofline.project`).
    """

    name: str
    flops: float
    bytes_moved: float
    seconds: list[float] = field(default_factory=list)
    batch_size: int = 1
    kind: str = ""
    dtype: str = "fp32"
    working_set_bytes: float = 0.0
    hot_bytes: float = 0.0
    streaming: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    launches: int = 0

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = self.name
        self.seconds = [float(s) for s in self.seconds]

    def quantile_s(self, q: float) -> float:
        """The ``q``-quantile (0..1) of the seconds samples."""
        if not self.seconds:
            raise ValueError(f"stage {self.name!r} has no seconds samples")
        return float(np.quantile(np.asarray(self.seconds), q))

    @property
    def p50_s(self) -> float:
        return self.quantile_s(0.5)

    @property
    def p99_s(self) -> float:
        return self.quantile_s(0.99)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte moved."""
        return self.flops / self.bytes_moved if self.bytes_moved > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageCost:
        return cls(**dict(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, s: str) -> StageCost:
        return cls.from_dict(json.loads(s))


@dataclass(frozen=True)
class OpCount:
    """Analytic work of one call: floating-point (or integer) ops and bytes moved.

    Unpacks as ``flops, bytes_moved = cost``. ``hot_bytes`` is the part of ``bytes_moved``
    read from small structures that every call re-reads (IVF coarse centroids, PQ tables),
    which stay in cache between calls whatever the size of the index; the cache-aware
    roofline charges them at cache bandwidth.
    """

    flops: float
    bytes_moved: float
    hot_bytes: float = 0.0

    def __iter__(self) -> Iterator[float]:
        return iter((self.flops, self.bytes_moved))

    def __add__(self, other: object) -> OpCount:
        if not isinstance(other, OpCount):
            return NotImplemented
        return OpCount(
            self.flops + other.flops,
            self.bytes_moved + other.bytes_moved,
            self.hot_bytes + other.hot_bytes,
        )

    def times(self, n: float) -> OpCount:
        """The cost of ``n`` such calls."""
        return OpCount(self.flops * n, self.bytes_moved * n, self.hot_bytes * n)


def dense_scoring_cost(
    n_items: int, d: int, batch: int = 1, *, dtype_bytes: int = 4, write_scores: bool = True
) -> OpCount:
    """Scores of ``batch`` queries against an ``[n_items, d]`` matrix (GEMV/GEMM).

    The item matrix is read once per call, whatever the batch (that is why batching helps);
    ``write_scores`` adds the ``[batch, n_items]`` float32 output, which blocked top-k avoids.
    """
    flops = 2.0 * batch * n_items * d
    moved = n_items * d * dtype_bytes + batch * d * 4
    if write_scores:
        moved += batch * n_items * 4
    return OpCount(flops, float(moved))


def ease_scoring_cost(history_len: int, n_items: int, batch: int = 1) -> OpCount:
    """EASE-style item-item scoring: each user's score row is the sum of ``history_len`` rows
    of the dense ``[n_items, n_items]`` weight matrix (assumes distinct rows per user)."""
    flops = 2.0 * batch * history_len * n_items
    moved = 4.0 * batch * history_len * n_items + 4.0 * batch * n_items
    return OpCount(flops, moved)


def topk_cost(n_items: int, k: int, batch: int = 1, *, read_scores: bool = True) -> OpCount:
    """Top-``k`` selection over ``n_items`` scores per query (introselect, then sort ``k``)."""
    flops = batch * (float(n_items) + k * math.log2(max(k, 2)))
    moved = 4.0 * batch * n_items if read_scores else 0.0
    return OpCount(flops, moved + 12.0 * batch * k)


def exact_topk_cost(n_items: int, d: int, k: int, batch: int = 1) -> OpCount:
    """Blocked exact search: scores stay in cache, so RAM traffic is the item matrix once."""
    return dense_scoring_cost(n_items, d, batch, write_scores=False) + topk_cost(
        n_items, k, batch, read_scores=False
    )


def hnsw_search_cost(
    n_items: int, d: int, m: int, ef_search: int, k: int = 10, batch: int = 1
) -> OpCount:
    """HNSW search (faiss ``IndexHNSWFlat``), per call of ``batch`` queries.

    Distance evaluations per query ~ ``max(ef, k) * 2M`` on the base layer (each expanded node
    visits its up to ``2M`` neighbours) plus ``M * log2(n)`` for the greedy descent through
    the upper layers. Each evaluation reads one random ``d``-float vector, and each expanded node
    its neighbour list. (The often quoted ``ef * M * d * log n`` overcounts: the ``log n`` is
    paid only by the upper layers.)
    """
    ef = max(ef_search, k)
    n_dist = ef * 2 * m + m * math.log2(max(n_items, 2))
    flops = batch * n_dist * 2.0 * d
    moved = batch * (n_dist * d * 4.0 + ef * 2 * m * 4.0)
    return OpCount(flops, moved)


def ivfpq_search_cost(
    n_items: int,
    d: int,
    nlist: int,
    nprobe: int,
    m: int,
    nbits: int = 8,
    k: int = 10,
    batch: int = 1,
    *,
    rerank: int = 0,
) -> OpCount:
    """IVF-PQ search, per call of ``batch`` queries.

    Coarse quantiser ``nlist * d`` multiply-adds; lookup tables ``2**nbits * d``; the scan of
    ``nprobe`` lists of ``n/nlist`` codes costs ``m`` table lookups+adds per code and reads
    ``m*nbits/8`` code bytes plus an 8-byte id; optional exact re-rank of ``rerank`` candidates
    reads their float32 vectors.
    """
    scanned = nprobe * n_items / max(nlist, 1)
    coarse = OpCount(2.0 * nlist * d, nlist * d * 4.0, nlist * d * 4.0)
    lut = OpCount(2.0 * (2**nbits) * d, (2**nbits) * d * 4.0, (2**nbits) * d * 4.0)
    scan = OpCount(scanned * m, scanned * (m * nbits / 8.0 + 8.0))
    select = topk_cost(int(scanned), max(k, rerank), 1, read_scores=False)
    per_query = coarse + lut + scan + select
    if rerank > 0:
        per_query = per_query + OpCount(2.0 * rerank * d, rerank * d * 4.0)
    return per_query.times(batch)


def ivfflat_search_cost(
    n_items: int, d: int, nlist: int, nprobe: int, k: int = 10, batch: int = 1
) -> OpCount:
    """IVF-Flat search: coarse quantiser plus exact scan of ``nprobe`` lists of float32."""
    scanned = nprobe * n_items / max(nlist, 1)
    per_query = OpCount(2.0 * nlist * d, nlist * d * 4.0, nlist * d * 4.0) + OpCount(
        2.0 * scanned * d, scanned * (d * 4.0 + 8.0)
    )
    per_query = per_query + topk_cost(int(scanned), k, 1, read_scores=False)
    return per_query.times(batch)
