"""This machine's physical ceilings, measured: memory bandwidth and fp32 matmul FLOP/s.

Every measured stage is reported as a fraction of these ceilings, and the roofline projection
(:mod:`frugalrec.cost.roofline`) calibrates against them. They are measured once per machine
and thread count, and cached as JSON under ``cache_dir("ceilings")``.

* ``copy_gbs``: a multi-threaded ``np.copyto`` between two arrays well beyond the last-level
  cache, counting read + write bytes (the STREAM "copy" convention; write-allocate traffic is
  not counted, so the true bus traffic is higher).
* ``gemv_gbs``: matrix-vector product over a matrix beyond the cache, counting the matrix bytes.
  This is the kernel of batch-1 exact retrieval, so it is the realistic read-bandwidth ceiling.
* ``gemm_fp32_gflops``: square fp32 ``numpy.matmul`` (BLAS sgemm), ``2 n^3`` FLOPs per call.
* ``cache_gbs``: the same copy on arrays that fit in the last-level cache (``llc_bytes``, read
  from sysfs), repeated: the bandwidth a stage whose working set stays cached can reach. It
  makes the roofline cache-aware (a 10 MB index is served from L3, a 1 GB one from DRAM).

Each figure is the median over repeated runs within ``seconds_budget``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import cache_dir, write_json_atomic
from frugalrec._threads import configure_threads, thread_count


@dataclass
class Ceilings:
    """Measured ceilings of one machine at one thread count (GB = 1e9 bytes)."""

    copy_gbs: float
    gemv_gbs: float
    gemm_fp32_gflops: float
    threads: int
    cache_gbs: float = 0.0
    llc_bytes: int = 0
    hostname: str = ""
    cpu_model: str = ""
    measured_at: str = ""
    array_mb: float = 0.0
    gemm_n: int = 0
    runs: dict[str, list[float]] = field(default_factory=dict)

    @property
    def mem_bandwidth_gbs(self) -> float:
        """The bandwidth ceiling used for rooflines: the copy figure (read + write bytes)."""
        return self.copy_gbs

    @property
    def peak_flops_fp32(self) -> float:
        """fp32 FLOP/s."""
        return self.gemm_fp32_gflops * 1e9

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ceilings:
        return cls(**d)


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def llc_bytes() -> int:
    """Size of the largest CPU cache (Linux sysfs), 0 when unknown."""
    best = 0
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in base.glob("index*"):
        try:
            text = (idx / "size").read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * mult)
    return best


def _cache_path(threads: int) -> Path:
    key = f"{socket.gethostname()}|{cpu_model()}|{threads}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir("ceilings") / f"ceilings-{digest}.json"


def cached_ceilings(threads: int | None = None) -> Ceilings | None:
    """The cached measurement for this host, CPU and thread count, if any."""
    path = _cache_path(threads or thread_count())
    if not path.exists():
        return None
    try:
        return Ceilings.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # a corrupt or outdated cache is re-measured, not fatal


def measure_ceilings(
    seconds_budget: float = 5.0,
    *,
    threads: int | None = None,
    use_cache: bool = True,
    refresh: bool = False,
) -> Ceilings:
    """Measure (or load from cache) copy and GEMV bandwidth and fp32 GEMM FLOP/s.

    ``seconds_budget`` bounds the measuring time (roughly, split over the three kernels; a
    tiny budget uses smaller arrays, which may fit in cache and overstate bandwidth). With
    ``use_cache`` a previous result for this host/CPU/thread count is returned unless
    ``refresh``; a new result is written to the cache.
    """
    threads = threads or thread_count()
    if use_cache and not refresh:
        cached = cached_ceilings(threads)
        if cached is not None:
            return cached
    big = seconds_budget >= 2.0
    # Arrays ≥ 4x a typical 32 MB LLC so the copy measures DRAM, not cache.
    array_bytes = (256 if big else 32) * 2**20
    gemm_n = 2048 if big else 512
    share = seconds_budget / 3.5

    from threadpoolctl import threadpool_limits

    llc = llc_bytes()
    copy_runs = _copy_bandwidth(array_bytes, threads, share)
    # src + dst together take a quarter of the LLC, so both stay resident between copies.
    cache_array = max(256 * 2**10, (llc or 8 * 2**20) // 8)
    cache_runs = _copy_bandwidth(
        cache_array, threads, share / 3, repeat=max(1, 2**27 // cache_array)
    )
    with threadpool_limits(limits=threads, user_api="blas"):
        gemv_runs = _gemv_bandwidth(array_bytes, share)
        gemm_runs = _gemm_flops(gemm_n, share)
    ceilings = Ceilings(
        copy_gbs=float(np.median(copy_runs)),
        gemv_gbs=float(np.median(gemv_runs)),
        gemm_fp32_gflops=float(np.median(gemm_runs)),
        threads=threads,
        cache_gbs=float(np.median(cache_runs)),
        llc_bytes=llc,
        hostname=socket.gethostname(),
        cpu_model=cpu_model(),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        array_mb=array_bytes / 2**20,
        gemm_n=gemm_n,
        runs={
            "copy_gbs": copy_runs,
            "cache_gbs": cache_runs,
            "gemv_gbs": gemv_runs,
            "gemm_fp32_gflops": gemm_runs,
        },
    )
    if use_cache and big:
        # Small-budget results are cache-inflated; never let them stand in for the real thing.
        write_json_atomic(_cache_path(threads), ceilings.to_dict())
    return ceilings


def quick_copy_bandwidth(seconds: float = 1.0, *, threads: int | None = None) -> float:
    """Copy bandwidth (GB/s, read + write bytes) measured now, not cached.

    On a shared machine the bandwidth available changes with the neighbours' load, so a
    measurement taken right beside a benchmark gives the fairer "fraction of the bound".
    """
    return float(np.median(_copy_bandwidth(256 * 2**20, threads or thread_count(), seconds)))


def paired_bandwidth_fraction(
    fn: Callable[[], object],
    bytes_moved: float,
    *,
    rounds: int = 30,
    threads: int | None = None,
    copy_bytes: int | None = None,
) -> dict[str, float]:
    """Achieved bandwidth of ``fn`` as a fraction of copy bandwidth measured *interleaved*.

    Alternates one ``fn()`` (moving ``bytes_moved``) with one copy of ``copy_bytes`` (default:
    about ``bytes_moved`` of traffic, read + write) ``rounds`` times and takes the median of
    the per-round ratios, so both sides of each ratio saw the same neighbours. Returns
    ``{"fraction", "achieved_gbs", "copy_gbs"}`` (medians).
    """
    threads = threads or thread_count()
    half = int(copy_bytes or max(bytes_moved / 2, 64 * 2**20))
    n = half // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.zeros(n, dtype=np.float32)
    bounds = np.linspace(0, n, threads + 1).astype(np.int64)

    def copy_once() -> float:
        parts = [(bounds[i], bounds[i + 1]) for i in range(threads)]
        workers = [
            threading.Thread(target=np.copyto, args=(dst[lo:hi], src[lo:hi])) for lo, hi in parts
        ]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return 2 * src.nbytes / (time.perf_counter() - t0) / 1e9

    fn()
    copy_once()
    ratios, achieved, copies = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        got = bytes_moved / (time.perf_counter() - t0) / 1e9
        bw = copy_once()
        ratios.append(got / bw)
        achieved.append(got)
        copies.append(bw)
    return {
        "fraction": float(np.median(ratios)),
        "achieved_gbs": float(np.median(achieved)),
        "copy_gbs": float(np.median(copies)),
    }


def _repeat(
    fn: Callable[[], float], budget_s: float, min_runs: int = 3, max_runs: int = 25
) -> list[float]:
    """Call ``fn`` (returns a rate) at least ``min_runs`` times, more while budget remains."""
    out: list[float] = []
    t0 = time.perf_counter()
    while len(out) < max_runs and (len(out) < min_runs or time.perf_counter() - t0 < budget_s):
        out.append(fn())
    return out


def _copy_bandwidth(nbytes: int, threads: int, budget_s: float, repeat: int = 1) -> list[float]:
    n = nbytes // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.zeros(n, dtype=np.float32)  # touched now, so page faults stay out of the timing
    bounds = np.linspace(0, n, threads + 1).astype(np.int64)
    barrier = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        while True:
            barrier.wait()
            if stop.is_set():
                return
            for _ in range(repeat):
                np.copyto(dst[lo:hi], src[lo:hi])  # releases the GIL
            done.wait()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()

    def once() -> float:
        t0 = time.perf_counter()
        barrier.wait()
        done.wait()
        return 2 * src.nbytes * repeat / (time.perf_counter() - t0) / 1e9

    once()  # warm-up
    try:
        return _repeat(once, budget_s)
    finally:
        stop.set()
        barrier.wait()
        for t in pool:
            t.join()


def _gemv_bandwidth(nbytes: int, budget_s: float) -> list[float]:
    d = 256
    rows = nbytes // (4 * d)
    rng = np.random.default_rng(0)
    m = rng.random((rows, d), dtype=np.float32)
    v = rng.random(d, dtype=np.float32)

    def once() -> float:
        t0 = time.perf_counter()
        m @ v
        return m.nbytes / (time.perf_counter() - t0) / 1e9

    once()
    return _repeat(once, budget_s)


def _gemm_flops(n: int, budget_s: float) -> list[float]:
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)

    def once() -> float:
        t0 = time.perf_counter()
        a @ b
        return 2.0 * n**3 / (time.perf_counter() - t0) / 1e9

    once()
    return _repeat(once, budget_s)


def fraction_of_roofline(
    flops: float, bytes_moved: float, seconds: float, ceilings: Ceilings
) -> dict[str, float]:
    """How close a measured call came to this machine's limits.

    Returns ``bandwidth_fraction`` (achieved bytes/s ÷ copy bandwidth), ``compute_fraction``
    (achieved FLOP/s ÷ GEMM FLOP/s) and ``roofline_fraction`` (the roofline bound
    ``max(flops/peak, bytes/bw)`` ÷ measured seconds; 1.0 means at the physical limit).
    """
    if seconds <= 0 or not math.isfinite(seconds):
        raise ValueError(f"seconds must be positive, got {seconds}")
    bw = ceilings.mem_bandwidth_gbs * 1e9
    peak = ceilings.peak_flops_fp32
    bound = max(flops / peak, bytes_moved / bw)
    return {
        "bandwidth_fraction": bytes_moved / seconds / bw,
        "compute_fraction": flops / seconds / peak,
        "roofline_fraction": bound / seconds,
        "achieved_gbs": bytes_moved / seconds / 1e9,
        "achieved_gflops": flops / seconds / 1e9,
    }


def _main() -> None:  # pragma: no cover - manual tool
    import argparse

    p = argparse.ArgumentParser(description="Measure this machine's ceilings.")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--refresh", action="store_true")
    a = p.parse_args()
    configure_threads(a.threads or None)
    c = measure_ceilings(a.seconds, threads=a.threads or None, refresh=a.refresh)
    print(json.dumps(c.to_dict(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    _main()
