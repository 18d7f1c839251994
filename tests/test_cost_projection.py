"""Projections are coherent: latency quantiles stay ordered (p50 <= p95 <= p99) on every
profile, whether they come from per-quantile roofline fits or from catalogue resizing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frugalrec.cost.hardware import load_profiles
from frugalrec.cost.records import QUANTILE_KEYS, order_quantiles
from frugalrec.cost.roofline import Calibration, KindCalibration, project, project_latency
from frugalrec.opcount import StageCost

REPO = Path(__file__).resolve().parents[1]


def _cal(q: float, overhead_s: float, eff: float) -> Calibration:
    return Calibration(
        profile="local",
        quantile=q,
        kinds={"x": KindCalibration(overhead_s=overhead_s, eff_compute=eff, eff_memory=eff)},
    )


def test_crossing_fits_still_give_ordered_quantiles():
    """The p99 fit here finds the stage cheaper than the p50 fit (what pop's t4 projection
    did: p99 0.034 ms under p50 0.060 ms); the projection must not report that."""
    t4 = load_profiles()["t4"]
    stage = StageCost(name="s", kind="x", flops=1e5, bytes_moved=1e5, seconds=[1e-4])
    cals = {0.5: _cal(0.5, 6e-5, 0.01), 0.95: _cal(0.95, 2e-5, 0.5), 0.99: _cal(0.99, 3e-5, 0.9)}
    lat = project_latency([stage], cals, t4)
    assert lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
    assert lat["p50_ms"] == pytest.approx(project(stage, cals[0.5], t4) * 1e3)
    assert project(stage, cals[0.99], t4) < project(stage, cals[0.5], t4)  # the fits do cross
    # Ordered fits are left as they are.
    ordered = {0.5: _cal(0.5, 1e-5, 0.5), 0.95: _cal(0.95, 2e-5, 0.5), 0.99: _cal(0.99, 4e-5, 0.5)}
    lat = project_latency([stage], ordered, t4)
    assert lat["p50_ms"] < lat["p95_ms"] < lat["p99_ms"]


def test_order_quantiles_is_a_running_maximum():
    assert order_quantiles({"p50_ms": 2.0, "p95_ms": 1.0, "p99_ms": 3.0}) == {
        "p50_ms": 2.0,
        "p95_ms": 2.0,
        "p99_ms": 3.0,
    }
    assert order_quantiles({"p50_ms": 2.0, "p99_ms": 1.0}) == {"p50_ms": 2.0, "p99_ms": 2.0}


def assert_coherent(records: list[dict]) -> None:
    """Every record of a bench run: measured and projected quantiles ordered."""
    for r in records:
        blocks = {"measured": r["cost"], **r.get("projections", {})}
        for hw, block in blocks.items():
            qs = [block[k] for k in QUANTILE_KEYS if block.get(k) is not None]
            assert qs == sorted(qs), f"{r['config']['name']} on {hw}: {qs}"


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(REPO) for p in (REPO / "docs" / "bench").rglob("bench.json"))
)
def test_every_committed_bench_run_is_coherent(path):
    assert_coherent(json.loads((REPO / path).read_text()))


def test_resizing_grows_only_the_scoring_part_of_service_capacity():
    from frugalrec.cost.catalogue import _resize_service

    block = {"service_qps": 400.0}  # 2.5 ms a request: 2 ms service overhead + 0.5 ms scoring
    _resize_service(block, 2.0, 3.0)
    assert block["service_qps"] == pytest.approx(1 / 3.5e-3)
    untouched = {"service_qps": 400.0}
    _resize_service(untouched, None, 3.0)  # no calibrated overhead: nothing to split
    assert untouched["service_qps"] == 400.0
