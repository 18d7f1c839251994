"""Top-k retrieval by inner product: exact (blocked numpy) and approximate (faiss HNSW, IVF-PQ).

Every retriever follows one contract::

    r = ExactRetriever(ExactConfig()).build(item_vectors)      # float32 [n, d]
    ids, scores = r.search(query_vectors, k=10, exclude=seen)  # int64 [q, k], float32 [q, k]

Vectors are expected L2-normalised, so inner product is cosine similarity. Results are sorted
by descending score, ties broken by the fixed tie order of
:func:`frugalrec.models.base.top_k`; rows with fewer than ``k`` hits (``k`` larger
than the catalogue, or everything excluded) are padded with id ``-1`` and score ``-inf``.
``exclude`` is a scipy sparse ``[q, n_items]`` matrix whose stored entries are excluded, or a
sequence of ``q`` integer arrays of item ids.

Configurations are dataclasses that round-trip through JSON (``to_json``/``from_json``,
:func:`config_from_dict`), and retrievers save as JSON + ``.npy``/faiss files, never pickles.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from frugalrec._threads import thread_count
from frugalrec.models.base import top_k
from frugalrec.opcount import OpCount, exact_topk_cost, hnsw_search_cost, ivfpq_search_cost

_C = TypeVar("_C", bound="RetrieverConfig")

# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


@dataclass
class RetrieverConfig:
    """Base of the typed retriever configs; ``kind`` names the implementation."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"config kind {kind!r} does not match {cls.__name__} ({cls.kind!r})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls: type[_C], text: str) -> _C:
        return cls.from_dict(json.loads(text))


@dataclass
class ExactConfig(RetrieverConfig):
    """Exact search. ``block_items`` 0 = automatic; ``n_threads`` 0 = ``thread_count()``."""

    kind: ClassVar[str] = "exact"
    block_items: int = 0
    n_threads: int = 0


@dataclass
class HNSWConfig(RetrieverConfig):
    """faiss ``IndexHNSWFlat`` (inner product): graph degree ``M`` (base layer has ``2M``)."""

    kind: ClassVar[str] = "hnsw"
    M: int = 32
    ef_construction: int = 80
    ef_search: int = 64


@dataclass
class IVFPQConfig(RetrieverConfig):
    """faiss ``IndexIVFPQ`` (inner product) with optional exact re-rank.

    ``nlist`` 0 = ``2 * sqrt(n)`` rounded to a power of two; ``m`` sub-quantisers of ``nbits``
    bits (``d`` must be divisible by ``m``); ``rerank`` > 0 fetches that many PQ candidates and
    re-scores them exactly against the original vectors (kept in memory as ``rerank_dtype``,
    ``float32`` or ``float16``); ``train_size`` caps the coarse k-means training sample and
    ``train_iters`` is the k-means iterations of both quantisers (faiss defaults to 25; 10
    loses little recall and cuts the build at 1M items by more than half).
    """

    kind: ClassVar[str] = "ivfpq"
    nlist: int = 0
    m: int = 32
    nbits: int = 8
    nprobe: int = 32
    rerank: int = 100
    rerank_dtype: str = "float32"
    train_size: int = 100_000
    train_iters: int = 10
    seed: int = 0


_CONFIGS: dict[str, type[RetrieverConfig]] = {
    c.kind: c for c in (ExactConfig, HNSWConfig, IVFPQConfig)
}


def config_from_dict(data: Mapping[str, Any]) -> RetrieverConfig:
    """The config named by ``data["kind"]`` (``exact``, ``hnsw``, ``ivfpq``)."""
    kind = data.get("kind")
    if kind not in _CONFIGS:
        raise ValueError(f"unknown retriever kind {kind!r}; known: {sorted(_CONFIGS)}")
    return _CONFIGS[str(kind)].from_dict(data)


def make_retriever(config: RetrieverConfig | Mapping[str, Any]) -> Retriever:
    """An unbuilt retriever for ``config`` (a config object or its dict)."""
    if not isinstance(config, RetrieverConfig):
        config = config_from_dict(config)
    return _RETRIEVERS[config.kind](config)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _as_matrix(x: Any, name: str, d: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {a.shape}")
    if d is not None and a.shape[1] != d:
        raise ValueError(f"{name} has dimension {a.shape[1]}, the index has {d}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _exclusion_pairs(exclude: Any, n_queries: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` int64 of excluded (query, item) pairs, sorted by column."""
    if exclude is None:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    if hasattr(exclude, "tocoo"):
        if exclude.shape[0] != n_queries:
            raise ValueError(f"exclude has {exclude.shape[0]} rows, expected {n_queries}")
        coo = exclude.tocoo()
        rows = coo.row.astype(np.int64)
        cols = coo.col.astype(np.int64)
    else:
        seqs = list(exclude)
        if len(seqs) != n_queries:
            raise ValueError(f"exclude has {len(seqs)} entries, expected {n_queries}")
        arrays = [np.asarray(s, dtype=np.int64).ravel() for s in seqs]
        lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        rows = np.repeat(np.arange(n_queries, dtype=np.int64), lengths)
        cols = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
    keep = (cols >= 0) & (cols < n_items)
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(cols, kind="stable")
    return rows[order], cols[order]


def _sort_rows(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of each row through :func:`~frugalrec.models.base.top_k` (its tie policy);
    pads to ``k`` with (-1, -inf) and marks non-finite or padded hits as (-1, -inf)."""
    ids, scores = top_k(scores, k, ids)
    invalid = ~np.isfinite(scores) | (ids < 0)
    ids = np.where(invalid, -1, ids)
    scores = np.where(invalid, -np.inf, scores).astype(np.float32)
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ids.astype(np.int64, copy=False), scores


def _filter_excluded(
    ids: np.ndarray, scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_items: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop excluded (row, id) pairs from over-fetched ANN results, keep the best ``k``."""
    if rows.size:
        q = ids.shape[0]
        keys = np.arange(q, dtype=np.int64)[:, None] * n_items + ids
        banned = np.isin(keys, rows * n_items + cols)
        scores = np.where(banned, -np.inf, scores)
    return _sort_rows(ids, scores, k)


class _BlasLimiter:
    """Caps BLAS to one thread while our own pool runs (no nested oversubscription).

    threadpoolctl's ``threadpool_limits`` rescans loaded libraries on every call (~0.5 ms);
    a cached controller makes the switch ~10 µs, cheap enough for a per-request path. The
    limit is process-wide, so concurrent searches share one reference-counted limit: the first
    to enter sets it, the last to leave restores the previous setting (nested limits taken and
    released out of order would otherwise leave BLAS stuck at one thread).
    """

    _lock = threading.Lock()
    _controller: Any = None
    _active = 0
    _restore: Any = None

    @classmethod
    @contextlib.contextmanager
    def limit(cls) -> Iterator[None]:
        with cls._lock:
            if cls._controller is None:
                from threadpoolctl import ThreadpoolController

                cls._controller = ThreadpoolController()
            if cls._active == 0:
                cls._restore = cls._controller.limit(limits=1, user_api="blas")
            cls._active += 1
        try:
            yield
        finally:
            with cls._lock:
                cls._active -= 1
                if cls._active == 0 and cls._restore is not None:
                    cls._restore.restore_original_limits()
                    cls._restore = None


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="frugalrec-exact")
        return _POOLS[n]


# ---------------------------------------------------------------------------------------------
# Retrievers
# ---------------------------------------------------------------------------------------------


class Retriever(ABC):
    """Inner-product top-k retrieval over a fixed set of item vectors."""

    config: RetrieverConfig
    config_class: ClassVar[type[RetrieverConfig]] = RetrieverConfig

    def __init__(self, config: RetrieverConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    @property
    def kind(self) -> str:
        return self.config.kind

    @abstractmethod
    def build(self, vectors: np.ndarray) -> Retriever:
        """Index ``vectors`` (float32 [n_items, d], L2-normalised). Returns ``self``."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, exclude: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items per query: ids int64 [q, k], scores float32 [q, k]."""

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes the built index holds in memory."""

    @abstractmethod
    def search_cost(self, k: int = 10, batch: int = 1) -> OpCount:
        """Analytic FLOPs and bytes moved by one ``search`` call of ``batch`` queries."""

    @property
    def n_items(self) -> int:
        return int(self._require("n_items_"))

    @property
    def dim(self) -> int:
        return int(self._require("d_"))

    def _require(self, attr: str) -> Any:
        if not hasattr(self, attr):
            raise RuntimeError(f"{type(self).__name__} is not built; call build(vectors) first")
        return getattr(self, attr)

    def _check_k(self, k: int) -> int:
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        return int(k)

    # -- persistence: config.json + one data file, never a pickle --

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and the index into directory ``path``; returns it."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(self.config.to_json() + "\n")
        self._save_data(out)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Retriever:
        """Load a retriever written by :meth:`save` (any kind)."""
        src = Path(path)
        config = config_from_dict(json.loads((src / "config.json").read_text()))
        r = make_retriever(config)
        r._load_data(src)
        return r

    @abstractmethod
    def _save_data(self, out: Path) -> None: ...

    @abstractmethod
    def _load_data(self, src: Path) -> None: ...


class ExactRetriever(Retriever):
    """Exact inner-product top-k: blocked matmul with an in-cache top-k per block.

    Items are split into blocks; a pool of ``n_threads`` workers (BLAS capped to one thread
    each, so the pools do not nest) pulls blocks from a shared counter, which keeps both cores
    busy even when a neighbour process steals one. Per block, the ``[q, B]`` scores never
    leave cache: the block is cut into ``G`` strided groups, and the top ``k`` items of a row
    must lie in the ``k`` groups with the highest maxima (each top-k item lifts its group's
    max above the k-th score, and at most ``k`` groups can do that). So a cheap SIMD max over
    groups plus a tiny ``argpartition`` replaces an ``argpartition`` over every score.
    RAM traffic is the item matrix once per call: at batch 1 this is a bandwidth-bound GEMV.
    Every selection goes through :func:`~frugalrec.models.base.top_k`, so ties resolve by its
    policy and the top-10 is the prefix of the top-20.
    """

    config: ExactConfig
    config_class = ExactConfig
    _GROUP = 32  # items per group for the group-max filter

    def build(self, vectors: np.ndarray) -> ExactRetriever:
        x = _as_matrix(vectors, "vectors")
        self.vectors_ = x
        self.n_items_, self.d_ = x.shape
        return self

    def memory_bytes(self) -> int:
        return int(self._require("vectors_").nbytes)

    def search_cost(self, k: int = 10, batch: int = 1) -> OpCount:
        return exact_topk_cost(self.n_items, self.dim, k, batch)

    def _block_items(self, q: int, threads: int) -> int:
        if self.config.block_items > 0:
            return int(self.config.block_items)
        # Scores of a block ([q, B] float32) should stay in L2 (~1 MB per core), but blocks
        # must stay large enough that per-block Python overhead (~20 µs) is noise and GEMM
        # runs efficiently, and numerous enough (>= 8 per thread) for load balancing.
        by_cache = (256 * 1024) // max(q, 1)
        by_balance = math.ceil(self.n_items_ / (8 * threads))
        b = max(8192 if q == 1 else 1024, min(by_cache, by_balance, 65_536))
        return int(math.ceil(b / self._GROUP) * self._GROUP)

    def search(
        self, queries: np.ndarray, k: int, exclude: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        x = self._require("vectors_")
        k = self._check_k(k)
        qm = _as_matrix(queries, "queries", self.d_)
        nq, n = qm.shape[0], self.n_items_
        kk = min(k, n)
        rows, cols = _exclusion_pairs(exclude, nq, n)
        threads = self.config.n_threads or thread_count()
        if nq * n * self.d_ < self._POOL_MIN_MACS:
            threads = 1  # a pool hand-off costs more than the whole search
        block = self._block_items(nq, threads)
        starts = list(range(0, n, block))
        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(starts)

        def run_block(i: int) -> None:
            s = starts[i]
            e = min(s + block, n)
            if nq == 1:
                results[i] = self._block_topk_1(qm[0], x, s, e, kk, cols)
            else:
                results[i] = self._block_topk(qm, x, s, e, kk, rows, cols)

        with _BlasLimiter.limit():
            if threads <= 1 or len(starts) <= 1:
                for i in range(len(starts)):
                    run_block(i)
            else:
                _run_dynamic(run_block, len(starts), threads)
        ids = np.concatenate([r[0] for r in results if r is not None], axis=-1)
        scores = np.concatenate([r[1] for r in results if r is not None], axis=-1)
        return _sort_rows(ids.reshape(nq, -1), scores.reshape(nq, -1), k)

    _POOL_MIN_MACS = 4_000_000

    def _block_topk_1(
        self, q0: np.ndarray, x: np.ndarray, s: int, e: int, k: int, cols: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One query: the latency path, in 1-D numpy (no per-call 2-D indexing overhead)."""
        sc = x[s:e] @ q0  # GEMV: the bandwidth-bound kernel
        if cols.size:
            lo, hi = np.searchsorted(cols, [s, e])
            sc[cols[lo:hi] - s] = -np.inf
        b = e - s
        g = self._GROUP
        if b <= k or b % g or k * g >= b:
            ids, vals = top_k(sc[None, :], k, np.arange(s, e, dtype=np.int64))
            return ids[0], vals[0]
        width = b // g
        grouped = sc.reshape(g, width)
        gmax = grouped.max(axis=0)
        # Every group that holds a top-k item has a max >= the k-th largest group max (else
        # k groups would each hold an item above it); ">=" keeps groups tied at that max, so
        # the filter is exact under ties too.
        kth = np.partition(gmax, width - k)[width - k]
        top_groups = np.flatnonzero(gmax >= kth)
        cand = grouped[:, top_groups].ravel()
        cand_ids = (np.arange(g, dtype=np.int64)[:, None] * width + top_groups).ravel() + s
        ids, vals = top_k(cand[None, :], k, cand_ids)
        return ids[0], vals[0]

    def _block_topk(
        self,
        qm: np.ndarray,
        x: np.ndarray,
        s: int,
        e: int,
        k: int,
        rows: np.ndarray,
        cols: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        nq = qm.shape[0]
        sc = qm @ x[s:e].T
        if rows.size:
            lo, hi = np.searchsorted(cols, [s, e])
            if hi > lo:
                sc[rows[lo:hi], cols[lo:hi] - s] = -np.inf
        b = e - s
        g = self._GROUP
        block_ids = np.arange(s, e, dtype=np.int64)
        if b <= k or b % g or k * g >= b:
            return top_k(sc, k, block_ids)
        width = b // g
        # Strided groups: item j is in group j % width, so the max is a SIMD-friendly
        # elementwise max over g rows of length `width`.
        grouped = sc.reshape(nq, g, width)
        gmax = grouped.max(axis=1)  # [nq, width]
        top_groups = np.argpartition(gmax, width - k, axis=1)[:, width - k :]  # [nq, k]
        kth = np.take_along_axis(gmax, top_groups, axis=1).min(axis=1, keepdims=True)
        if ((gmax >= kth).sum(axis=1) > k).any():
            # A group max tied at the k-th place: the k groups argpartition kept may miss an
            # item the tie policy prefers, so select over the whole block.
            return top_k(sc, k, block_ids)
        cand = np.take_along_axis(grouped, top_groups[:, None, :], axis=2)  # [nq, g, k]
        cand_ids = np.arange(g, dtype=np.int64)[None, :, None] * width + top_groups[:, None, :]
        return top_k(cand.reshape(nq, g * k), k, cand_ids.reshape(nq, g * k) + s)

    def _save_data(self, out: Path) -> None:
        np.save(out / "vectors.npy", self._require("vectors_"))

    def _load_data(self, src: Path) -> None:
        self.build(np.load(src / "vectors.npy", mmap_mode=None))


def _run_dynamic(fn: Callable[[int], None], n_tasks: int, threads: int) -> None:
    """Run ``fn(0..n_tasks-1)`` on ``threads`` workers pulling indices from a shared counter."""
    lock = threading.Lock()
    nxt = [0]

    def worker() -> None:
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n_tasks:
                return
            fn(i)

    pool = _pool(threads)
    futures = [pool.submit(worker) for _ in range(min(threads, n_tasks))]
    for f in futures:
        f.result()


def _faiss() -> Any:
    import faiss

    faiss.omp_set_num_threads(thread_count())
    return faiss


class HNSWRetriever(Retriever):
    """faiss ``IndexHNSWFlat`` with inner product; memory is the vectors plus the graph."""

    config: HNSWConfig
    config_class = HNSWConfig

    def build(self, vectors: np.ndarray) -> HNSWRetriever:
        faiss = _faiss()
        x = _as_matrix(vectors, "vectors")
        c = self.config
        index = faiss.IndexHNSWFlat(x.shape[1], int(c.M), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(c.ef_construction)
        index.add(x)
        self.index_ = index
        self.n_items_, self.d_ = x.shape
        return self

    def memory_bytes(self) -> int:
        return faiss_index_bytes(self._require("index_"))

    def search_cost(self, k: int = 10, batch: int = 1) -> OpCount:
        c = self.config
        return hnsw_search_cost(self.n_items, self.dim, c.M, c.ef_search, k, batch)

    def search(
        self, queries: np.ndarray, k: int, exclude: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        index = self._require("index_")
        k = self._check_k(k)
        qm = _as_matrix(queries, "queries", self.d_)
        rows, cols = _exclusion_pairs(exclude, qm.shape[0], self.n_items_)
        fetch = _fetch_count(k, rows, qm.shape[0], self.n_items_)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(int(self.config.ef_search), fetch)
        scores, ids = index.search(qm, fetch, params=params)
        return _filter_excluded(ids, scores, rows, cols, self.n_items_, k)

    def _save_data(self, out: Path) -> None:
        _faiss().write_index(self._require("index_"), str(out / "index.faiss"))

    def _load_data(self, src: Path) -> None:
        self.index_ = _faiss().read_index(str(src / "index.faiss"))
        self.n_items_, self.d_ = int(self.index_.ntotal), int(self.index_.d)


def _fetch_count(k: int, rows: np.ndarray, nq: int, n_items: int) -> int:
    """Over-fetch so that ``k`` results survive the exclusions of the worst row."""
    most = int(np.bincount(rows, minlength=nq).max()) if rows.size else 0
    return min(k + most, n_items)


class IVFPQRetriever(Retriever):
    """faiss ``IndexIVFPQ`` (inner product), optionally re-ranked exactly.

    PQ distances are coarse (``m`` bytes per vector), so with ``rerank`` > 0 the index returns
    ``rerank`` candidates per query and they are re-scored with the original vectors; the
    reported memory then includes that copy (``n * d * 4`` bytes, or half with float16).
    """

    config: IVFPQConfig
    config_class = IVFPQConfig

    def _nlist(self, n: int) -> int:
        if self.config.nlist > 0:
            return int(self.config.nlist)
        # ~2 sqrt(n) lists: coarse cost (nlist * d) and scan cost (nprobe * n / nlist) balance
        # near sqrt(n); a power of two keeps configs readable. Every list gets >= 39 points.
        return int(max(1, min(n // 39, 2 ** round(math.log2(2 * math.sqrt(n))))))

    def build(self, vectors: np.ndarray) -> IVFPQRetriever:
        faiss = _faiss()
        x = _as_matrix(vectors, "vectors")
        n, d = x.shape
        c = self.config
        if d % c.m:
            raise ValueError(f"d={d} is not divisible by m={c.m}")
        if c.rerank_dtype not in ("float32", "float16"):
            raise ValueError(f"rerank_dtype must be float32 or float16, got {c.rerank_dtype!r}")
        nlist = self._nlist(n)
        rng = np.random.default_rng(c.seed)
        n_train = min(n, max(int(c.train_size), 39 * nlist, 2 ** int(c.nbits) * 39))
        train = x if n_train >= n else x[np.sort(rng.choice(n, n_train, replace=False))]
        # Coarse quantiser first, on all threads: spherical k-means, since vectors are unit
        # norm and lists are probed by inner product.
        quantizer = faiss.IndexFlatIP(d)
        clus = faiss.Clustering(d, nlist)
        clus.niter = int(c.train_iters)
        clus.seed = int(c.seed)
        clus.spherical = True
        clus.train(train, quantizer)
        index = faiss.IndexIVFPQ(
            quantizer, d, nlist, int(c.m), int(c.nbits), faiss.METRIC_INNER_PRODUCT
        )
        # The PQ codebooks are fitted here rather than by faiss: faiss runs one k-means per
        # sub-space, each in d/m dims where it manages ~1 GFLOP/s (and its OpenMP regions are
        # slower with 2 threads than 1 on this box); one batched numpy k-means over all m
        # sub-spaces is ~10x faster. 64 points per centroid is plenty for re-ranked codes.
        pq_n = min(len(train), 64 * 2 ** int(c.nbits))
        pq_train = train[np.sort(rng.choice(len(train), pq_n, replace=False))]
        _, assign = quantizer.search(pq_train, 1)
        residuals = pq_train - quantizer.reconstruct_n(0, nlist)[assign[:, 0]]
        with _BlasLimiter.limit():  # many small GEMMs: BLAS threads only add sync cost
            codebooks = _pq_kmeans(residuals, int(c.m), 2 ** int(c.nbits), int(c.train_iters), rng)
        faiss.copy_array_to_vector(codebooks.ravel(), index.pq.centroids)
        index.is_trained = True
        index.add(x)
        index.nprobe = int(c.nprobe)
        self.index_ = index
        self.nlist_ = nlist
        self.rerank_vectors_ = x.astype(c.rerank_dtype, copy=False) if c.rerank > 0 else None
        self.n_items_, self.d_ = n, d
        return self

    def memory_bytes(self) -> int:
        extra = self.rerank_vectors_.nbytes if self.rerank_vectors_ is not None else 0
        return faiss_index_bytes(self._require("index_")) + int(extra)

    def search_cost(self, k: int = 10, batch: int = 1) -> OpCount:
        c = self.config
        return ivfpq_search_cost(
            self.n_items,
            self.dim,
            self.nlist_,
            c.nprobe,
            c.m,
            c.nbits,
            k,
            batch,
            rerank=c.rerank if self.rerank_vectors_ is not None else 0,
        )

    def search(
        self, queries: np.ndarray, k: int, exclude: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        index = self._require("index_")
        k = self._check_k(k)
        qm = _as_matrix(queries, "queries", self.d_)
        nq = qm.shape[0]
        rows, cols = _exclusion_pairs(exclude, nq, self.n_items_)
        fetch = _fetch_count(k, rows, nq, self.n_items_)
        vecs = self.rerank_vectors_
        if vecs is not None:
            fetch = min(max(fetch, int(self.config.rerank)), self.n_items_)
        params = faiss.SearchParametersIVF()
        params.nprobe = int(self.config.nprobe)
        scores, ids = index.search(qm, fetch, params=params)
        if vecs is not None:
            # Exact re-score of the candidates: one batched gather + dot per query row.
            safe = np.where(ids < 0, 0, ids)
            cand = vecs[safe]  # [nq, fetch, d]
            scores = np.einsum(
                "qfd,qd->qf", cand, qm.astype(vecs.dtype, copy=False), dtype=np.float32
            )
            scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return _filter_excluded(ids, scores, rows, cols, self.n_items_, k)

    def _save_data(self, out: Path) -> None:
        _faiss().write_index(self._require("index_"), str(out / "index.faiss"))
        if self.rerank_vectors_ is not None:
            np.save(out / "rerank_vectors.npy", self.rerank_vectors_)

    def _load_data(self, src: Path) -> None:
        faiss = _faiss()
        self.index_ = faiss.read_index(str(src / "index.faiss"))  # already the concrete class
        self.nlist_ = int(self.index_.nlist)
        path = src / "rerank_vectors.npy"
        self.rerank_vectors_ = np.load(path) if path.exists() else None
        self.n_items_, self.d_ = int(self.index_.ntotal), int(self.index_.d)


def _pq_kmeans(
    x: np.ndarray, m: int, ksub: int, iters: int, rng: np.random.Generator
) -> np.ndarray:
    """Product-quantiser codebooks: Lloyd's k-means in all ``m`` sub-spaces at once.

    ``x`` float32 [n, d]; returns float32 [m, ksub, d/m] (faiss's centroid layout).
    Empty clusters are re-seeded from random points of their sub-space.
    """
    n, d = x.shape
    dsub = d // m
    xs = np.ascontiguousarray(x.reshape(n, m, dsub).transpose(1, 0, 2))  # [m, n, dsub]
    if n < ksub:
        # fewer points than centroids: repeat points (faiss would warn and do the same)
        xs = xs[:, rng.integers(0, n, size=ksub), :]
        n = ksub
    cent = xs[:, rng.choice(n, ksub, replace=False), :].copy()  # [m, ksub, dsub]
    offsets = (np.arange(m, dtype=np.int64) * ksub)[:, None]
    # Small, reused distance blocks (~4 MB): fresh multi-MB temporaries per chunk cost more in
    # page faults than the arithmetic (measured 10x slower in this VM).
    chunk = max(1, (1 << 20) // (m * ksub))
    buf = np.empty((m, chunk, ksub), dtype=np.float32)
    assign = np.empty((m, n), dtype=np.int64)
    for _ in range(iters):
        c2 = np.einsum("mkd,mkd->mk", cent, cent)[:, None, :]
        cent_t = np.ascontiguousarray(cent.transpose(0, 2, 1))  # [m, dsub, ksub]
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            b = buf[:, : hi - lo]
            np.matmul(xs[:, lo:hi], cent_t, out=b)
            b *= -2.0
            b += c2  # |c|^2 - 2 x.c: the squared distance up to the per-point |x|^2
            np.argmin(b, axis=2, out=assign[:, lo:hi])
        flat = (assign + offsets).ravel()
        counts = np.bincount(flat, minlength=m * ksub).astype(np.float64)
        sums = np.stack(
            [
                np.bincount(flat, weights=xs[:, :, j].ravel(), minlength=m * ksub)
                for j in range(dsub)
            ],
            axis=1,
        )
        new = (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            new[empty] = xs[empty // ksub, rng.integers(0, n, size=empty.size)]
        cent = new.reshape(m, ksub, dsub)
    return np.ascontiguousarray(cent, dtype=np.float32)


_RETRIEVERS: dict[str, type[Retriever]] = {
    "exact": ExactRetriever,
    "hnsw": HNSWRetriever,
    "ivfpq": IVFPQRetriever,
}


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


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of ``|found ∩ truth| / |truth|`` (ids int [q, k]; -1 ignored)."""
    found = np.asarray(found)
    truth = np.asarray(truth)
    if found.shape[0] != truth.shape[0]:
        raise ValueError("found and truth must have the same number of rows")
    q = truth.shape[0]
    n_max = int(max(found.max(initial=0), truth.max(initial=0))) + 2
    row = np.arange(q, dtype=np.int64)[:, None] * n_max
    f = (row + found)[found >= 0]
    t = (row + truth)[truth >= 0]
    hits = np.isin(t, f)
    per_row = np.bincount(np.nonzero(truth >= 0)[0], weights=hits, minlength=q)
    denom = np.maximum((truth >= 0).sum(axis=1), 1)
    return float(np.mean(per_row / denom))


__all__ = [
    "ExactConfig",
    "ExactRetriever",
    "HNSWConfig",
    "HNSWRetriever",
    "IVFPQConfig",
    "IVFPQRetriever",
    "Retriever",
    "RetrieverConfig",
    "config_from_dict",
    "make_retriever",
    "recall_at_k",
]
