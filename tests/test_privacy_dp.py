"""Differential privacy for popularity counts and the co-occurrence (Gram) matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import integrate, stats

from frugalrec.models.ease import EASEConfig, EASERecommender
from frugalrec.models.itemknn import ItemKNNRecommender
from frugalrec.models.pop import PopConfig, PopRecommender
from frugalrec.privacy.dp import (
    DPOptions,
    analytic_gaussian_sigma,
    clip_rows,
    noise_scale,
    private_counts,
    private_gram,
)


def random_matrix(n_users: int = 200, n_items: int = 60, density: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < density).astype(np.float32)
    return sp.csr_matrix(X)


def test_clip_rows_bounds_each_user_and_keeps_a_subset() -> None:
    X = random_matrix(density=0.5)
    C = clip_rows(X, 7, np.random.default_rng(1))
    assert np.diff(C.indptr).max() == 7
    assert (C.multiply(X) != C).nnz == 0  # only entries the user really had
    short = np.diff(X.indptr) <= 7
    assert (C[short] != X[short]).nnz == 0  # short histories untouched
    again = clip_rows(X, 7, np.random.default_rng(1))
    assert (again != C).nnz == 0


def _gaussian_delta_by_integration(eps: float, sigma: float, sens: float) -> float:
    # delta(eps) = E_{x~P}[(1 - exp(eps - L(x)))_+], P = N(0, s), Q = N(sens, s),
    # L = log p/q: the definition, integrated numerically (independent of the closed form).
    def integrand(x: float) -> float:
        loss = ((x - sens) ** 2 - x**2) / (2 * sigma**2)
        return stats.norm.pdf(x, 0, sigma) * max(0.0, 1 - math.exp(eps - loss))

    value, _ = integrate.quad(integrand, -50 * sigma, 50 * sigma, points=[0.0], limit=500)
    return value


@pytest.mark.parametrize("eps", [0.3, 1.0, 3.0, 10.0])
def test_analytic_gaussian_sigma_meets_delta_exactly(eps: float) -> None:
    delta, sens = 1e-5, 2.0
    sigma = analytic_gaussian_sigma(eps, delta, sens)
    assert _gaussian_delta_by_integration(eps, sigma, sens) == pytest.approx(delta, rel=1e-3)
    # 1% less noise would no longer meet delta.
    assert _gaussian_delta_by_integration(eps, 0.99 * sigma, sens) > delta
    if eps < 1:  # the classic bound (valid for eps < 1) is looser than the analytic one
        assert sigma < sens * math.sqrt(2 * math.log(1.25 / delta)) / eps


def test_laplace_noise_on_counts_has_the_documented_scale() -> None:
    X = random_matrix(n_users=50, n_items=4000, density=0.01)
    opts = DPOptions(dp_epsilon=2.0, dp_mechanism="laplace", dp_max_items=100)
    exact = np.asarray(X.sum(axis=0)).ravel()
    # Short histories: clipping is a no-op, the difference is pure noise (clamped at 0).
    noisy = private_counts(X, opts)
    assert noise_scale(opts, "counts") == 100 / 2.0
    resid = noisy - exact
    # The upper half of a Laplace(0, b) is Exponential(b): its mean is b (clamping at 0
    # only touches the lower half).
    upper = resid[resid > 0]
    assert upper.mean() == pytest.approx(50.0, rel=0.1)


def test_gram_release_is_symmetric_with_counts_on_the_diagonal() -> None:
    X = random_matrix()
    exact = (X.T @ X).toarray()
    G = private_gram(X, DPOptions(dp_epsilon=1.0, dp_max_items=100))
    assert np.allclose(G, G.T)
    sigma = noise_scale(DPOptions(dp_epsilon=1.0, dp_max_items=100), "gram")
    resid = (G - exact)[np.triu_indices_from(G)]
    assert resid.std() == pytest.approx(sigma, rel=0.1)
    assert np.array_equal(private_gram(X, DPOptions()), exact)


@pytest.mark.parametrize("cls", [PopRecommender, EASERecommender, ItemKNNRecommender])
def test_huge_epsilon_equals_the_exact_model(cls) -> None:
    X = random_matrix()
    exact = cls().fit(X)
    private = cls(dp_epsilon=1e12, dp_max_items=X.shape[1]).fit(X)
    users = np.arange(X.shape[0])
    np.testing.assert_allclose(private.score(users), exact.score(users), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [PopRecommender, EASERecommender, ItemKNNRecommender])
def test_dp_fit_is_seeded_and_noisy(cls) -> None:
    X = random_matrix()
    a = cls(dp_epsilon=1.0, dp_seed=3).fit(X)
    b = cls(dp_epsilon=1.0, dp_seed=3).fit(X)
    c = cls(dp_epsilon=1.0, dp_seed=4).fit(X)
    exact = cls().fit(X)
    users = np.arange(X.shape[0])
    assert np.array_equal(a.score(users), b.score(users))
    assert not np.allclose(a.score(users), c.score(users))
    assert not np.allclose(a.score(users), exact.score(users))
    # The cold-start fallback is the noisy release too, never the exact counts.
    assert not np.allclose(a.item_popularity_, exact.item_popularity_)


def test_dp_config_round_trips_and_is_validated() -> None:
    cfg = EASEConfig(l2=100.0, dp_epsilon=3.0, dp_mechanism="laplace")
    assert EASEConfig.from_json(cfg.to_json()) == cfg
    assert PopConfig().dp_epsilon is None
    X = random_matrix()
    with pytest.raises(ValueError, match="dp_epsilon"):
        PopRecommender(dp_epsilon=0.0).fit(X)
    with pytest.raises(ValueError, match="dp_mechanism"):
        EASERecommender(dp_epsilon=1.0, dp_mechanism="exponential").fit(X)
    with pytest.raises(ValueError, match="dp_max_items"):
        ItemKNNRecommender(dp_epsilon=1.0, dp_max_items=0).fit(X)


def test_noise_aware_regularisers_follow_the_public_noise_level() -> None:
    from frugalrec.privacy.dp import noise_aware_l2, noise_aware_shrink

    off = DPOptions()
    assert noise_aware_l2(off, 100, 300.0) == 300.0 and noise_aware_shrink(off, 10.0) == 10.0
    opts = DPOptions(dp_epsilon=3.0)
    sigma = noise_scale(opts, "gram")
    assert noise_aware_l2(opts, 100, 300.0) == pytest.approx(300.0 + 5 * sigma * 10)
    assert noise_aware_shrink(opts, 10.0) == pytest.approx(10.0 + 100 * sigma)
    # Less privacy budget, more noise, more regularisation.
    assert noise_aware_l2(DPOptions(dp_epsilon=1.0), 100, 300.0) > noise_aware_l2(opts, 100, 300.0)
