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
