"""One exact top-k, one tie policy: the result for tied scores does not depend on k, and every
exact selection (models, exact retrieval, ANN merge, the pipeline) agrees with it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from frugalrec.models.base import tie_rank, top_k
from frugalrec.pipeline.retrieval import ExactConfig, ExactRetriever


def _reference(scores: np.ndarray, k: int, items: np.ndarray) -> list[list[int]]:
    """Sort every row fully by (score desc, tie rank asc) in Python: the policy, spelled out."""
    out = []
    for row, its in zip(scores, items, strict=True):
        pairs = sorted(
            zip(row.tolist(), its.tolist(), strict=True),
            key=lambda p: (-p[0], int(tie_rank(np.array([p[1]]))[0])),
        )
        out.append([it for _, it in pairs[:k]])
    return out


# Few distinct values so that most rows are full of ties; -inf and -0.0/+0.0 included.
_VALUES = st.sampled_from([-np.inf, -1.5, -0.0, 0.0, 0.25, 0.25, 1.0, 3.0])


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 40)), elements=_VALUES),
    st.integers(1, 45),
    st.integers(1, 45),
)
def test_top_k_is_a_prefix_of_every_larger_k(scores, k1, k2):
    small, large = sorted((k1, k2))
    ids_s, vals_s = top_k(scores, small)
    ids_l, vals_l = top_k(scores, large)
    assert np.array_equal(ids_s, ids_l[:, : ids_s.shape[1]])
    assert np.array_equal(vals_s, vals_l[:, : vals_s.shape[1]])
    items = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    assert ids_l.tolist() == _reference(scores, large, items)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 30)), elements=_VALUES),
    st.integers(1, 35),
    st.randoms(use_true_random=False),
)
def test_tie_policy_follows_item_ids_not_columns(scores, k, rnd):
    """With candidates the tie-break is the item's, so a restricted or shuffled candidate list
    ranks tied items as the full catalogue does."""
    m = scores.shape[1]
    perm = np.array(rnd.sample(range(1000), m), dtype=np.int64)  # item ids of the columns
    ids, _ = top_k(scores, k, perm)
    assert ids.tolist() == _reference(scores, k, np.broadcast_to(perm, scores.shape))
    # per-row candidates (the ANN merge path) give the same answer
    ids2, _ = top_k(scores, k, np.broadcast_to(perm, scores.shape).copy())
    assert np.array_equal(ids, ids2)


def test_all_ties_select_by_fixed_rank_not_by_k():
    scores = np.zeros((1, 500), np.float32)
    top10, _ = top_k(scores, 10)
    top20, _ = top_k(scores, 20)
    assert top10[0].tolist() == top20[0, :10].tolist()
    # the rank is not the index: ml-100k-like catalogues put popular items at low ids
    assert top10[0].tolist() != list(range(10))


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_exact_retriever_matches_top_k_under_ties(batch, k):
    """Blocked exact search (group-max filter, thread pool, merge) returns what top_k over
    the full score matrix returns, also when many scores tie (duplicated item vectors)."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 8)).astype(np.float32)
    items = base[rng.integers(0, 40, size=20_000)]  # every vector ~500 times: heavy ties
    q = rng.standard_normal((batch, 8)).astype(np.float32)
    r = ExactRetriever(ExactConfig(block_items=2048, n_threads=2)).build(items)
    seen = sp.random(batch, len(items), density=0.01, format="csr", random_state=1)
    ids, scores = r.search(q, k, exclude=seen)
    full = q @ items.T
    full[seen.nonzero()] = -np.inf
    ref_ids, ref_scores = top_k(full, k)
    assert np.array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    ids_small, _ = r.search(q, max(1, k // 2), exclude=seen)
    assert np.array_equal(ids_small, ids[:, : ids_small.shape[1]])


def test_dot_product_model_serves_exact_through_the_exact_retriever():
    from frugalrec.data.dataset import build_dataset
    from frugalrec.data.synthetic import synthetic_interactions
    from frugalrec.models.registry import model_class
    from frugalrec.pipeline.config import PipelineConfig
    from frugalrec.pipeline.recommend import RecommendPipeline

    (df,) = synthetic_interactions(60, 80, 1500, np.random.default_rng(0))
    ds = build_dataset(
        "shop", "u" + df["user"].astype(str), "sku-" + df["item"].astype(str), None, None
    )
    cls = model_class("als")
    model = cls(cls.config_cls.from_dict({"factors": 8, "iterations": 3})).fit(ds)
    pipe = RecommendPipeline(PipelineConfig(model="als", retrieval="exact"), model).build()
    assert isinstance(pipe.retriever, ExactRetriever)
    H = ds.csr()[:10]
    ids, _ = pipe.recommend(H, k=10)
    assert set(pipe.stage_seconds) == {"user_vector", "retrieve"}
    ref_ids, _ = model.recommend_history(H, k=10)
    # same items (float summation order may differ by an ulp between GEMV and GEMM)
    assert (ids == ref_ids).mean() > 0.95
