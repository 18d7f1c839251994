"""Metric functions against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from frugalrec.evaluate.metrics import (
    bootstrap_ci,
    coverage,
    intra_list_diversity,
    novelty,
    per_user_metrics,
)


def rel(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [j for row in rows for j in row]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_ranking_metrics() -> None:
    top = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    relevant = rel([[2], [4, 6, 0, 1], [0]])
    m = per_user_metrics(top, relevant, k=3)
    # user 0: one hit at rank 2 of 1 relevant
    assert m["ndcg@3"][0] == pytest.approx((1 / math.log2(3)) / 1.0)
    assert m["recall@3"][0] == pytest.approx(1.0)
    assert m["mrr@3"][0] == pytest.approx(0.5)
    assert m["precision@3"][0] == pytest.approx(1 / 3)
    # user 1: hits at ranks 1 and 3; 4 relevant -> IDCG over min(4, 3) = 3 positions
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"][1] == pytest.approx(dcg / idcg)
    assert m["recall@3"][1] == pytest.approx(2 / 4)
    assert m["mrr@3"][1] == pytest.approx(1.0)
    assert m["hr@3"][1] == 1.0
    # user 2: no hit
    for key in ("ndcg@3", "recall@3", "mrr@3", "hr@3", "precision@3"):
        assert m[key][2] == 0.0


def test_cutoff_and_empty_slots() -> None:
    top = np.array([[5, -1, -1]])
    m = per_user_metrics(top, rel([[5, 7]]), k=3)
    assert m["ndcg@3"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    m1 = per_user_metrics(np.array([[7, 5, 1]]), rel([[5]]), k=1)
    assert m1["ndcg@1"][0] == 0.0 and m1["precision@1"][0] == 0.0


def test_user_without_relevant_items_is_an_error() -> None:
    with pytest.raises(ValueError, match="relevant"):
        per_user_metrics(np.array([[1, 2]]), rel([[]]), k=2)


def test_coverage_novelty_ild() -> None:
    top = np.array([[0, 1], [1, 2]])
    assert coverage(top, 2, n_candidates=4) == pytest.approx(3 / 4)
    pop = np.array([3.0, 1.0, 0.0, 0.0])
    nov = novelty(top, 2, pop, n_users=3)
    expect0 = np.mean([-math.log2(4 / 4), -math.log2(2 / 4)])
    assert nov[0] == pytest.approx(expect0)
    feats = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=np.float32)
    ild = intra_list_diversity(top, 2, feats)
    assert ild[0] == pytest.approx(0.0)  # identical genres
    assert ild[1] == pytest.approx(1.0)  # orthogonal genres


def test_bootstrap_ci_contains_mean_and_is_seeded() -> None:
    vals = np.random.default_rng(1).random(500)
    a = bootstrap_ci(vals, np.random.default_rng(7))
    b = bootstrap_ci(vals, np.random.default_rng(7))
    assert a == b and a[0] < vals.mean() < a[1]
    assert a[1] - a[0] < 0.1
