"""Train/valid/test splits exactly as DESIGN.md defines them.

* ``random``: per user, a seeded shuffle (seed 42): 80% train, 10% valid, 10% test, with at
  least one valid and one test item for every user who has at least 3 interactions.
* ``temporal``: per user by timestamp: last 10% test, previous 10% valid.
* ``leave-one-out``: per user by timestamp: the last interaction is test, the one before it
  valid, the rest train; users with fewer than 3 interactions stay train-only. Full ranking.
  The protocol most LLM-recommendation papers report (e.g. LlamaRec on ML-100K; they often
  rank sampled candidates, this ranks the whole catalogue).
* ``cold-item``: 20% of items (seeded) and all their interactions leave train/valid; the
  test ranks only among those items, for the users who interacted with them. Valid is the
  same construction on a further 10% of items, so tuning sees cold items too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset

PROTOCOLS = ("random", "temporal", "leave-one-out", "cold-item")


@dataclass(frozen=True)
class Split:
    """Boolean masks over ``dataset``'s interactions plus candidate restrictions.

    ``valid_candidates``/``test_candidates`` (int64 item indices) restrict ranking to those
    items when set (cold-item protocol); ``None`` means full ranking over the catalogue.
    """

    dataset: Dataset
    protocol: str
    train_mask: np.ndarray
    valid_mask: np.ndarray
    test_mask: np.ndarray
    valid_candidates: np.ndarray | None = None
    test_candidates: np.ndarray | None = None

    @property
    def train(self) -> sp.csr_matrix:
        return self.dataset.csr(self.train_mask)

    @property
    def valid(self) -> sp.csr_matrix:
        return self.dataset.csr(self.valid_mask)

    @property
    def test(self) -> sp.csr_matrix:
        return self.dataset.csr(self.test_mask)

    @property
    def train_valid(self) -> sp.csr_matrix:
        return self.dataset.csr(self.train_mask | self.valid_mask)

    def train_dataset(self, with_valid: bool = False) -> Dataset:
        mask = self.train_mask | self.valid_mask if with_valid else self.train_mask
        return self.dataset.subset(mask)

    def counts(self) -> dict[str, int]:
        return {
            "train": int(self.train_mask.sum()),
            "valid": int(self.valid_mask.sum()),
            "test": int(self.test_mask.sum()),
        }


def _per_user_rank(user: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each interaction within its user when sorted by ``key`` (0-based), and the
    user's interaction count, both aligned with the input order."""
    order = np.lexsort((key, user))
    su = user[order]
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    counts = np.diff(np.r_[starts, len(su)])
    rank_sorted = np.arange(len(su)) - np.repeat(starts, counts)
    rank = np.empty(len(user), dtype=np.int64)
    rank[order] = rank_sorted
    n = np.empty(len(user), dtype=np.int64)
    n[order] = np.repeat(counts, counts)
    return rank, n


def _tail_masks(rank: np.ndarray, n: np.ndarray, frac: float = 0.1) -> tuple[np.ndarray, ...]:
    """Masks putting the last ``frac`` of each user's ordered interactions in test and the
    ``frac`` before that in valid; users with fewer than 3 interactions stay in train."""
    n_hold = np.maximum(1, np.rint(n * frac).astype(np.int64))
    eligible = n >= 3
    test = eligible & (rank >= n - n_hold)
    valid = eligible & ~test & (rank >= n - 2 * n_hold)
    train = ~(test | valid)
    return train, valid, test


def random_split(ds: Dataset, seed: int = 42) -> Split:
    """Per-user seeded shuffle: 80/10/10."""
    rng = np.random.default_rng(seed)
    key = rng.random(ds.n_interactions)
    rank, n = _per_user_rank(ds.user, key)
    train, valid, test = _tail_masks(rank, n)
    return Split(ds, "random", train, valid, test)


def _time_rank(ds: Dataset, seed: int, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user rank by timestamp (ties broken by a seeded shuffle) and per-user counts."""
    if not ds.has_timestamps:
        raise ValueError(
            f"dataset {ds.name!r} has no timestamps; the {protocol} protocol needs them"
        )
    rng = np.random.default_rng(seed)
    tie = rng.random(ds.n_interactions)
    # Combine timestamp and tie-break into one sortable key (timestamps are integers).
    order = np.lexsort((tie, ds.timestamp))
    key = np.empty(ds.n_interactions, dtype=np.int64)
    key[order] = np.arange(ds.n_interactions)
    return _per_user_rank(ds.user, key)


def temporal_split(ds: Dataset, seed: int = 42) -> Split:
    """Per user by timestamp (ties broken by a seeded shuffle): last 10% test, 10% valid."""
    rank, n = _time_rank(ds, seed, "temporal")
    train, valid, test = _tail_masks(rank, n)
    return Split(ds, "temporal", train, valid, test)


def leave_one_out_split(ds: Dataset, seed: int = 42) -> Split:
    """Per user by timestamp (ties by a seeded shuffle): the last interaction is test, the
    one before valid; users with fewer than 3 interactions keep everything in train."""
    rank, n = _time_rank(ds, seed, "leave-one-out")
    eligible = n >= 3
    test = eligible & (rank == n - 1)
    valid = eligible & (rank == n - 2)
    return Split(ds, "leave-one-out", ~(test | valid), valid, test)


def cold_item_split(
    ds: Dataset, seed: int = 42, cold_frac: float = 0.2, valid_frac: float = 0.1
) -> Split:
    """20% of items (seeded) become cold: their interactions are the test set and the test
    ranks among those items only; they never appear in train or valid.

    Valid mirrors the test one level down: another 10% of items (seeded, from the warm
    ones) leave train and their interactions are the valid set, ranked among themselves. A
    model tuned on valid has therefore been tuned for items it never saw; at test time it is
    refitted on train + valid (so the valid items are warm by then).
    """
    rng = np.random.default_rng(seed)
    present = np.flatnonzero(np.bincount(ds.item, minlength=ds.n_items) > 0)
    n_cold = round(cold_frac * len(present))
    n_valid = round(valid_frac * len(present))
    # Test items are drawn first so the test set does not depend on valid_frac.
    cold = np.sort(rng.choice(present, size=n_cold, replace=False))
    rest = np.setdiff1d(present, cold)
    valid_items = np.sort(rng.choice(rest, size=n_valid, replace=False))
    role = np.zeros(ds.n_items, dtype=np.int8)
    role[cold] = 2
    role[valid_items] = 1
    r = role[ds.item]
    return Split(
        ds, "cold-item", r == 0, r == 1, r == 2, valid_candidates=valid_items, test_candidates=cold
    )


def make_split(ds: Dataset, protocol: str, seed: int = 42) -> Split:
    """Dispatch on protocol name: ``random`` | ``temporal`` | ``leave-one-out`` | ``cold-item``."""
    if protocol == "random":
        return random_split(ds, seed)
    if protocol == "temporal":
        return temporal_split(ds, seed)
    if protocol == "leave-one-out":
        return leave_one_out_split(ds, seed)
    if protocol == "cold-item":
        return cold_item_split(ds, seed)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
