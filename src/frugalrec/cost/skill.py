"""Skill of a projection: the cost model's error next to naive predictors on the same
held-out points.

A projection earns its place only if it beats guessing. Every check reports, per held-out
point, the model's prediction and the naive ones, and a summary of median relative errors:

- ``constant``: the held-out value is the calibration's (the median of the calibration
  values, or, across sizes, the value at the largest calibrated size);
- ``linear``: across catalogue sizes, the value at the largest calibrated size scaled by the
  size ratio (``v(n) = v(n_max) * n / n_max``).

``skill`` is the model's median error divided by the best naive one (< 1: the model helps;
the catalogue-size target asks for <= 0.5 and a median error <= 25%).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def relative_error(predicted: float, measured: float) -> float:
    """``|predicted / measured - 1|``; ``measured`` must be positive."""
    if measured <= 0:
        raise ValueError(f"measured value must be positive, got {measured}")
    return abs(float(predicted) / float(measured) - 1.0)


def naive_constant(calibration_values: Sequence[float]) -> float:
    """The median of the calibration values: what a constant predictor says."""
    if not len(calibration_values):
        raise ValueError("naive_constant needs calibration values")
    return float(np.median(np.asarray(calibration_values, dtype=np.float64)))


def naive_linear(sizes: Sequence[float], values: Sequence[float], n: float) -> float:
    """Linear scaling from the largest calibrated size: ``v(n_max) * n / n_max``."""
    if not len(sizes) or len(sizes) != len(values):
        raise ValueError("naive_linear needs as many sizes as values, at least one")
    i = int(np.argmax(np.asarray(sizes, dtype=np.float64)))
    return float(values[i]) * float(n) / float(sizes[i])


def naive_largest(sizes: Sequence[float], values: Sequence[float]) -> float:
    """The constant across sizes: the value at the largest calibrated size."""
    if not len(sizes) or len(sizes) != len(values):
        raise ValueError("naive_largest needs as many sizes as values, at least one")
    return float(values[int(np.argmax(np.asarray(sizes, dtype=np.float64)))])


def skill_summary(
    rows: Sequence[Mapping[str, Any]],
    *,
    model: str = "model",
    naive: Sequence[str] = ("constant", "linear"),
    target_error: float | None = None,
    target_skill: float | None = None,
) -> dict[str, Any]:
    """Median relative errors of ``model`` and each naive predictor over ``rows``.

    Each row holds ``measured`` and a prediction per predictor name (``rows[i][model]``,
    ``rows[i][name]`` for ``name`` in ``naive``; a missing or None prediction is skipped for
    that predictor). Returns ``{"n", "median_error": {name: e}, "best_naive", "skill",
    "target_met"}``; ``skill`` = model error / best naive error (None when the best naive
    error is 0), ``target_met`` only when a target was given.
    """
    names = [model, *naive]
    errors: dict[str, list[float]] = {name: [] for name in names}
    for r in rows:
        for name in names:
            if r.get(name) is not None:
                errors[name].append(relative_error(r[name], r["measured"]))
    median = {name: float(np.median(e)) if e else None for name, e in errors.items()}
    naive_errs: dict[str, float] = {n: e for n in naive if (e := median[n]) is not None}
    best = min(naive_errs, key=lambda k: naive_errs[k]) if naive_errs else None
    best_err = naive_errs[best] if best is not None else None
    model_err = median[model]
    skill = None if model_err is None or not best_err else model_err / best_err
    out: dict[str, Any] = {
        "n": len(rows),
        "median_error": median,
        "best_naive": best,
        "skill": skill,
    }
    if target_error is not None or target_skill is not None:
        ok = model_err is not None
        if model_err is not None and target_error is not None:
            ok = model_err <= target_error
        if ok and target_skill is not None:
            ok = skill is not None and skill <= target_skill
        out["target_met"] = bool(ok)
        out["target"] = {"median_error_max": target_error, "skill_max": target_skill}
    return out


def format_skill(title: str, summary: Mapping[str, Any]) -> str:
    """One line: the model's median error next to each naive predictor's, and the verdict."""
    med = summary["median_error"]
    parts = [f"{name} {e:.1%}" for name, e in med.items() if e is not None]
    skill = summary.get("skill")
    if skill is not None:
        verdict = "skill" if skill < 1 else "NO SKILL over the naive predictor"
        verdict += f" (model/best naive = {skill:.2f})"
    elif summary.get("best_naive") is not None:
        verdict = f"NO SKILL: naive {summary['best_naive']!r} is exact here"
    else:
        verdict = "no naive baseline"
    if "target_met" in summary:
        verdict += "; target " + ("met" if summary["target_met"] else "MISSED")
    return f"{title}: median relative error over {summary['n']}: {', '.join(parts)} -> {verdict}"
