"""Shared fixtures: tiny synthetic data with known answers, and the real ml-100k."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import scipy.sparse as sp


def two_block_matrix(n_users: int = 20, n_items: int = 10, seed: int = 0) -> sp.csr_matrix:
    """Users 0..n/2-1 like items 0..m/2-1, the others like the rest; each user misses one
    item of their block (the known answer a good recommender should rank first)."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n_users, n_items), dtype=np.float32)
    half_u, half_i = n_users // 2, n_items // 2
    X[:half_u, :half_i] = 1
    X[half_u:, half_i:] = 1
    held = np.where(
        np.arange(n_users) < half_u,
        rng.integers(0, half_i, n_users),
        rng.integers(half_i, n_items, n_users),
    )
    X[np.arange(n_users), held] = 0
    return sp.csr_matrix(X)


@pytest.fixture
def blocks() -> tuple[sp.csr_matrix, np.ndarray]:
    X = two_block_matrix()
    dense = X.toarray()
    half = X.shape[1] // 2
    held = np.array(
        [
            np.flatnonzero(row[:half] == 0)[0]
            if u < 10
            else half + np.flatnonzero(row[half:] == 0)[0]
            for u, row in enumerate(dense)
        ]
    )
    return X, held


@pytest.fixture(scope="session")
def ml100k():
    from frugalrec.data.movielens import load_ml100k

    return load_ml100k()
