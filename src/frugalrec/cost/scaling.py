"""Fitted growth laws of retrieval cost with catalogue size.

:func:`fit_scaling` fits ``a * n**b + c`` (or ``a * n + c``) to measured points so the planner
can predict an unmeasured size. The points come from :mod:`frugalrec.bench.scaling`
(``python -m frugalrec.bench.scaling``), which this module never imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from frugalrec.opcount import StageCost

# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


@dataclass
class ScalingModel:
    """``value(n) = a * n**b + c`` (``form="power"``) or ``a * n + c`` (``form="linear"``).

    ``n_range`` is the measured range; predictions outside it are extrapolations.
    """

    a: float
    b: float
    c: float
    form: str = "power"
    n_range: tuple[float, float] = (0.0, math.inf)
    log_rmse: float = 0.0

    def predict(self, n_items: float | np.ndarray) -> Any:
        """Predicted value at ``n_items`` (scalar or array)."""
        n = np.asarray(n_items, dtype=np.float64)
        out = self.a * n**self.b + self.c
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_range"] = list(self.n_range)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScalingModel:
        d = dict(d)
        d["n_range"] = tuple(d.get("n_range", (0.0, math.inf)))
        return cls(**d)


def fit_scaling(
    points: Sequence[tuple[float, float]] | Sequence[Mapping[str, Any]],
    *,
    form: str = "power",
    x: str = "n_items",
    y: str = "p50_ms",
) -> ScalingModel:
    """Fit a growth law to ``(n_items, value)`` pairs (or dicts with keys ``x``, ``y``).

    ``power``: ``a * n**b + c`` with ``c >= 0`` a fixed cost, fitted in log space (relative
    errors count equally at every size): a grid over ``c`` with a linear fit of
    ``log(v - c) = log a + b log n`` for each, keeping the best. ``linear``: ``a * n + c`` by
    least squares on relative errors (exact search is linear in ``n``). Needs >= 2 points
    (``power`` with a free ``c`` needs >= 3; with 2 it fixes ``c = 0``).
    """
    pts = [
        (float(p[x]), float(p[y])) if isinstance(p, Mapping) else (float(p[0]), float(p[1]))
        for p in points
    ]
    if len(pts) < 2:
        raise ValueError("fit_scaling needs at least two points")
    n = np.array([p[0] for p in pts])
    v = np.array([p[1] for p in pts])
    if np.any(n <= 0) or np.any(v <= 0):
        raise ValueError("sizes and values must be positive")
    rng_n = (float(n.min()), float(n.max()))
    if form == "linear":
        # Weighted by 1/v so that small sizes are not swamped by the largest.
        w = 1.0 / v
        a_mat = np.stack([n * w, w], axis=1)
        (a, c), *_ = np.linalg.lstsq(a_mat, v * w, rcond=None)
        model = ScalingModel(float(a), 1.0, float(c), "linear", rng_n)
    elif form == "power":
        cs = (
            [0.0]
            if len(pts) < 3
            else list(np.concatenate([[0.0], v.min() * (1 - np.logspace(-4, 0, 200)[::-1])]))
        )
        best: tuple[float, float, float, float] | None = None
        ln = np.log(n)
        for c in cs:
            rest = v - c
            if np.any(rest <= 0):
                continue
            b, log_a = np.polyfit(ln, np.log(rest), 1)
            pred = np.exp(log_a) * n**b + c
            err = float(np.sqrt(np.mean(np.log(pred / v) ** 2)))
            if best is None or err < best[0] - 1e-12:
                best = (err, float(np.exp(log_a)), float(b), float(c))
        assert best is not None
        model = ScalingModel(best[1], best[2], best[3], "power", rng_n)
    else:
        raise ValueError(f"form must be 'power' or 'linear', got {form!r}")
    pred = model.predict(n)
    model.log_rmse = float(np.sqrt(np.mean(np.log(np.maximum(pred, 1e-300) / v) ** 2)))
    return model


def fit_retrieval_scaling(
    records: Sequence[Mapping[str, Any]], metric: str = "p50_ms", form: str = "power"
) -> dict[str, ScalingModel]:
    """One :class:`ScalingModel` of ``metric`` per retriever in scaling records."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by.setdefault(str(r["retriever"]), []).append(r)
    return {
        name: fit_scaling(recs, form=form, y=metric) for name, recs in by.items() if len(recs) >= 2
    }


def stage_costs(records: Sequence[Mapping[str, Any]]) -> list[StageCost]:
    """All :class:`StageCost` records in scaling results (for calibration)."""
    return [StageCost.from_dict(s) for r in records for s in r.get("stage_costs", [])]


# ---------------------------------------------------------------------------------------------
# Tail latency under CPU contention
# ---------------------------------------------------------------------------------------------


@dataclass
class ContentionTail:
    """Tail latency of a call that neighbours can preempt: ``q``-quantile ``= s + Q * k_q``.

    ``s`` is the call's typical (p50) service time in ms; preemptions arrive at ``rate_per_s``
    while it runs (Poisson), each costing ``quantum_ms``; ``k_q`` is the ``q``-quantile of the
    Poisson count with mean ``rate_per_s * s``. On a machine shared with other busy processes
    a sub-millisecond call's p99 is its p50 plus about one scheduler quantum (when more than 1 %
    of calls are preempted), while a long scan collects several and its p99/p50 ratio falls:
    neither a constant ratio nor a constant offset carries across catalogue sizes.
    """

    rate_per_s: float
    quantum_ms: float
    quantile: float = 0.99
    log_mae: float = 0.0

    def predict(self, p50_ms: float | np.ndarray) -> Any:
        """The ``quantile`` latency (ms) of calls whose p50 is ``p50_ms``."""
        from scipy.stats import poisson

        s = np.asarray(p50_ms, dtype=np.float64)
        k = poisson.ppf(self.quantile, self.rate_per_s * s / 1e3)
        out = s + self.quantum_ms * k
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_contention_tail(
    pairs: Sequence[tuple[float, float]], quantile: float = 0.99
) -> ContentionTail:
    """Fit :class:`ContentionTail` to measured ``(p50_ms, p_quantile_ms)`` pairs (calls of
    different lengths on the same machine), minimising mean ``|log(predicted / measured)|``
    over a grid of rates (0.01..10^4 per s) and quanta (0.05..100 ms)."""
    from scipy.stats import poisson

    if len(pairs) < 2:
        raise ValueError("fit_contention_tail needs at least two (p50, tail) pairs")
    s = np.array([p[0] for p in pairs], dtype=np.float64)
    t = np.array([p[1] for p in pairs], dtype=np.float64)
    if np.any(s <= 0) or np.any(t <= 0):
        raise ValueError("latencies must be positive")
    rates = np.logspace(-2, 4, 241)
    quanta = np.logspace(math.log10(0.05), 2, 161)
    k = poisson.ppf(quantile, rates[:, None] * s[None, :] / 1e3)  # [R, n]
    pred = s[None, None, :] + quanta[None, :, None] * k[:, None, :]  # [R, Q, n]
    loss = np.abs(np.log(pred / t[None, None, :])).mean(axis=2)
    i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
    return ContentionTail(float(rates[i]), float(quanta[j]), quantile, float(loss[i, j]))
