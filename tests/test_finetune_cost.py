"""Training cost of fine-tuned configurations: the record's training block and the plan."""

from __future__ import annotations

from typing import Any

import pytest

from frugalrec.cost.planner import plan
from frugalrec.cost.records import BenchFormatError, CostRecord

PROFILES = {"box": {"name": "box", "memory_gb": 16, "usd_per_hour": 2.0}}


def _raw(name: str, ndcg: float, training: dict[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "config": {"name": name},
        "quality": {"ndcg@10": ndcg},
        "cost": {"p50_ms": 1.0, "p99_ms": 2.0, "qps": 100.0, "peak_rss_mb": 100.0},
        "hardware": "box",
    }
    if training is not None:
        d["training"] = training
    return d


def test_training_block_round_trips_and_is_validated() -> None:
    block = {"wall_seconds": 3600.0, "cpu_seconds": 7000.0, "examples": 6660,
             "examples_per_second": 1.85, "peak_rss_mb": 2300.0}  # fmt: skip
    rec = CostRecord.from_dict(_raw("ft", 0.3, block))
    assert rec.training == block
    assert CostRecord.from_dict(rec.to_dict()).training == block
    assert "training" not in CostRecord.from_dict(_raw("plain", 0.2)).to_dict()
    with pytest.raises(BenchFormatError, match=r"r1: training\.wall_seconds missing"):
        CostRecord.from_dict(_raw("ft", 0.3, {"examples": 3}), where="r1")
    with pytest.raises(BenchFormatError, match=r"training\.examples"):
        CostRecord.from_dict(_raw("ft", 0.3, {"wall_seconds": 1.0, "examples": "many"}))
    with pytest.raises(BenchFormatError, match="training must be an object"):
        CostRecord.from_dict(_raw("ft", 0.3, [1]))  # type: ignore[arg-type]


def test_plan_adds_one_off_and_retraining_cost() -> None:
    recs = [
        CostRecord.from_dict(_raw("plain", 0.28)),
        CostRecord.from_dict(_raw("ft", 0.32, {"wall_seconds": 7200.0})),
    ]
    serving = 2.0 * 730  # one machine, $2/h, 730 h
    once = plan(recs, ["box"], PROFILES)["hardware"]["box"]
    assert once["config"]["name"] == "ft"
    assert once["training"]["one_off_usd"] == pytest.approx(4.0)  # 2 h at $2/h
    assert once["usd_per_month"] == pytest.approx(serving)  # no retraining cadence given
    weekly = plan(recs, ["box"], PROFILES, retrain_days=7)["hardware"]["box"]
    per_month = 4.0 * (730 / 24) / 7
    assert weekly["training"]["usd_per_month"] == pytest.approx(per_month)
    assert weekly["usd_per_month"] == pytest.approx(serving + per_month)
    # A budget between the two prices leaves only the configuration that trains nothing.
    tight = plan(recs, ["box"], PROFILES, retrain_days=7, budget_usd_month=serving + 1.0)
    assert tight["hardware"]["box"]["config"]["name"] == "plain"
    assert tight["hardware"]["box"]["training"] is None
    with pytest.raises(ValueError, match="retrain_days"):
        plan(recs, ["box"], PROFILES, retrain_days=0)
