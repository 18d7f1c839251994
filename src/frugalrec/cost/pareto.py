"""Exact Pareto frontiers over quality (maximised) and costs (minimised).

A point is dominated only if some other point is at least as good on every axis and strictly
better on one, so exact duplicates and ties all stay on the frontier: the report shows every
configuration that nobody beats, not an arbitrary representative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from frugalrec.cost.records import CostRecord

# Bound the n x chunk x d comparison tensor so a large sweep cannot exhaust memory.
_MAX_CELLS = 4_000_000

Point = Mapping[str, Any] | CostRecord


def pareto_front(
    points: Sequence[Point] | np.ndarray,
    maximise: str | Sequence[str] = "ndcg@10",
    minimise: str | Sequence[str] = ("p99_ms",),
) -> np.ndarray:
    """Indices (ascending, int64) of the non-dominated points.

    ``points`` is a sequence of flat mappings (``{"ndcg@10": .., "p99_ms": ..}``), of
    :class:`CostRecord` (keys looked up in ``quality`` then ``cost``), or a 2-D array whose
    columns are the ``maximise`` axes followed by the ``minimise`` axes. Points with a missing,
    null or NaN value on any axis are never on the frontier.
    """
    max_keys = _as_tuple(maximise)
    min_keys = _as_tuple(minimise)
    if not max_keys and not min_keys:
        raise ValueError("pareto_front needs at least one axis")
    matrix = _matrix(points, max_keys, min_keys)
    return _non_dominated(matrix, len(max_keys))


def frontier_by_cost(
    points: Sequence[Point] | np.ndarray,
    maximise: str | Sequence[str] = "ndcg@10",
    minimise: str | Sequence[str] = ("p99_ms",),
) -> list[int]:
    """The frontier's indices sorted by the first ``minimise`` axis (cheapest first).

    Ties on cost go to the higher quality first, then to input order, so the order is stable.
    For one quality and one cost axis, quality is non-decreasing along the result: the
    "what does the next dollar buy" ladder.
    """
    max_keys = _as_tuple(maximise)
    min_keys = _as_tuple(minimise)
    matrix = _matrix(points, max_keys, min_keys)
    idx = _non_dominated(matrix, len(max_keys))
    if len(idx) == 0:
        return []
    n_max = len(max_keys)
    cost = matrix[idx, n_max] if min_keys else np.zeros(len(idx))
    quality = matrix[idx, 0] if max_keys else np.zeros(len(idx))
    # lexsort: last key is primary.
    order = np.lexsort((idx, -quality, cost))
    return [int(i) for i in idx[order]]


def _as_tuple(keys: str | Sequence[str]) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else tuple(keys)


def _lookup(point: Point, key: str) -> float:
    if isinstance(point, CostRecord):
        value = point.quality.get(key, point.cost.get(key))
    else:
        value = point.get(key)
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _matrix(
    points: Sequence[Point] | np.ndarray, max_keys: tuple[str, ...], min_keys: tuple[str, ...]
) -> np.ndarray:
    d = len(max_keys) + len(min_keys)
    if isinstance(points, np.ndarray):
        arr = np.asarray(points, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != d:
            raise ValueError(
                f"expected an array of shape (n, {d}) for {len(max_keys)} maximised and "
                f"{len(min_keys)} minimised axes, got {arr.shape}"
            )
        return arr
    keys = max_keys + min_keys
    return np.array([[_lookup(p, k) for k in keys] for p in points], dtype=np.float64).reshape(
        len(points), d
    )


def _non_dominated(matrix: np.ndarray, n_max: int) -> np.ndarray:
    n = matrix.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Orient every axis so that larger is better.
    good = matrix.copy()
    good[:, n_max:] *= -1.0
    valid = np.all(np.isfinite(good), axis=1)
    cand = good[valid]
    m, d = cand.shape
    dominated = np.zeros(m, dtype=bool)
    chunk = max(1, _MAX_CELLS // max(1, m * d))
    for start in range(0, m, chunk):
        block = cand[start : start + chunk]  # the points being tested, (c, d)
        # others[j] vs block[i]: (c, m, d)
        ge = cand[None, :, :] >= block[:, None, :]
        gt = cand[None, :, :] > block[:, None, :]
        dominated[start : start + chunk] = np.any(ge.all(axis=2) & gt.any(axis=2), axis=1)
    return np.flatnonzero(valid)[~dominated].astype(np.int64)
