"""Ray's overhead, measured, and what it implies: from what catalogue size a ``k``-worker
cluster pays off, and how many workers a deadline needs.

The model of one batch stage over ``n`` items (all times in seconds)::

    local(n)    = n / local_rate
    ray(n, k)   = cluster_start + actor_startup          # once: processes + model load
                + n * mb_per_item * serialise_s_per_mb    # driver <-> object store, serial
                + ceil(n / block_rows) * block_overhead_s / k   # scheduling per block
                + n / (k * worker_rate)                   # the work, spread over k actors

``worker_rate`` is one actor's items/s with one thread (measured as items / busy seconds on
the actors), ``local_rate`` the in-process rate with every core. Every figure comes from
:func:`measure_overhead` (written to ``docs/bench/ray_overhead.json``); the functions below are
pure, so ``plan-scale`` answers without starting anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RayOverhead:
    """Measured overhead figures for one stage (e.g. encoding with ``minilm/onnx-int8``)."""

    stage: str
    cluster_start_s: float
    actor_startup_s: float
    serialise_s_per_mb: float
    mb_per_item: float
    block_rows: int
    block_overhead_s: float
    worker_items_per_s: float
    local_items_per_s: float
    local_threads: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RayOverhead:
        names = set(cls.__dataclass_fields__)
        missing = names - set(d)
        if missing:
            raise ValueError(f"overhead figures lack {sorted(missing)}")
        return cls(**{k: d[k] for k in names})

    def fixed_s(self, warm: bool = False) -> float:
        """One-off seconds before the first item (``warm``: the cluster is already up)."""
        return (0.0 if warm else self.cluster_start_s) + self.actor_startup_s

    def per_item_s(self, workers: int) -> float:
        """Marginal seconds per item with ``workers`` actors."""
        k = max(1, int(workers))
        return (
            self.mb_per_item * self.serialise_s_per_mb
            + self.block_overhead_s / (self.block_rows * k)
            + 1.0 / (k * self.worker_items_per_s)
        )


def local_seconds(o: RayOverhead, n_items: float) -> float:
    """Predicted in-process seconds for ``n_items``."""
    return float(n_items) / o.local_items_per_s


def ray_seconds(o: RayOverhead, n_items: float, workers: int, warm: bool = False) -> float:
    """Predicted seconds for ``n_items`` on ``workers`` Ray actors."""
    return o.fixed_s(warm) + float(n_items) * o.per_item_s(workers)


def breakeven_items(o: RayOverhead, workers: int, warm: bool = False) -> float | None:
    """Smallest catalogue for which ``workers`` actors beat in-process; None if never (the
    cluster's marginal cost per item is no lower than local's)."""
    gain = 1.0 / o.local_items_per_s - o.per_item_s(workers)
    if gain <= 0:
        return None
    return o.fixed_s(warm) / gain


def workers_for_deadline(
    o: RayOverhead,
    n_items: float,
    deadline_s: float,
    warm: bool = False,
    max_workers: int = 100_000,
) -> int | None:
    """Fewest actors that process ``n_items`` within ``deadline_s``; None when no count can
    (the one-off and the serial driver-side costs alone exceed the deadline)."""
    budget = deadline_s - o.fixed_s(warm) - n_items * o.mb_per_item * o.serialise_s_per_mb
    if budget <= 0:
        return None
    # Remaining time per actor: n * (block_overhead / block_rows + 1 / rate) / k <= budget.
    per_actor = n_items * (o.block_overhead_s / o.block_rows + 1.0 / o.worker_items_per_s)
    k = max(1, math.ceil(per_actor / budget))
    return k if k <= max_workers else None


def scale_table(
    o: RayOverhead, n_items: float, workers: Sequence[int], warm: bool = False
) -> list[dict[str, Any]]:
    """One row per worker count: predicted seconds, speed-up over local, break-even size."""
    base = local_seconds(o, n_items)
    rows = []
    for k in workers:
        t = ray_seconds(o, n_items, k, warm)
        be = breakeven_items(o, k, warm)
        rows.append(
            {
                "workers": int(k),
                "seconds": t,
                "speedup_vs_local": base / t,
                "pays_off_from_items": None if be is None else math.ceil(be),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Measurement


def measure_serialisation(sizes_mb: Sequence[float] = (1, 8, 32), repeats: int = 3) -> float:
    """Seconds per MB to ship a float32 array to a Ray task and its result back (median
    over ``repeats``, slope of a least-squares line through ``sizes_mb``). Ray must be up."""
    import ray

    @ray.remote(num_cpus=0)
    def echo(x: np.ndarray) -> np.ndarray:
        return x + np.float32(0)

    ray.get(echo.remote(np.zeros(4, np.float32)))  # a worker up before timing
    xs, ys = [], []
    for mb in sizes_mb:
        arr = np.ones(int(mb * 2**20 / 4), dtype=np.float32)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ray.get(echo.remote(arr))
            times.append(time.perf_counter() - t0)
        xs.append(2 * float(mb))  # there and back
        ys.append(float(np.median(times)))
    slope = float(np.polyfit(xs, ys, 1)[0]) if len(xs) > 1 else ys[0] / xs[0]
    return max(slope, 0.0)


def overhead_from_runs(
    stage: str,
    *,
    n_items: int,
    local_seconds_: float,
    local_threads: int,
    cluster_start_s: float,
    ray_run: Mapping[str, Any],
    serialise_s_per_mb: float,
    mb_per_item: float,
) -> RayOverhead:
    """Figures from one local run and one Ray run of the same stage on the same items.

    ``ray_run`` is ``RayEngine.last_run``: wall, summed actor busy seconds, actor start-ups,
    block count. What the wall time holds beyond start-up, work and serialisation is charged
    to scheduling, per block.
    """
    workers = int(ray_run["workers"])
    startup = max(ray_run["startup_s"], default=0.0)
    busy = float(ray_run["busy_s"])
    worker_rate = n_items / (busy / workers) / workers
    serial = n_items * mb_per_item * serialise_s_per_mb
    rest = float(ray_run["wall_s"]) - startup - busy / workers - serial
    blocks = int(ray_run["blocks"])
    return RayOverhead(
        stage=stage,
        cluster_start_s=float(cluster_start_s),
        actor_startup_s=float(startup),
        serialise_s_per_mb=float(serialise_s_per_mb),
        mb_per_item=float(mb_per_item),
        block_rows=int(ray_run["block_rows"]),
        block_overhead_s=max(rest, 0.0) * workers / max(blocks, 1),
        worker_items_per_s=float(worker_rate),
        local_items_per_s=n_items / local_seconds_,
        local_threads=int(local_threads),
    )
