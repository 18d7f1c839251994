"""The leave-one-out protocol: one test and one valid item per eligible user, by time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frugalrec.data.dataset import build_dataset
from frugalrec.data.splits import PROTOCOLS, make_split
from frugalrec.data.synthetic import synthetic_interactions


@pytest.fixture
def shop():  # type: ignore[no-untyped-def]
    """A seeded synthetic shop: string ids, Zipf users (many with 1-2 interactions),
    timestamps with deliberate ties."""
    rng = np.random.default_rng(7)
    df = next(synthetic_interactions(300, 80, 3000, rng))
    df["timestamp"] = df["timestamp"] // 50_000  # coarse clock: many equal timestamps
    return build_dataset(
        "shop",
        ("cust-" + df["user"].astype(str)).to_numpy(),
        ("sku-" + df["item"].astype(str)).to_numpy(),
        None,
        df["timestamp"].to_numpy(),
    )


def test_one_test_one_valid_per_eligible_user_chosen_by_time(shop) -> None:  # type: ignore[no-untyped-def]
    split = make_split(shop, "leave-one-out")
    assert split.protocol == "leave-one-out" and "leave-one-out" in PROTOCOLS
    masks = np.stack([split.train_mask, split.valid_mask, split.test_mask])
    assert (masks.sum(axis=0) == 1).all(), "every interaction in exactly one part"
    n = np.bincount(shop.user, minlength=shop.n_users)
    n_test = np.bincount(shop.user[split.test_mask], minlength=shop.n_users)
    n_valid = np.bincount(shop.user[split.valid_mask], minlength=shop.n_users)
    eligible = n >= 3
    assert (n < 3).any() and eligible.any(), "the fixture must have both kinds of users"
    np.testing.assert_array_equal(n_test, eligible.astype(int))
    np.testing.assert_array_equal(n_valid, eligible.astype(int))
    frame = pd.DataFrame({"user": shop.user, "t": shop.timestamp, "part": masks.argmax(axis=0)})
    for _, g in frame[frame.user.isin(np.flatnonzero(eligible))].groupby("user"):
        t_train = g.t[g.part == 0].max()
        t_valid = g.t[g.part == 1].iloc[0]
        t_test = g.t[g.part == 2].iloc[0]
        # No leakage: nothing in train is newer than valid, nothing newer than test.
        assert t_train <= t_valid <= t_test
        assert t_test == g.t.max()


def test_leave_one_out_is_seeded_and_needs_timestamps(shop) -> None:  # type: ignore[no-untyped-def]
    a, b = make_split(shop, "leave-one-out", seed=1), make_split(shop, "leave-one-out", seed=1)
    np.testing.assert_array_equal(a.test_mask, b.test_mask)
    c = make_split(shop, "leave-one-out", seed=2)
    # Ties are broken by the seed: another seed may pick another of two equal-time items.
    assert (a.test_mask != c.test_mask).any()
    no_time = build_dataset("x", ["a", "a", "a"], ["1", "2", "3"], None, None)
    with pytest.raises(ValueError, match="leave-one-out protocol needs them"):
        make_split(no_time, "leave-one-out")


def test_leave_one_out_evaluates_with_full_ranking(shop) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.evaluate.run import run_models

    split = make_split(shop, "leave-one-out")
    assert split.test_candidates is None  # full ranking over the catalogue
    (run,) = run_models(split, ["ease"], do_tune=False, n_boot=10)
    assert len(run.result.users) == int((np.bincount(shop.user) >= 3).sum())
    assert 0.0 <= run.result.metrics["ndcg@10"] <= 1.0


@pytest.mark.slow
def test_leave_one_out_on_ml100k(ml100k) -> None:  # type: ignore[no-untyped-def]
    split = make_split(ml100k, "leave-one-out")
    assert split.counts() == {"train": 100_000 - 2 * 943, "valid": 943, "test": 943}
