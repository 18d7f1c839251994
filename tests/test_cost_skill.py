"""The naive-baseline comparison, on data with known answers."""

from __future__ import annotations

import pytest

from frugalrec.bench.projection_check import check
from frugalrec.cost.skill import (
    format_skill,
    naive_constant,
    naive_largest,
    naive_linear,
    relative_error,
    skill_summary,
)


def test_naive_predictors():
    assert naive_constant([1.0, 5.0, 2.0]) == 2.0
    assert naive_largest([10, 1000, 100], [1.0, 7.0, 3.0]) == 7.0
    assert naive_linear([10, 1000, 100], [1.0, 7.0, 3.0], 10_000) == pytest.approx(70.0)
    assert relative_error(12.0, 10.0) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        relative_error(1.0, 0.0)


def test_skill_summary_on_known_errors():
    rows = [
        {"measured": 10.0, "model": 11.0, "constant": 5.0, "linear": 20.0},  # .1 .5 1.0
        {"measured": 10.0, "model": 8.0, "constant": 13.0, "linear": 4.0},  # .2 .3 .6
        {"measured": 10.0, "model": 10.5, "constant": 10.0, "linear": 30.0},  # .05 0 2.0
    ]
    s = skill_summary(rows, target_error=0.25, target_skill=0.5)
    assert s["median_error"]["model"] == pytest.approx(0.1)
    assert s["median_error"]["constant"] == pytest.approx(0.3)
    assert s["median_error"]["linear"] == pytest.approx(1.0)
    assert s["best_naive"] == "constant"
    assert s["skill"] == pytest.approx(1 / 3)
    assert s["target_met"] is True
    # the same model against a better naive predictor: no skill, said so
    for r in rows:
        r["constant"] = r["measured"]
    s = skill_summary(rows, target_error=0.25, target_skill=0.5)
    assert s["skill"] is None and s["target_met"] is False
    assert "model 10.0%" in format_skill("x", s) and "NO SKILL" in format_skill("x", s)
    rows[0]["constant"], rows[1]["constant"] = 10.5, 9.5
    s = skill_summary(rows)
    assert s["median_error"]["constant"] == pytest.approx(0.05)
    assert s["skill"] > 1 and "NO SKILL" in format_skill("x", s)


def _record(retriever, kind, n, p99, mb):
    # a bandwidth-bound stage: bytes = n * 1 KB, measured p99 given
    return {
        "retriever": retriever, "kind": kind, "n_items": n, "p99_ms": p99, "index_mb": mb,
        "stage_costs": [{"name": f"{retriever}@{n}/b1", "kind": kind, "flops": 2.0 * n * 256,
                         "bytes_moved": n * 1024.0, "batch_size": 1, "dtype": "fp32",
                         "working_set_bytes": n * 1024.0, "hot_bytes": 0.0,
                         "streaming": True}],
    }  # fmt: skip


def test_catalogue_check_recovers_a_linear_cost():
    """Latency and memory exactly linear in n: the curve and the naive linear predictor are
    exact, the constant is 10x off; the roofline (bandwidth-bound) is close too."""
    ceilings = {"copy_gbs": 20.0, "gemv_gbs": 18.0, "gemm_fp32_gflops": 150.0, "threads": 2,
                "cache_gbs": 80.0, "llc_bytes": 1024}  # fmt: skip
    sizes = [1_000, 10_000, 100_000, 1_000_000]
    recs = [_record("exact", "exact", n, 1e-4 * n, n / 1000.0) for n in sizes]
    res = check({"ceilings": ceilings, "records": recs}, 100_000, 1_000_000)
    lat = res["p99_ms"]
    assert lat["curve"]["median_error"]["curve"] == pytest.approx(0.0, abs=1e-6)
    assert lat["curve"]["median_error"]["linear"] == pytest.approx(0.0, abs=1e-9)
    assert lat["curve"]["median_error"]["constant"] == pytest.approx(0.9)
    assert lat["roofline"]["median_error"]["roofline"] < 0.05
    assert res["index_mb"]["curve"]["median_error"]["curve"] == pytest.approx(0.0, abs=1e-6)
