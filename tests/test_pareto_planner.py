"""Pareto frontier, planner constraint logic and bench-record validation, on hand-made data."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from frugalrec.cost import pareto
from frugalrec.cost.pareto import frontier_by_cost, pareto_front
from frugalrec.cost.planner import format_plan_table, plan
from frugalrec.cost.records import (
    BenchFormatError,
    CostRecord,
    cost_on,
    dump_bench,
    load_bench,
    metric_label,
    records_on,
)

# --------------------------------------------------------------------------------------------
# pareto

POINTS: list[dict[str, Any]] = [
    {"ndcg@10": 0.30, "p99_ms": 10.0},  # 0 front
    {"ndcg@10": 0.25, "p99_ms": 5.0},  # 1 front
    {"ndcg@10": 0.30, "p99_ms": 10.0},  # 2 exact duplicate of 0: both stay
    {"ndcg@10": 0.20, "p99_ms": 5.0},  # 3 same latency as 1, worse quality: dominated
    {"ndcg@10": 0.30, "p99_ms": 12.0},  # 4 same quality as 0, slower: dominated
    {"ndcg@10": 0.10, "p99_ms": 1.0},  # 5 front (fastest)
    {"ndcg@10": 0.35, "p99_ms": 50.0},  # 6 front (best)
    {"ndcg@10": None, "p99_ms": 0.5},  # 7 missing quality: never on the front
    {"ndcg@10": 0.25, "p99_ms": 20.0},  # 8 dominated by 0
]


def _brute(matrix: np.ndarray, n_max: int) -> list[int]:
    good = matrix.copy()
    good[:, n_max:] *= -1
    out = []
    for i in range(len(good)):
        if not np.all(np.isfinite(good[i])):
            continue
        dominated = any(
            np.all(good[j] >= good[i]) and np.any(good[j] > good[i])
            for j in range(len(good))
            if j != i and np.all(np.isfinite(good[j]))
        )
        if not dominated:
            out.append(i)
    return out


def test_pareto_known_front_with_ties_and_duplicates() -> None:
    assert pareto_front(POINTS).tolist() == [0, 1, 2, 5, 6]


def test_frontier_by_cost_orders_cheapest_first_and_quality_rises() -> None:
    order = frontier_by_cost(POINTS)
    assert order == [5, 1, 0, 2, 6]
    quality = [POINTS[i]["ndcg@10"] for i in order]
    assert quality == sorted(quality)


def test_pareto_multi_axis_and_array_input() -> None:
    pts = [
        {"ndcg@10": 0.3, "p99_ms": 10, "peak_rss_mb": 900},
        {"ndcg@10": 0.3, "p99_ms": 12, "peak_rss_mb": 100},  # slower but smaller: front
        {"ndcg@10": 0.3, "p99_ms": 12, "peak_rss_mb": 900},  # dominated by 0
    ]
    assert pareto_front(pts, minimise=("p99_ms", "peak_rss_mb")).tolist() == [0, 1]
    arr = np.array([[0.3, 10, 900], [0.3, 12, 100], [0.3, 12, 900]], dtype=float)
    assert pareto_front(arr, minimise=("p99_ms", "peak_rss_mb")).tolist() == [0, 1]
    with pytest.raises(ValueError, match="shape"):
        pareto_front(arr)  # two axes expected, three given


def test_pareto_empty_and_all_equal() -> None:
    assert pareto_front([]).tolist() == []
    assert frontier_by_cost([]) == []
    same = [{"ndcg@10": 0.2, "p99_ms": 3.0}] * 4
    assert pareto_front(same).tolist() == [0, 1, 2, 3]


def test_pareto_matches_brute_force_on_tied_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    # Small integer grid => many ties and duplicates; tiny chunk budget exercises chunking.
    monkeypatch.setattr(pareto, "_MAX_CELLS", 7)
    for _ in range(20):
        m = rng.integers(0, 5, size=(40, 3)).astype(float)
        m[rng.random(40) < 0.05, 1] = np.nan
        got = pareto_front(m, maximise="q", minimise=("a", "b")).tolist()
        assert got == _brute(m, 1)


def test_pareto_reads_cost_records() -> None:
    recs = [_rec("a", 0.2, 5.0, 100, 100), _rec("b", 0.3, 50.0, 10, 100), _rec("c", 0.1, 6.0, 1, 1)]
    assert pareto_front(recs).tolist() == [0, 1]


# --------------------------------------------------------------------------------------------
# records


def _rec(
    name: str,
    ndcg: float,
    p99: float,
    qps: float,
    rss: float,
    hardware: str = "local",
    projections: dict[str, dict[str, Any]] | None = None,
) -> CostRecord:
    return CostRecord.from_dict(_raw(name, ndcg, p99, qps, rss, hardware, projections))


def _raw(
    name: str,
    ndcg: float,
    p99: float,
    qps: float,
    rss: float,
    hardware: str = "local",
    projections: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "config": {"name": name, "encoder": "minilm", "backend": "onnx-int8", "model": "ease"},
        "quality": {"ndcg@10": ndcg, "recall@10": ndcg * 1.5, "cold_ndcg@10": None},
        "cost": {
            "p50_ms": p99 / 2,
            "p95_ms": p99 * 0.8,
            "p99_ms": p99,
            "qps": qps,
            "peak_rss_mb": rss,
            "model_mb": rss / 4,
            "build_seconds": 1.0,
            "flops_per_request": 1e6,
            "usd_per_million_requests": 0.5,
        },
        "hardware": hardware,
    }
    if projections is not None:
        d["projections"] = projections
    return d


def test_record_round_trip(tmp_path: Path) -> None:
    raw = _raw(
        "a", 0.3, 4.0, 200, 800, projections={"h100": {"p50_ms": 1, "p99_ms": 2, "qps": 900}}
    )
    raw["quality"]["ndcg@10_ci"] = [0.28, 0.32]  # unknown keys pass through
    rec = CostRecord.from_dict(raw)
    assert rec.to_dict() == CostRecord.from_dict(json.loads(json.dumps(rec.to_dict()))).to_dict()
    assert rec.name == "a" and rec.quality["ndcg@10_ci"] == [0.28, 0.32]
    path = tmp_path / "bench.json"
    path.write_text(dump_bench([rec, rec]))
    assert [r.to_dict() for r in load_bench(path)] == [rec.to_dict()] * 2


def _broken(mutate: Any) -> dict[str, Any]:
    d = _raw("a", 0.3, 4.0, 200, 800, projections={"h100": {"p50_ms": 1, "p99_ms": 2, "qps": 9}})
    mutate(d)
    return d


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["cost"].pop("p99_ms"), "cost.p99_ms missing"),
        (lambda d: d["cost"].update(qps="fast"), "cost.qps must be a number"),
        (lambda d: d["cost"].update(qps=0), "cost.qps must be > 0"),
        (lambda d: d["cost"].update(peak_rss_mb=True), "cost.peak_rss_mb must be a number"),
        (lambda d: d["cost"].update(p50_ms=-1), "cost.p50_ms must be >= 0"),
        (lambda d: d["cost"].update(p50_ms=float("nan")), "cost.p50_ms must be finite"),
        (lambda d: d["cost"].update(p99_ms=None), "cost.p99_ms is null"),
        (lambda d: d.pop("cost"), "cost missing"),
        (lambda d: d.update(cost=[1]), "cost must be an object"),
        (lambda d: d["quality"].pop("ndcg@10"), "quality.ndcg@10 missing"),
        (lambda d: d["quality"].update({"ndcg@10": None}), "quality.ndcg@10 is null"),
        (lambda d: d["quality"].update({"recall@10": "0.3"}), "quality.recall@10 must be a number"),
        (lambda d: d["config"].pop("name"), "config.name missing"),
        (lambda d: d["config"].update(name=""), "config.name must be a non-empty string"),
        (lambda d: d.pop("hardware"), "hardware missing"),
        (lambda d: d["projections"]["h100"].pop("p99_ms"), "projections.h100.p99_ms missing"),
        (lambda d: d.update(projections=[]), "projections must be an object"),
    ],
)
def test_record_validation_names_the_field(mutate: Any, expected: str) -> None:
    with pytest.raises(BenchFormatError) as err:
        CostRecord.from_dict(_broken(mutate), where="bench.json record 3")
    assert str(err.value).startswith(f"bench.json record 3: {expected}")


def test_load_bench_names_file_and_record(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    good = _raw("a", 0.3, 4.0, 200, 800)
    bad = _raw("d", 0.3, 4.0, 200, 800)
    del bad["cost"]["p99_ms"]
    path.write_text(json.dumps([good, good, good, bad]))
    with pytest.raises(BenchFormatError, match=r"bench\.json record 3: cost\.p99_ms missing"):
        load_bench(path)


def test_load_bench_missing_and_malformed(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(BenchFormatError, match=r"nope\.json: file not found"):
        load_bench(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"config": {"name": "a"},\n')
    with pytest.raises(BenchFormatError, match=r"broken\.json: not valid JSON \(line 2"):
        load_bench(broken)
    obj = tmp_path / "obj.json"
    obj.write_text("{}")
    with pytest.raises(BenchFormatError, match=r"obj\.json: expected a JSON list"):
        load_bench(obj)


def test_cost_on_measured_projected_none() -> None:
    rec = _rec(
        "a", 0.3, 4.0, 200, 800, projections={"h100": {"p50_ms": 1, "p99_ms": 2, "qps": 900}}
    )
    assert cost_on(rec, "local") == rec.cost
    proj = cost_on(rec, "h100")
    assert proj is not None
    assert proj["p99_ms"] == 2 and proj["qps"] == 900
    assert proj["peak_rss_mb"] == 800  # memory carried from the measurement
    assert cost_on(rec, "tpu") is None


def test_records_on_prefers_measurement() -> None:
    projected = _rec(
        "a", 0.3, 40.0, 20, 800, projections={"h100": {"p50_ms": 1, "p99_ms": 2, "qps": 9}}
    )
    measured = _rec("a", 0.3, 3.0, 700, 800, hardware="h100")
    for order in ([projected, measured], [measured, projected]):
        ((rec, cost, source),) = records_on(order, "h100")
        assert source == "measured" and cost["qps"] == 700 and rec is measured


def test_metric_label() -> None:
    assert metric_label("ndcg@10") == "NDCG@10"
    assert metric_label("recall@20") == "Recall@20"
    assert metric_label("cold_ndcg@10") == "cold NDCG@10"


# --------------------------------------------------------------------------------------------
# planner

PROFILES = {
    "local": {"name": "local", "memory_gb": 16, "usd_per_hour": 1.0},
    "big": {"name": "big", "memory_gb": 64, "usd_per_hour": 4.0},
}


def _ladder() -> list[CostRecord]:
    return [
        _rec("small", 0.20, 2.0, 1000, 500),
        _rec("mid", 0.25, 10.0, 200, 1500),
        _rec("large", 0.30, 80.0, 20, 6000),
    ]


def _entry(result: dict[str, Any], hw: str = "local") -> dict[str, Any]:
    entry: dict[str, Any] = result["hardware"][hw]
    return entry


def test_plan_unconstrained_picks_best_quality() -> None:
    e = _entry(plan(_ladder(), ["local"], PROFILES))
    assert e["config"]["name"] == "large"
    assert e["machines"] == 1
    assert e["usd_per_month"] == pytest.approx(730.0)
    assert e["next_better"] is None
    assert e["cost_source"] == "measured"
    assert "No configuration with data on local has higher NDCG@10" in e["reason"]


def test_plan_p99_binds_and_next_better_breaks_it() -> None:
    e = _entry(plan(_ladder(), ["local"], PROFILES, p99_ms=50))
    assert e["config"]["name"] == "mid"
    nb = e["next_better"]
    assert nb["config"]["name"] == "large"
    assert nb["quality_gain"] == pytest.approx(0.05)
    assert [b["constraint"] for b in nb["breaks"]] == ["p99_ms"]
    assert "50 ms p99 budget" in e["reason"]
    assert "`large`" in e["reason"] and "+0.050 NDCG@10" in e["reason"]


def test_plan_memory_limit_binds() -> None:
    e = _entry(plan(_ladder(), ["local"], PROFILES, max_memory_mb=1000))
    assert e["config"]["name"] == "small"
    assert e["next_better"]["config"]["name"] == "mid"  # the next step, not the biggest
    assert [b["constraint"] for b in e["next_better"]["breaks"]] == ["max_memory_mb"]
    assert e["memory"]["per_machine_mb"] == 500


def test_plan_hardware_memory_binds() -> None:
    profiles = {"tiny": {"memory_gb": 4, "usd_per_hour": 1.0}}  # 4096 MB < large's 6000
    recs = [
        _rec(
            r.name,
            r.quality["ndcg@10"],
            r.cost["p99_ms"],
            r.cost["qps"],
            r.cost["peak_rss_mb"],
            "tiny",
        )
        for r in _ladder()
    ]
    e = _entry(plan(recs, ["tiny"], profiles), "tiny")
    assert e["config"]["name"] == "mid"
    assert [b["constraint"] for b in e["next_better"]["breaks"]] == ["hardware_memory"]
    assert "does not fit in the 4 GB memory of tiny" in e["reason"]


def test_plan_machines_from_qps_and_budget_binds() -> None:
    # small: ceil(500/1000)=1, mid: ceil(500/200)=3, large: ceil(500/20)=25 machines.
    result = plan(_ladder(), ["local"], PROFILES, qps=500, budget_usd_month=3 * 730)
    e = _entry(result)
    assert e["config"]["name"] == "mid"
    assert e["machines"] == 3
    assert e["usd_per_month"] == pytest.approx(3 * 730)
    nb = e["next_better"]
    assert nb["machines"] == 25
    assert nb["extra_usd_per_month"] == pytest.approx(22 * 730)
    assert [b["constraint"] for b in nb["breaks"]] == ["budget_usd_month"]
    assert "3 machines serve 500 QPS for $2,190/month" in e["reason"]


def test_plan_machines_exact_multiple_and_minimum_one() -> None:
    assert _entry(plan(_ladder(), ["local"], PROFILES, qps=400, p99_ms=50))["machines"] == 2
    assert _entry(plan(_ladder(), ["local"], PROFILES, qps=1, p99_ms=50))["machines"] == 1


def test_plan_min_ndcg_binds() -> None:
    e = _entry(plan(_ladder(), ["local"], PROFILES, min_ndcg=0.22, max_memory_mb=1000))
    assert e["infeasible"]["constraint"] in ("min_ndcg", "max_memory_mb")
    # small breaks only min_ndcg, mid and large break only memory => memory admits 2, binds.
    assert e["infeasible"]["constraint"] == "max_memory_mb"
    e = _entry(plan(_ladder(), ["local"], PROFILES, min_ndcg=0.26, p99_ms=50))
    # small and mid break only min_ndcg; large breaks only p99 => min_ndcg binds (admits 2).
    inf = e["infeasible"]
    assert inf["constraint"] == "min_ndcg"
    assert "NDCG@10 ≥ 0.260" in inf["message"]
    assert "`mid`" in inf["message"] and "0.250" in inf["message"]


def test_plan_infeasible_names_binding_constraint_with_numbers() -> None:
    inf = _entry(plan(_ladder(), ["local"], PROFILES, p99_ms=1))["infeasible"]
    assert inf["constraint"] == "p99_ms"
    assert inf["message"].startswith(
        "no configuration meets p99 ≤ 1 ms on local: the fastest, `small`, has p99 2 ms."
    )
    assert "Dropping this limit admits 3 configurations" in inf["message"]


def test_plan_infeasible_no_single_constraint() -> None:
    # Each config breaks two limits; the closest is blamed for its worst breach.
    recs = [_rec("near", 0.3, 30.0, 100, 1500), _rec("far", 0.2, 100.0, 100, 100)]
    result = plan(recs, ["local"], PROFILES, p99_ms=10, max_memory_mb=1000, min_ndcg=0.25)
    inf = _entry(result)["infeasible"]
    # near: p99 3x the limit, memory 1.5x; far: p99 10x, quality 20 % under the floor.
    assert inf["constraint"] == "p99_ms"
    assert "no single limit binds" in inf["message"].lower()
    assert "the closest, `near`, breaks the 10 ms p99 budget" in inf["message"]


def test_plan_budget_without_price_is_infeasible() -> None:
    result = plan(_ladder(), ["local"], {"local": {"memory_gb": 16}}, budget_usd_month=100)
    inf = _entry(result)["infeasible"]
    assert inf["constraint"] == "budget_usd_month"
    assert "no price" in inf["message"]
    # Without a budget, a missing price just leaves the monthly cost unknown.
    e = _entry(plan(_ladder(), ["local"], {}))
    assert e["usd_per_month"] is None and "no price known" in e["reason"]


def test_plan_uses_projections_for_other_hardware_and_reports_no_data() -> None:
    recs = [
        _rec(
            "small",
            0.20,
            2.0,
            1000,
            500,
            projections={"big": {"p50_ms": 0.5, "p99_ms": 1.0, "qps": 5000}},
        ),
        _rec(
            "large",
            0.30,
            80.0,
            20,
            6000,
            projections={"big": {"p50_ms": 5, "p99_ms": 8.0, "qps": 250}},
        ),
    ]
    result = plan(recs, ["local", "big", "tpu"], PROFILES, p99_ms=10, qps=500)
    local, big = _entry(result, "local"), _entry(result, "big")
    assert local["config"]["name"] == "small" and local["cost_source"] == "measured"
    assert big["config"]["name"] == "large" and big["cost_source"] == "projected"
    assert big["machines"] == 2 and big["usd_per_month"] == pytest.approx(2 * 4 * 730)
    assert big["cost"]["p99_ms"] == 8.0 and big["cost"]["peak_rss_mb"] == 6000
    assert "projected from local" in big["reason"]
    assert _entry(result, "tpu")["infeasible"]["constraint"] == "no_data"


def test_plan_with_profile_objects() -> None:
    # Attribute access, like the HardwareProfile dataclass.
    profile = SimpleNamespace(
        name="local",
        kind="cpu",
        cores=8,
        memory_gb=16.0,
        mem_bandwidth_gbs=50.0,
        peak_flops={},
        usd_per_hour=2.0,
        sources=[],
    )
    e = _entry(plan(_ladder(), ["local"], {"local": profile}))
    assert e["usd_per_month"] == pytest.approx(2 * 730)


def test_plan_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="qps must be a positive number"):
        plan(_ladder(), ["local"], PROFILES, qps=0)


def test_plan_is_json_serialisable_and_table_readable() -> None:
    result = plan(_ladder(), ["local", "tpu"], PROFILES, p99_ms=50, qps=500)
    json.dumps(result)
    table = format_plan_table(result)
    assert "Constraints: p99 ≤ 50 ms, 500 QPS" in table
    assert "local" in table and "mid" in table and "(no data)" in table
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("hardware"))
    assert "NDCG@10" in header and "machines" in header
    infeasible = format_plan_table(plan(_ladder(), ["local"], PROFILES, p99_ms=1))
    assert "(infeasible: p99_ms)" in infeasible and "the fastest" in infeasible


def test_plan_says_when_a_projection_is_launch_bound() -> None:
    proj = {"p50_ms": 30.0, "p99_ms": 31.0, "qps": 30.0, "launch_bound_share": 0.97}
    rec = _rec("llm", 0.3, 3000.0, 0.4, 700, projections={"big": proj})
    assert rec.projections["big"]["launch_bound_share"] == pytest.approx(0.97)
    e = _entry(plan([rec], ["big"], PROFILES), "big")
    assert "97% of it is big's host launching kernels one by one" in e["reason"]
    # Under half: not worth a sentence; measured: never.
    rec = _rec(
        "llm", 0.3, 3000.0, 0.4, 700, projections={"big": {**proj, "launch_bound_share": 0.2}}
    )
    assert "launching kernels" not in _entry(plan([rec], ["big"], PROFILES), "big")["reason"]
    assert "launching kernels" not in _entry(plan([rec], ["local"], PROFILES))["reason"]
    with pytest.raises(BenchFormatError, match="launch_bound_share"):
        CostRecord.from_dict(
            _raw("x", 0.3, 3.0, 1, 1, projections={"big": {**proj, "launch_bound_share": "most"}})
        )


def test_planner_sizes_machines_from_service_capacity_when_calibrated() -> None:
    """With a calibrated serving overhead the bench records ``service_qps`` (scoring plus the
    HTTP service); machines are sized from it, not from the scorer's batch throughput."""
    from frugalrec.bench.service import scoring_seconds, service_qps
    from frugalrec.cost.hardware import load_profiles
    from frugalrec.cost.planner import qps_per_machine

    raw = _raw("ease", 0.3, 4.0, 20_000, 800)
    raw["cost"]["qps_by_batch"] = {"1": 2000.0}
    assert scoring_seconds(raw["cost"]) == pytest.approx(5e-4)
    raw["cost"]["service_qps"] = service_qps(1.5e-3, scoring_seconds(raw["cost"]))
    assert raw["cost"]["service_qps"] == pytest.approx(500.0)
    rec = CostRecord.from_dict(raw)
    assert qps_per_machine(rec.cost) == pytest.approx(500.0)
    assert qps_per_machine(_rec("x", 0.3, 4.0, 20_000, 800).cost) == 20_000
    profiles = load_profiles(measure_local=False)
    hw = next(h for h in profiles if h != "local")
    raw["hardware"] = hw
    out = plan([CostRecord.from_dict(raw)], [hw], profiles, qps=1200)
    entry = out["hardware"][hw]
    assert entry["machines"] == 3 and entry["qps_basis"] == "service"
    assert "*" not in format_plan_table(out).split("\n")[2]
