"""Analytic work of online stages: op counts (FLOPs, bytes moved) and the :class:`StageCost`
record that pairs them with measured seconds.

Ground floor on purpose: retrieval (``pipeline``) answers ``search_cost`` with these formulas,
the cost model (``cost.roofline``) projects with them, and the instruments (``bench``) measure
against them, so none of them has to climb to another's floor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


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
