"""The planner knows every rung of the LLM ladder: the committed bench of the four rungs
(docs/bench/llm-bench-ladder, measured on the reference CPU) gives each a measured cost on
``local`` and a projection to every GPU profile, and ``plan`` weighs them like any other
configuration (known answers from that file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from frugalrec.cost.planner import plan
from frugalrec.cost.records import cost_on, load_bench

BENCH = Path(__file__).parents[1] / "docs/bench/llm-bench-ladder/bench.json"
RUNGS = ("smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "qwen2.5-1.5b")
GPUS = ("t4", "a10g", "l4", "h100")


@pytest.fixture(scope="module")
def records():  # type: ignore[no-untyped-def]
    return load_bench(BENCH)


def test_every_rung_has_a_measured_cost_and_gpu_projections(records) -> None:  # type: ignore[no-untyped-def]
    by_rung = {r.config["reranker"].removeprefix("llm-"): r for r in records}
    assert set(RUNGS) <= set(by_rung)
    cpu_p50 = [cost_on(by_rung[r], "local")["p50_ms"] for r in RUNGS]  # type: ignore[index]
    assert all(ms > 100 for ms in cpu_p50)  # a forward pass of ~350 tokens on 2 cores: seconds
    assert cpu_p50[3] == max(cpu_p50)  # the 1.5B rung is the slowest here
    for rung in RUNGS:
        for gpu in GPUS:
            projected = cost_on(by_rung[rung], gpu)
            assert projected is not None, (rung, gpu)
            assert 0 < projected["p99_ms"] < cost_on(by_rung[rung], "local")["p99_ms"]  # type: ignore[index]


def test_plan_weighs_the_rungs_per_hardware(records) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.cost.hardware import load_profiles

    profiles = load_profiles(measure_local=False)
    out = plan(records, ["local", *GPUS], profiles, p99_ms=100.0)["hardware"]
    # On this CPU no rung fits a 100 ms p99: the cheap stage is chosen.
    assert out["local"]["config"]["reranker"] == "none"
    assert out["local"]["next_better"]["config"]["reranker"].startswith("llm-")  # breaks p99
    # On every GPU profile some rung fits 100 ms (launch-bound forward passes of 20-150 ms).
    for gpu in GPUS:
        assert out[gpu]["config"]["reranker"].startswith("llm-"), gpu


def _llm_records(ci95: list[float], fine_tuned: bool = False):  # type: ignore[no-untyped-def]
    """A cheap stage (NDCG 0.360, 5 ms) and an LLM re-ranker over it (0.366 measured on a
    40-user sample, 900 ms), on a hypothetical GPU profile where both fit the budget."""
    from frugalrec.cost.records import CostRecord

    def raw(name: str, ndcg: float, p99: float, qps: float, **quality) -> CostRecord:  # type: ignore[no-untyped-def]
        return CostRecord.from_dict({
            "config": {"name": name}, "quality": {"ndcg@10": ndcg, **quality},
            "cost": {"p50_ms": p99 / 2, "p95_ms": p99, "p99_ms": p99, "qps": qps,
                     "peak_rss_mb": 500.0},
            "hardware": "local",
        })  # fmt: skip

    gain = {"metric": "ndcg@10", "delta": 0.006, "ci95": ci95, "users": 40, "cheap": 0.360,
            "fine_tuned": fine_tuned}  # fmt: skip
    return [raw("ease", 0.360, 5.0, 200.0), raw("ease+llm", 0.366, 900.0, 1.5, llm_gain=gain)]


def test_plan_counts_an_llm_gain_only_when_its_interval_is_above_zero() -> None:
    from frugalrec.cost.planner import planning_quality

    profiles = {"local": {"usd_per_hour": 1.0, "memory_gb": 16}}
    unshown = _llm_records([-0.003, 0.015])
    q, note = planning_quality(unshown[1], "ndcg@10")
    assert q == 0.360 and note is not None and "[-0.0030, +0.0150] on 40 users" in note
    assert planning_quality(unshown[0], "ndcg@10") == (0.360, None)
    out = plan(unshown, ["local"], profiles, p99_ms=1000.0)["hardware"]["local"]
    # planned at the cheap stage's quality, the LLM only costs more: the cheap stage wins,
    # and the plan says why the higher measured figure was not taken
    assert out["config"]["name"] == "ease"
    (entry,) = out["not_shown"]
    assert {k: entry[k] for k in ("config", "quality", "planned_at", "note", "p99_ms")} == {
        "config": "ease+llm", "quality": 0.366, "planned_at": 0.360, "note": note,
        "p99_ms": 900.0}  # fmt: skip
    assert entry["usd_per_month"] == pytest.approx(730.0) and entry["training"] is None
    assert "`ease+llm`: its NDCG@10 change" in out["reason"]
    assert out["next_better"] is None  # nothing is shown better than the cheap stage

    shown = _llm_records([0.001, 0.012], fine_tuned=True)
    assert planning_quality(shown[1], "ndcg@10") == (0.366, None)
    out = plan(shown, ["local"], profiles, p99_ms=1000.0)["hardware"]["local"]
    assert out["config"]["name"] == "ease+llm" and out["not_shown"] == []
    assert "fine-tuned LLM re-ranker buys +0.0060 NDCG@10 [+0.0010, +0.0120]" in out["reason"]
    # the budget still binds: at 100 ms the shown gain cannot be afforded
    out = plan(shown, ["local"], profiles, p99_ms=100.0)["hardware"]["local"]
    assert out["config"]["name"] == "ease" and out["next_better"]["config"]["name"] == "ease+llm"


def test_llm_rungs_join_the_grid_where_their_measured_cost_fits_the_budget() -> None:
    from frugalrec.bench.llm_configs import RERANK_PROMPT_TOKENS, rungs_within_budget
    from frugalrec.llm.registry import llm_spec

    rate = {r: llm_spec(r).cpu_prompt_tokens_per_s for r in RUNGS}
    est = {r: 16 * RERANK_PROMPT_TOKENS / rate[r] + 10.0 for r in RUNGS}  # type: ignore[operator]
    chosen, got = rungs_within_budget(RUNGS, 16, 1e9)
    assert chosen == RUNGS and got == pytest.approx(est)
    # a budget for the cheapest rung alone (gemma3-270m has the highest measured rate)
    cheapest = min(RUNGS, key=lambda r: est[r])
    assert rungs_within_budget(RUNGS, 16, est[cheapest] + 1.0)[0] == (cheapest,)
    # cheapest first until the budget is spent; the registry's order is kept in the answer
    two = sorted(est.values())[:2]
    chosen, _ = rungs_within_budget(RUNGS, 16, sum(two) + 1.0)
    assert sorted(est[c] for c in chosen) == two and list(chosen) == [
        r for r in RUNGS if r in chosen
    ]
    assert rungs_within_budget(RUNGS, 16, 1.0)[0] == ()


def test_training_seconds_are_projected_to_other_hardware_by_fp32_peak() -> None:
    from frugalrec.cost.records import CostRecord

    raw = {
        "config": {"name": "ease+llm+lora"},
        "quality": {"ndcg@10": 0.37},
        "cost": {"p50_ms": 900.0, "p95_ms": 950.0, "p99_ms": 1000.0, "qps": 1.0,
                 "peak_rss_mb": 600.0},
        "hardware": "local",
        "projections": {"t4": {"p50_ms": 30.0, "p95_ms": 35.0, "p99_ms": 40.0, "qps": 30.0}},
        "training": {"wall_seconds": 1000.0},
    }  # fmt: skip
    profiles = {
        "local": {"usd_per_hour": 0.09, "memory_gb": 16, "peak_flops": {"fp32": 40e9}},
        "t4": {"usd_per_hour": 0.526, "memory_gb": 16, "peak_flops": {"fp32": 8.1e12}},
        "mystery": {"usd_per_hour": 1.0, "memory_gb": 16},  # no peak: not projected
    }
    rec = CostRecord.from_dict(raw)
    rec.projections["mystery"] = dict(rec.projections["t4"])
    out = plan([rec], ["local", "t4", "mystery"], profiles, retrain_days=7)["hardware"]
    local, t4, mystery = (out[h]["training"] for h in ("local", "t4", "mystery"))
    assert local["seconds"] == 1000.0 and local["seconds_basis"] == "measured"
    assert t4["seconds"] == pytest.approx(1000.0 * 40e9 / 8.1e12)
    assert t4["seconds_basis"].startswith("projected") and t4["measured_seconds"] == 1000.0
    assert t4["one_off_usd"] == pytest.approx(t4["seconds"] / 3600 * 0.526)
    assert mystery["seconds"] == 1000.0 and "not projected" in mystery["seconds_basis"]
