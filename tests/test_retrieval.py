"""Retrievers: exact search is exactly brute force; ANN recall; configs and persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from frugalrec.data.synthetic import synthetic_vector_mixture
from frugalrec.pipeline.retrieval import (
    ExactConfig,
    ExactRetriever,
    HNSWConfig,
    HNSWRetriever,
    IVFPQConfig,
    IVFPQRetriever,
    Retriever,
    config_from_dict,
    make_retriever,
    recall_at_k,
)


def _brute_force(q: np.ndarray, x: np.ndarray, k: int, exclude=None):
    s = q @ x.T
    if exclude is not None:
        for i, e in enumerate(exclude):
            s[i, np.asarray(e, dtype=np.int64)] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    mix = synthetic_vector_mixture(64, rng, n_clusters=64)
    return mix.sample(5_000, rng), mix.sample(200, rng)


@pytest.mark.parametrize(
    ("n", "nq", "k", "cfg"),
    [
        (5_000, 1, 10, ExactConfig()),
        (5_000, 7, 10, ExactConfig(n_threads=2, block_items=1024)),
        (20_000, 64, 10, ExactConfig(n_threads=2)),
        (3_001, 1, 50, ExactConfig(block_items=512)),
        (9_000, 300, 5, ExactConfig(n_threads=1)),
    ],
)
def test_exact_equals_brute_force(n: int, nq: int, k: int, cfg: ExactConfig) -> None:
    rng = np.random.default_rng(n + nq)
    x = rng.standard_normal((n, 32), dtype=np.float32)
    q = rng.standard_normal((nq, 32), dtype=np.float32)
    ids, scores = ExactRetriever(cfg).build(x).search(q, k)
    ref_ids, ref_scores = _brute_force(q, x, k)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.shape == scores.shape == (nq, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_exact_exclusions_list_and_sparse() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4_000, 16), dtype=np.float32)
    q = rng.standard_normal((5, 16), dtype=np.float32)
    # exclude each query's true top 3 (the hardest case) plus random items
    top, _ = _brute_force(q, x, 3)
    excl = [np.concatenate([top[i], rng.choice(4_000, 30, replace=False)]) for i in range(5)]
    r = ExactRetriever(ExactConfig(block_items=1024)).build(x)
    ids, _ = r.search(q, 10, exclude=excl)
    ref, _ = _brute_force(q, x, 10, excl)
    np.testing.assert_array_equal(ids, ref)
    rows = np.repeat(np.arange(5), [len(e) for e in excl])
    mat = sp.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(excl))), shape=(5, 4_000))
    ids_sparse, _ = r.search(q, 10, exclude=mat)
    np.testing.assert_array_equal(ids_sparse, ref)
    single, _ = r.search(q[:1], 10, exclude=excl[:1])
    np.testing.assert_array_equal(single, ref[:1])


def test_exact_pads_when_k_exceeds_catalogue() -> None:
    x = np.eye(4, 8, dtype=np.float32)
    ids, scores = ExactRetriever().build(x).search(x[:2], 6, exclude=[[1], []])
    assert ids.shape == (2, 6)
    assert list(ids[0, :3]) == [0, 2, 3] and list(ids[0, 3:]) == [-1, -1, -1]
    assert np.isneginf(scores[0, 3:]).all()
    assert ids[1, 0] == 1 and ids[1, 4] == -1


def test_exact_rejects_bad_input() -> None:
    r = ExactRetriever().build(np.ones((10, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="dimension"):
        r.search(np.ones((1, 5), dtype=np.float32), 3)
    with pytest.raises(ValueError, match="k must be positive"):
        r.search(np.ones((1, 4), dtype=np.float32), 0)
    with pytest.raises(RuntimeError, match="not built"):
        ExactRetriever().search(np.ones((1, 4), dtype=np.float32), 3)


@pytest.mark.parametrize(
    "retriever",
    [
        HNSWRetriever(HNSWConfig(M=16, ef_construction=64, ef_search=64)),
        IVFPQRetriever(IVFPQConfig(nlist=64, m=16, nbits=6, nprobe=16, rerank=100)),
    ],
    ids=["hnsw", "ivfpq"],
)
def test_ann_recall(retriever: Retriever, clustered: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = clustered
    truth, _ = ExactRetriever().build(x).search(q, 10)
    ids, scores = retriever.build(x).search(q, 10)
    assert ids.shape == (len(q), 10) and ids.dtype == np.int64
    assert recall_at_k(ids, truth) >= 0.9
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # sorted, best first
    assert 0 < retriever.memory_bytes() < 10 * x.nbytes
    ops = retriever.search_cost(10, batch=4)
    assert ops.flops > 0 and ops.bytes_moved > 0
    # exclusions are honoured by over-fetching
    excl = [ids[i, :3] for i in range(len(q))]
    ids_ex, _ = retriever.search(q, 10, exclude=excl)
    for i in range(len(q)):
        assert not set(ids_ex[i]) & set(excl[i].tolist())


def test_ivfpq_without_rerank_and_float16(clustered: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = clustered
    plain = IVFPQRetriever(IVFPQConfig(nlist=32, m=8, nbits=6, nprobe=8, rerank=0)).build(x)
    half = IVFPQRetriever(
        IVFPQConfig(nlist=32, m=8, nbits=6, nprobe=8, rerank=100, rerank_dtype="float16")
    ).build(x)
    assert half.memory_bytes() - plain.memory_bytes() == x.size * 2
    truth, _ = ExactRetriever().build(x).search(q, 10)
    assert recall_at_k(half.search(q, 10)[0], truth) >= recall_at_k(plain.search(q, 10)[0], truth)
    with pytest.raises(ValueError, match="divisible"):
        IVFPQRetriever(IVFPQConfig(m=7)).build(x)


@pytest.mark.parametrize(
    "cfg",
    [ExactConfig(block_items=4096, n_threads=2), HNSWConfig(M=8, ef_search=32), IVFPQConfig()],
)
def test_config_json_round_trip(cfg) -> None:
    text = cfg.to_json()
    assert json.loads(text)["kind"] == cfg.kind
    back = type(cfg).from_json(text)
    assert back == cfg
    assert config_from_dict(json.loads(text)) == cfg
    assert make_retriever(json.loads(text)).config == cfg


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown retriever kind"):
        config_from_dict({"kind": "annoy"})
    with pytest.raises(ValueError, match="unknown field"):
        HNSWConfig.from_dict({"kind": "hnsw", "ef": 3})
    with pytest.raises(ValueError, match="does not match"):
        HNSWConfig.from_dict({"kind": "exact"})


@pytest.mark.parametrize(
    "cfg",
    [ExactConfig(), HNSWConfig(M=8), IVFPQConfig(nlist=16, m=8, nbits=5, nprobe=4, rerank=20)],
    ids=["exact", "hnsw", "ivfpq"],
)
def test_save_load_round_trip(cfg, tmp_path, clustered) -> None:
    x, q = clustered
    r = make_retriever(cfg).build(x[:2_000])
    before = r.search(q[:20], 5)
    path = r.save(tmp_path / cfg.kind)
    assert not list(path.glob("*.pkl"))
    loaded = Retriever.load(path)
    assert loaded.config == cfg and loaded.n_items == 2_000
    after = loaded.search(q[:20], 5)
    np.testing.assert_array_equal(before[0], after[0])


def test_recall_at_k_known_answer() -> None:
    found = np.array([[1, 2, 3], [4, 5, 6]])
    truth = np.array([[3, 2, 9], [7, 8, 9]])
    assert recall_at_k(found, truth) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(truth, truth) == 1.0


def test_blas_limit_is_restored_after_concurrent_searches() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50_000, 32), dtype=np.float32)
    r = ExactRetriever(ExactConfig(n_threads=2)).build(x)
    q = rng.standard_normal((8, 32), dtype=np.float32)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: r.search(q[i : i + 1], 5)[0], range(8)))
    ref, _ = _brute_force(q, x, 5)
    np.testing.assert_array_equal(np.concatenate(results), ref)
    assert blas_threads() == before


def test_pq_kmeans_codebooks_reduce_quantisation_error() -> None:
    from frugalrec.pipeline.retrieval import _pq_kmeans

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3_000, 16), dtype=np.float32)
    books = _pq_kmeans(x, m=4, ksub=16, iters=8, rng=np.random.default_rng(1))
    assert books.shape == (4, 16, 4) and books.dtype == np.float32

    def error(cb: np.ndarray) -> float:
        xs = x.reshape(len(x), 4, 4).transpose(1, 0, 2)  # [m, n, dsub]
        d2 = ((xs[:, :, None, :] - cb[:, None, :, :]) ** 2).sum(-1)  # [m, n, ksub]
        return float(d2.min(axis=2).sum())

    init = _pq_kmeans(x, m=4, ksub=16, iters=0, rng=np.random.default_rng(1))
    assert error(books) < 0.8 * error(init)
    tiny = _pq_kmeans(x[:5], m=4, ksub=16, iters=3, rng=rng)  # fewer points than centroids
    assert np.isfinite(tiny).all()
