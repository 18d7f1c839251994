"""Profiling building blocks: stage timers, latency percentiles, online load, sizes.

Offline stages (encode, fit, index build) are measured with :func:`timed_stage`: wall and CPU
seconds and resident memory. Online stages are measured with :func:`measure_online`: warmed
up, per-request latency percentiles at batch 1 and throughput at larger batches. The analytic
side (op counts, :class:`~frugalrec.opcount.StageCost`) lives in :mod:`frugalrec.opcount`.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from frugalrec.pipeline.retrieval import faiss_index_bytes

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
    """Peak RSS of this process image, in bytes.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this address space since
    its ``exec``. Not ``ru_maxrss``: the kernel carries that over ``exec`` from the forked
    copy of the parent, so a worker started by a process holding 1.7 GB of torch reported
    1.7 GB whatever it loaded itself. Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# Libraries whose import alone costs tens to hundreds of MB: a memory figure says which it
# carries, so a reader can tell a configuration's own cost from its runtime's.
HEAVY_MODULES = (
    "torch",
    "transformers",
    "sentence_transformers",
    "onnxruntime",
    "model2vec",
    "faiss",
    "llama_cpp",
    "ray",
)


def heavy_modules_loaded() -> list[str]:
    """Which of :data:`HEAVY_MODULES` this process has imported."""
    return [m for m in HEAVY_MODULES if m in sys.modules]


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


def disk_bytes(path: str | os.PathLike[str]) -> int:
    """Size on disk of a file, or the sum over a directory tree."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
