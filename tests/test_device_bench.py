"""Cross-device projection check: analytic counts and the calibrate-here/project-there logic."""

from __future__ import annotations

import numpy as np
import pytest

from frugalrec.bench.device import (
    MINILM,
    compare,
    encoder_cost,
    gemm_cost,
    llm_prefill_cost,
)
from frugalrec.cost.hardware import HardwareProfile
from frugalrec.opcount import StageCost


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


def _gpu(name: str = "gpu", **launch: float) -> HardwareProfile:
    return HardwareProfile(name=name, kind="gpu", cores=100, memory_gb=80,
                           mem_bandwidth_gbs=2000, peak_flops={"fp32": 50e12, "fp16": 400e12},
                           usd_per_hour=2.0, **launch)  # type: ignore[arg-type]  # fmt: skip


def test_project_is_launch_bound_or_roofline_bound_whichever_is_slower() -> None:
    from frugalrec.cost.roofline import Calibration, KindCalibration, project

    cal = Calibration(profile="local", quantile=0.5,
                      kinds={"x": KindCalibration(overhead_s=5e-3, eff_compute=0.5,
                                                  eff_memory=0.5)})  # fmt: skip
    gpu = _gpu(launch_us=20.0, kernel_us=4.0, sync_us=10.0)
    small = StageCost(name="s", kind="x", flops=1e6, bytes_moved=1e6, launches=100)
    # Host-bound: 100 launches at 20 us beat the device's 100 x 4 us + tiny roofline; the
    # CPU's 5 ms per-call overhead does not travel to the accelerator.
    assert project(small, cal, gpu) == pytest.approx(10e-6 + 100 * 20e-6)
    # A CUDA graph launches once: the device's per-kernel floor binds instead.
    roof = max(1e6 / (0.5 * 50e12), 1e6 / (0.5 * 2000e9))
    assert project(small, cal, gpu, cuda_graph=True) == pytest.approx(10e-6 + roof + 100 * 4e-6)
    # Big work: the roofline binds and the launches only add their device floor.
    big = StageCost(name="b", kind="x", flops=1e13, bytes_moved=1e9, launches=100)
    assert project(big, cal, gpu) == pytest.approx(10e-6 + 1e13 / (0.5 * 50e12) + 400e-6)
    # Without a launch count, without launch figures, or calibrated on the machine itself:
    # the calibrated overhead plus the roofline, as before.
    plain = 5e-3 + roof
    assert project(StageCost(name="s", kind="x", flops=1e6, bytes_moved=1e6), cal, gpu) == (
        pytest.approx(plain)
    )
    assert project(small, cal, _gpu()) == pytest.approx(plain)
    own = Calibration(profile="gpu", quantile=0.5, kinds=cal.kinds)
    assert project(small, own, gpu) == pytest.approx(plain)
    # Which bound applies, for the planner's explanation.
    from frugalrec.cost.roofline import launch_bound

    assert launch_bound(small, cal, gpu) and not launch_bound(big, cal, gpu)
    assert not launch_bound(small, own, gpu) and not launch_bound(small, cal, _gpu())


def test_fit_launch_model_recovers_known_figures() -> None:
    from frugalrec.bench.device import fit_launch_model
    from frugalrec.cost.roofline import Calibration, KindCalibration, project

    cal = Calibration(profile="local", quantile=0.5,
                      kinds={"llm": KindCalibration(0.0, 0.4, 0.6),
                             "gemm": KindCalibration(0.0, 0.5, 0.8)})  # fmt: skip
    truth = _gpu(launch_us=31.622776601683793, kernel_us=5.011872336272725, sync_us=10.0)
    recs = []
    for kind, n, sizes in (("llm", 1000, [1e9, 1e11, 1e12, 1e13]), ("gemm", 1, [1e5, 1e8, 1e10])):
        for f in sizes:
            for graph in (False, True):
                r = StageCost(name=f"{kind}@{f}", kind=kind, flops=f, bytes_moved=f / 10,
                              launches=n)  # fmt: skip
                t = project(r, cal, truth, cuda_graph=graph)
                recs.append(StageCost(name=r.name, kind=kind + (":cudagraph" if graph else ""),
                                      flops=f, bytes_moved=f / 10, launches=n,
                                      seconds=[t, t]))  # fmt: skip
    fit = fit_launch_model(cal, recs, _gpu())
    assert fit["launch_us"] == pytest.approx(31.62, rel=1e-3)
    assert fit["kernel_us"] == pytest.approx(5.01, rel=1e-3)
    assert fit["sync_us"] == pytest.approx(10.0, rel=0.15)  # on the grid's nearest point
    assert fit["train_median_abs_error"] < 0.02
    with pytest.raises(ValueError, match="launches"):
        fit_launch_model(cal, [StageCost(name="a", kind="llm", flops=1, bytes_moved=1,
                                         seconds=[1.0])], _gpu())  # fmt: skip


def test_count_launches_counts_kernels_not_views_and_ignores_shapes() -> None:
    import torch
    from transformers import BertConfig, BertModel

    from frugalrec.bench.device import count_launches

    a, b = torch.randn(3, 4), torch.randn(5, 4)
    assert count_launches(lambda: a @ b.T) == 1  # the transpose is a view
    assert count_launches(lambda: (a @ b.T).relu().sum()) == 3
    torch.manual_seed(0)
    bert = BertModel(BertConfig(**MINILM)).eval()

    def fwd(batch: int, seq: int) -> int:
        ids = torch.randint(1000, 3000, (batch, seq))
        return count_launches(lambda: bert(input_ids=ids, attention_mask=torch.ones_like(ids)))

    n = fwd(1, 8)
    # 6 layers x (q, k, v, out, 2 FFN linears + attention + gelu + 2 adds + 2 norms) + embed.
    assert 6 * 12 <= n <= 6 * 12 + 20
    assert fwd(4, 32) == n


def test_compare_reports_a_held_out_launch_model() -> None:
    from frugalrec.cost.roofline import Calibration, KindCalibration, project

    here = _profile("local", fp32_tflops=0.2, bw_gbs=20)
    gpu_true = _gpu("big", launch_us=30.0, kernel_us=5.0, sync_us=10.0)
    local = _synthetic(here, 0.5, 0.7, 2e-3)  # a CPU's 2 ms of Python per call
    for r in local["records"]:
        r["launches"] = 500 if r["kind"] == "llm:prefill" else 1
    cal = Calibration(profile="local", quantile=0.5,
                      kinds={k: KindCalibration(2e-3, 0.5, 0.7)
                             for k in ("gemm:score", "llm:prefill")})  # fmt: skip
    remote = []
    for r in local["records"]:
        for graph in (False, True):
            s = StageCost(**r)
            t = project(s, cal, gpu_true, cuda_graph=graph)
            kind = s.kind + (":cudagraph" if graph else "")
            remote.append({**r, "kind": kind, "seconds": [t] * 5})
    res = compare(local, {"records": remote}, "big",
                  profiles={"local": here, "big": _gpu("big")})  # fmt: skip
    lm = res["launch_model"]
    assert res["cross_device_median_abs_error_without_launch_model"] > 0.5
    assert lm["held_out_median_abs_error"] < 0.1
    assert lm["fitted_on_all"]["launch_us"] == pytest.approx(30.0, rel=0.1)


def test_decoder_launches_depend_on_depth_not_width() -> None:
    from frugalrec.bench.device import SMOLLM2_135M, decoder_launches, reference_launches

    two, four = decoder_launches(2), decoder_launches(4)
    per_layer = (four - two) // 2
    assert per_layer > 10 and four - two == 2 * per_layer  # linear in depth
    # The tiny-width count equals the full-width SmolLM2-135M's.
    layers = SMOLLM2_135M["num_hidden_layers"]
    assert decoder_launches(layers) == reference_launches()["llm:prefill"]
    with pytest.raises(ValueError, match="layers"):
        decoder_launches(0)


def test_launch_probe_measures_a_per_op_dispatch_cost_on_the_cpu() -> None:
    from frugalrec.bench.device import launch_probe

    probe = launch_probe("cpu", n=200, repeats=3)
    # A one-element op dispatched from Python costs microseconds, not nanoseconds or ms.
    assert 0.05 < probe["launch_us"] < 1000
    assert probe["sync_us"] >= 0 and "kernel_us" not in probe
