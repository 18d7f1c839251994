"""Cross-device projection check: analytic counts and the calibrate-here/project-there logic."""

from __future__ import annotations

import numpy as np
import pytest

from frugalrec.cost.device_bench import (
    MINILM,
    compare,
    encoder_cost,
    gemm_cost,
    llm_prefill_cost,
)
from frugalrec.cost.hardware import HardwareProfile
from frugalrec.cost.profiler import StageCost


def _profile(name: str, fp32_tflops: float, bw_gbs: float) -> HardwareProfile:
    return HardwareProfile(name=name, kind="cpu", cores=2, memory_gb=8,
                           mem_bandwidth_gbs=bw_gbs,
                           peak_flops={"fp32": fp32_tflops * 1e12, "fp16": fp32_tflops * 2e12},
                           usd_per_hour=1.0)  # fmt: skip


def test_gemm_cost_counts_multiply_adds_and_bytes() -> None:
    c = gemm_cost(b=2, n=10, d=3, dtype="fp32")
    assert c["flops"] == 2 * 2 * 10 * 3
    assert c["bytes_moved"] == 4 * (10 * 3 + 2 * 3) + 4 * 2 * 10
    assert gemm_cost(2, 10, 3, "fp16")["working_set_bytes"] == 2 * 10 * 3


def test_transformer_costs_grow_with_tokens() -> None:
    a, b = encoder_cost(1, 16, "fp32"), encoder_cost(2, 16, "fp32")
    # Linear layers dominate: twice the texts is (almost exactly) twice the work.
    assert b["flops"] == pytest.approx(2 * a["flops"], rel=1e-9)
    h, layers, inter = MINILM["hidden_size"], MINILM["num_hidden_layers"], 1536
    assert a["working_set_bytes"] == 4 * layers * (4 * h * h + 2 * h * inter)
    assert llm_prefill_cost(512, "fp32")["flops"] > 2.9 * llm_prefill_cost(174, "fp32")["flops"]


def _synthetic(profile: HardwareProfile, eff_c: float, eff_m: float, overhead: float) -> dict:
    """Records whose seconds follow one known roofline on ``profile``."""
    rng = np.random.default_rng(0)
    recs = []
    for kind, sizes in (("gemm:score", [1e4, 1e5, 1e6, 1e7]), ("llm:prefill", [174, 512])):
        for size in sizes:
            if kind == "gemm:score":
                cost = gemm_cost(1, int(size), 64, "fp32")  # memory-bound
            else:
                cost = llm_prefill_cost(int(size), "fp32")  # compute-bound
            t = overhead + max(cost["flops"] / (eff_c * profile.peak("fp32")),
                               cost["bytes_moved"] / (eff_m * profile.bandwidth))  # fmt: skip
            seconds = (t * (1 + 0.001 * rng.random(50))).tolist()
            recs.append(vars(StageCost(name=f"{kind}@{size}", kind=kind, seconds=seconds,
                                       **cost)))  # fmt: skip
    return {"records": recs}


def test_compare_recovers_a_roofline_that_transfers() -> None:
    here = _profile("local", fp32_tflops=0.2, bw_gbs=20)
    there = _profile("big", fp32_tflops=50, bw_gbs=2000)
    profiles = {"local": here, "big": there}
    # Same efficiencies and overhead on both machines: the projection must be near exact.
    res = compare(_synthetic(here, 0.5, 0.7, 1e-5), _synthetic(there, 0.5, 0.7, 1e-5),
                  "big", profiles=profiles)  # fmt: skip
    assert res["cross_device_median_abs_error"] < 0.1
    # The compute-bound LLM kind never sees the memory side: the prior must keep it from
    # being explained by an absurd memory efficiency that explodes on the faster machine.
    llm = [r for r in res["per_record"] if r["kind"] == "llm:prefill"]
    assert all(abs(r["rel_error"]) < 0.25 for r in llm)


def test_compare_reports_efficiency_that_does_not_transfer() -> None:
    here = _profile("local", fp32_tflops=0.2, bw_gbs=20)
    there = _profile("big", fp32_tflops=50, bw_gbs=2000)
    # The big machine reaches a tenth of its ceilings: projections are ~10x optimistic.
    res = compare(_synthetic(here, 0.5, 0.7, 1e-6), _synthetic(there, 0.05, 0.07, 1e-6),
                  "big", profiles={"local": here, "big": there})  # fmt: skip
    assert res["cross_device_median_abs_error"] > 0.8
    assert res["within_device_median_abs_error"] < 0.1
