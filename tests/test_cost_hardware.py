"""Hardware profiles, ceilings, profiler pieces, roofline projection and scaling fits."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from frugalrec import opcount as O
from frugalrec.bench import profiler as P
from frugalrec.bench.scaling import measure_retrieval_scaling
from frugalrec.cost.ceilings import Ceilings, fraction_of_roofline, measure_ceilings
from frugalrec.cost.hardware import (
    HardwareProfile,
    HardwareProfileError,
    builtin_path,
    load_profiles,
)
from frugalrec.cost.roofline import (
    Calibration,
    KindCalibration,
    calibrate,
    project,
    project_throughput,
    projection_error,
    split_half,
)
from frugalrec.cost.scaling import (
    ScalingModel,
    fit_retrieval_scaling,
    fit_scaling,
    stage_costs,
)
from frugalrec.pipeline.retrieval import ExactConfig, ExactRetriever, HNSWConfig

FAKE = Ceilings(
    copy_gbs=20.0,
    gemv_gbs=18.0,
    gemm_fp32_gflops=150.0,
    threads=2,
    cache_gbs=80.0,
    llc_bytes=32 * 2**20,
    cpu_model="x",
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRUGALREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FRUGALREC_HARDWARE", raising=False)
    monkeypatch.delenv("FRUGALREC_LOCAL_USD_PER_HOUR", raising=False)


def _profile(name: str, peak: float, bw_gbs: float) -> HardwareProfile:
    return HardwareProfile(
        name=name,
        kind="cpu",
        cores=1,
        memory_gb=1.0,
        mem_bandwidth_gbs=bw_gbs,
        peak_flops={"fp32": peak, "fp16": 2 * peak, "int8": 4 * peak},
        usd_per_hour=1.0,
    )


# ---------------------------------------------------------------------------------------------
# hardware profiles
# ---------------------------------------------------------------------------------------------


def test_builtin_profiles_load_with_sources() -> None:
    profiles = load_profiles(ceilings=FAKE)
    assert {"local", "cpu16", "t4", "a10g", "l4", "h100"} <= set(profiles)
    for p in profiles.values():
        assert p.kind in ("cpu", "gpu")
        assert p.cores > 0 and p.memory_gb > 0 and p.mem_bandwidth_gbs > 0
        assert set(p.peak_flops) == {"fp32", "fp16", "int8"}
        for figure in ("cores", "memory_gb", "mem_bandwidth_gbs", "peak_tflops", "usd_per_hour"):
            assert p.sources.get(figure), (p.name, figure)
    local = profiles["local"]
    assert local.measured and local.mem_bandwidth_gbs == 20.0
    assert local.cache_mb == 32 and local.cache_bandwidth_gbs == 80.0
    assert local.peak("fp32") == pytest.approx(150e9)
    assert profiles["h100"].peak("bf16") == profiles["h100"].peak("fp16") > 1e14
    assert profiles["t4"].bandwidth == pytest.approx(320e9)
    assert local.usd_per_hour > 0 and "m6a.large" in local.sources["usd_per_hour"]


def test_local_price_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_profiles(ceilings=FAKE, local_usd_per_hour=0.5)["local"].usd_per_hour == 0.5
    monkeypatch.setenv("FRUGALREC_LOCAL_USD_PER_HOUR", "0.25")
    local = load_profiles(ceilings=FAKE)["local"]
    assert local.usd_per_hour == 0.25 and "override" in local.sources["usd_per_hour"]


def test_local_left_out_without_measurement() -> None:
    profiles = load_profiles(measure_local=False)  # empty cache, no measuring
    assert "local" not in profiles and "t4" in profiles


_GOOD = """
profiles:
  mybox:
    kind: gpu
    cores: 10
    memory_gb: 8
    mem_bandwidth_gbs: 100
    peak_tflops: {fp32: 1.5}
    usd_per_hour: 0.2
    sources: {cores: a, memory_gb: b, mem_bandwidth_gbs: c, peak_tflops: d, usd_per_hour: e}
"""


def test_user_profiles_extend_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(_GOOD)
    profiles = load_profiles(extra, ceilings=FAKE)
    assert profiles["mybox"].peak("fp32") == 1.5e12
    assert profiles["mybox"].peak("int8") == 1.5e12  # missing low precision = no speed-up
    override = tmp_path / "t4.yaml"
    override.write_text(_GOOD.replace("mybox", "t4"))
    monkeypatch.setenv("FRUGALREC_HARDWARE", str(override))
    assert load_profiles(ceilings=FAKE)["t4"].mem_bandwidth_gbs == 100


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda s: s.replace("    mem_bandwidth_gbs: 100\n", ""), "mybox.mem_bandwidth_gbs"),
        (lambda s: s.replace("cores: 10", "cores: -1"), "mybox.cores"),
        (lambda s: s.replace("cores: 10", "cores: 2.5"), "mybox.cores"),
        (lambda s: s.replace("kind: gpu", "kind: tpu"), "mybox.kind"),
        (lambda s: s.replace("memory_gb: 8", "memory_gb: lots"), "mybox.memory_gb"),
        (lambda s: s.replace("{fp32: 1.5}", "{fp64: 1.5}"), "mybox.peak_tflops.fp64"),
        (
            lambda s: s.replace("    cores: 10\n", "    cores: 10\n    colour: red\n"),
            "mybox.colour",
        ),
        (lambda s: s.replace("usd_per_hour: e", "other: e"), "mybox.sources.usd_per_hour"),
        (lambda s: s.replace("profiles:", "machines:"), "'profiles:'"),
        (lambda s: s + "  : [\n", "invalid YAML"),
    ],
)
def test_bad_profile_file_names_file_and_field(tmp_path: Path, edit, field: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(edit(_GOOD))
    with pytest.raises(HardwareProfileError) as err:
        load_profiles(bad, ceilings=FAKE)
    assert str(bad) in str(err.value)
    assert field in str(err.value)


def test_builtin_yaml_is_package_data() -> None:
    assert builtin_path().name == "hardware.yaml" and builtin_path().exists()


# ---------------------------------------------------------------------------------------------
# ceilings
# ---------------------------------------------------------------------------------------------


def test_measure_ceilings_tiny_budget() -> None:
    c = measure_ceilings(0.05, use_cache=False)
    assert c.copy_gbs > 0 and c.gemv_gbs > 0 and c.gemm_fp32_gflops > 0 and c.cache_gbs > 0
    assert c.threads >= 1 and len(c.runs["copy_gbs"]) >= 3
    assert Ceilings.from_dict(c.to_dict()) == c


def test_paired_bandwidth_fraction_runs() -> None:
    from frugalrec.cost.ceilings import paired_bandwidth_fraction

    a = np.ones(2**20, dtype=np.float32)
    out = paired_bandwidth_fraction(lambda: a.sum(), a.nbytes, rounds=3, copy_bytes=2**20)
    assert out["fraction"] > 0 and out["achieved_gbs"] > 0 and out["copy_gbs"] > 0


def test_fraction_of_roofline_known_answer() -> None:
    c = Ceilings(copy_gbs=10.0, gemv_gbs=10.0, gemm_fp32_gflops=100.0, threads=1)
    # 1 GB in 0.2 s = 5 GB/s = half the bandwidth; 10 GFLOP in 0.2 s = 50 GFLOP/s = half
    f = fraction_of_roofline(10e9, 1e9, 0.2, c)
    assert f["bandwidth_fraction"] == pytest.approx(0.5)
    assert f["compute_fraction"] == pytest.approx(0.5)
    assert f["roofline_fraction"] == pytest.approx(0.5)  # bound max(0.1, 0.1) / 0.2


# ---------------------------------------------------------------------------------------------
# profiler pieces
# ---------------------------------------------------------------------------------------------


def test_latency_percentiles_known_answer() -> None:
    s = np.arange(1, 101) / 1000.0  # 1..100 ms
    p = P.latency_percentiles(s)
    assert p["p50_ms"] == pytest.approx(50.5)
    assert p["p99_ms"] == pytest.approx(99.01)
    assert p["mean_ms"] == pytest.approx(50.5) and p["n"] == 100
    with pytest.raises(ValueError):
        P.latency_percentiles([])


def test_measure_online_counts_calls() -> None:
    calls: list[int] = []
    out = P.measure_online(
        lambda b: calls.append(len(b)), np.zeros((50, 3)), (1, 16), warmup=2, n_requests=32
    )
    assert set(out["batches"]) == {1, 16}
    assert out["latency"]["n"] == 32
    assert out["batches"][16]["n"] == 5  # max(min_calls=5, ceil(32 / 16))
    assert all(b in (1, 16) for b in calls)
    assert out["batches"][16]["items_per_s"] > 0
    lists = P.measure_online(lambda b: None, ["a", "b"], (3,), warmup=0, n_requests=3)
    assert lists["batches"][3]["n"] == 5
    t0 = time.perf_counter()
    P.measure_online(lambda b: None, [1], (1,), warmup=0, n_requests=1, min_seconds=0.05)
    assert time.perf_counter() - t0 >= 0.05


def test_timed_stage_and_stopwatch() -> None:
    sw = P.Stopwatch(trace_alloc=True)
    with sw.stage("alloc") as t:
        big = np.ones(8_000_000, dtype=np.float32)  # 32 MB
        time.sleep(0.02)
    assert t.wall_s >= 0.02 and t.cpu_s >= 0
    assert t.py_peak_bytes is not None and t.py_peak_bytes >= big.nbytes
    assert t.peak_rss_bytes >= t.rss_before_bytes
    assert sw.to_dict()["alloc"]["name"] == "alloc"
    assert P.process_peak_rss_bytes() > 0


def test_nbytes(tmp_path: Path) -> None:
    a = np.zeros((10, 4), dtype=np.float32)
    assert P.nbytes(a) == 160
    m = sp.random(50, 40, density=0.1, format="csr", dtype=np.float32, random_state=0)
    assert P.nbytes(m) == m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    r = ExactRetriever().build(a)
    assert P.nbytes(r) == 160
    assert P.nbytes({"a": a, "b": [a, a]}) == 480
    import faiss

    idx = faiss.IndexFlatIP(4)
    idx.add(a)
    assert P.nbytes(idx) == 160
    np.save(tmp_path / "a.npy", a)
    assert P.disk_bytes(tmp_path) == P.disk_bytes(tmp_path / "a.npy") > 160


def test_analytic_costs_known_answers() -> None:
    d = O.dense_scoring_cost(1000, 64, batch=4)
    assert d.flops == 2 * 4 * 1000 * 64
    assert d.bytes_moved == 1000 * 64 * 4 + 4 * 64 * 4 + 4 * 1000 * 4
    e = O.exact_topk_cost(1000, 64, 10, batch=1)
    assert e.bytes_moved == pytest.approx(1000 * 64 * 4 + 64 * 4 + 12 * 10)
    ease = O.ease_scoring_cost(20, 1000)
    assert ease.flops == 2 * 20 * 1000 and ease.bytes_moved == 4 * 20 * 1000 + 4 * 1000
    h1, h2 = O.hnsw_search_cost(10**6, 128, 16, 64), O.hnsw_search_cost(10**6, 128, 16, 64, batch=3)
    assert h2.flops == pytest.approx(3 * h1.flops) and h1.flops > 2 * 128 * 64 * 32
    ivf = O.ivfpq_search_cost(10**6, 128, nlist=1000, nprobe=10, m=16)
    scanned = 10 * 1000  # nprobe * n / nlist codes
    assert ivf.bytes_moved > scanned * (16 + 8)
    reranked = O.ivfpq_search_cost(10**6, 128, nlist=1000, nprobe=10, m=16, rerank=100)
    assert reranked.bytes_moved - ivf.bytes_moved >= 100 * 128 * 4
    assert (O.OpCount(1, 2) + O.OpCount(3, 4)) == O.OpCount(4, 6)
    flops, moved = O.OpCount(1.0, 2.0, 0.5)  # unpacks like a pair
    assert (flops, moved) == (1.0, 2.0)
    # the coarse centroids and PQ tables are re-read by every query: hot bytes
    assert ivf.hot_bytes == 1000 * 128 * 4 + 256 * 128 * 4
    assert O.ivfpq_search_cost(10**6, 128, 1000, 10, 16, batch=2).hot_bytes == 2 * ivf.hot_bytes


def test_stage_cost_json_round_trip() -> None:
    s = O.StageCost("exact@1k", 1e6, 2e6, [0.001, 0.002, 0.003], batch_size=16, meta={"n": 1})
    assert s.kind == "exact@1k"
    back = O.StageCost.from_json(s.to_json())
    assert back == s and back.p50_s == pytest.approx(0.002)
    assert s.intensity == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# roofline projection
# ---------------------------------------------------------------------------------------------


def test_project_known_answer() -> None:
    cal = Calibration(
        profile="here",
        quantile=0.99,
        kinds={"scan": KindCalibration(overhead_s=1e-3, eff_compute=0.5, eff_memory=0.25)},
    )
    there = _profile("there", peak=1e12, bw_gbs=100.0)
    # memory-bound: 1 GB / (0.25 * 100 GB/s) = 0.04 s; compute 1 GFLOP / (0.5 TFLOP/s) = 2 ms
    mem = O.StageCost("a", flops=1e9, bytes_moved=1e9, kind="scan", batch_size=8)
    assert project(mem, cal, there) == pytest.approx(1e-3 + 0.04)
    assert project_throughput(mem, cal, there) == pytest.approx(8 / 0.041)
    # compute-bound at fp16: 1 TFLOP / (0.5 * 2 TFLOP/s) = 1 s
    comp = O.StageCost("b", flops=1e12, bytes_moved=1e6, kind="scan", dtype="fp16")
    assert project(comp, cal, there) == pytest.approx(1e-3 + 1.0)
    with pytest.raises(KeyError):
        project(O.StageCost("c", 1, 1, kind="other"), cal, there)
    assert Calibration.from_json(cal.to_json()) == cal


def test_cache_aware_memory_time_known_answer() -> None:
    from dataclasses import replace

    p = replace(_profile("c", peak=1e12, bw_gbs=100.0), cache_mb=1.0, cache_bandwidth_gbs=1000.0)
    assert p.memory_seconds(1e9) == pytest.approx(1e9 / 100e9)  # unknown working set: DRAM
    assert p.memory_seconds(1e9, 2**19) == pytest.approx(1e9 / 1000e9)  # fits: cache
    # 4 MB working set, 1 MB cache: a quarter of the bytes from cache, the rest from DRAM
    assert p.memory_seconds(1e9, 4 * 2**20) == pytest.approx(1e9 * (0.25 / 1e12 + 0.75 / 1e11))
    # a sequential scan bigger than the cache gets no hits; one that fits gets all
    assert p.memory_seconds(1e9, 4 * 2**20, streaming=True) == pytest.approx(1e9 / 1e11)
    assert p.memory_seconds(1e9, 2**19, streaming=True) == pytest.approx(1e9 / 1e12)
    # hot bytes always from cache, the rest by the working-set rule
    assert p.memory_seconds(1e9, 0, hot_bytes=4e8) == pytest.approx(4e8 / 1e12 + 6e8 / 1e11)
    cal = Calibration("c", 0.5, {"*": KindCalibration(0.0, 1.0, 0.5)})
    st = O.StageCost("s", flops=1.0, bytes_moved=1e9, working_set_bytes=2**19)
    assert project(st, cal, p) == pytest.approx(2e-3)
    hot = O.StageCost("h", flops=1.0, bytes_moved=1e9, hot_bytes=1e9, working_set_bytes=2**30)
    assert project(hot, cal, p) == pytest.approx(2e-3)


def test_cache_figures_validated(tmp_path: Path) -> None:
    path = tmp_path / "cache.yaml"
    path.write_text(
        _GOOD.replace("    usd_per_hour: 0.2\n", "    usd_per_hour: 0.2\n    cache_mb: 6\n")
    )
    with pytest.raises(HardwareProfileError, match="cache_bandwidth_gbs"):
        load_profiles(path, ceilings=FAKE)
    both = _GOOD.replace(
        "    usd_per_hour: 0.2\n",
        "    usd_per_hour: 0.2\n    cache_mb: 6\n    cache_bandwidth_gbs: 900\n",
    )
    path.write_text(both)
    with pytest.raises(HardwareProfileError, match=r"sources\.cache_mb"):
        load_profiles(path, ceilings=FAKE)
    path.write_text(
        both.replace("usd_per_hour: e}", "usd_per_hour: e, cache_mb: f, cache_bandwidth_gbs: g}")
    )
    box = load_profiles(path, ceilings=FAKE)["mybox"]
    assert box.cache_mb == 6 and box.cache_bandwidth_gbs == 900


def _synthetic_records(here: HardwareProfile, o: float, ec: float, em: float, rng) -> list:
    recs = []
    for i, (flops, moved) in enumerate(
        [(10 ** rng.uniform(6, 11), 10 ** rng.uniform(5, 10)) for _ in range(24)]
    ):
        t = o + max(flops / (ec * here.peak()), moved / (em * here.bandwidth))
        noisy = t * np.exp(rng.normal(0, 0.02, size=50))
        recs.append(O.StageCost(f"r{i}", flops, moved, list(noisy), kind="scan"))
    return recs


def test_calibrate_recovers_efficiencies_and_projects() -> None:
    rng = np.random.default_rng(0)
    here = _profile("here", peak=1e11, bw_gbs=10.0)
    recs = _synthetic_records(here, o=2e-4, ec=0.6, em=0.3, rng=rng)
    cal = calibrate(recs, here, quantile=0.5)
    k = cal.for_kind("scan")
    assert k.eff_compute == pytest.approx(0.6, rel=0.1)
    assert k.eff_memory == pytest.approx(0.3, rel=0.1)
    assert k.overhead_s == pytest.approx(2e-4, rel=0.3)
    # Project onto a machine 10x faster in both: the modelled part shrinks 10x.
    there = _profile("there", peak=1e12, bw_gbs=100.0)
    r = recs[0]
    expected = 2e-4 + max(r.flops / (0.6 * 1e12), r.bytes_moved / (0.3 * 100e9))
    assert project(r, cal, there) == pytest.approx(expected, rel=0.15)
    assert cal.for_kind("never-seen") is cal.kinds["*"]


def test_projection_error_on_held_out_half() -> None:
    rng = np.random.default_rng(1)
    here = _profile("here", peak=1e11, bw_gbs=10.0)
    recs = _synthetic_records(here, o=1e-4, ec=0.5, em=0.5, rng=rng)
    train, test = split_half(recs)
    assert len(train) == len(test) == 12
    err = projection_error(train, test, here)
    assert err["median_abs_error"] < 0.1
    assert len(err["per_record"]) == 12


# ---------------------------------------------------------------------------------------------
# scaling
# ---------------------------------------------------------------------------------------------


def test_fit_scaling_recovers_known_exponent() -> None:
    n = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    pts = list(zip(n, 0.003 * n**0.62 + 0.05, strict=True))
    m = fit_scaling(pts)
    assert m.b == pytest.approx(0.62, abs=0.02)
    assert m.c == pytest.approx(0.05, rel=0.2)
    assert m.predict(3e5) == pytest.approx(0.003 * 3e5**0.62 + 0.05, rel=0.02)
    lin = fit_scaling([(x, 2e-5 * x + 0.1) for x in n], form="linear")
    assert lin.a == pytest.approx(2e-5, rel=1e-6) and lin.c == pytest.approx(0.1, rel=1e-4)
    assert ScalingModel.from_dict(m.to_dict()) == m
    np.testing.assert_allclose(m.predict(n), 0.003 * n**0.62 + 0.05, rtol=0.03)
    two = fit_scaling([(1e3, 1.0), (1e5, 10.0)])
    assert two.b == pytest.approx(0.5) and two.c == 0.0
    with pytest.raises(ValueError):
        fit_scaling([(1e3, 1.0)])


def test_measure_retrieval_scaling_small() -> None:
    recs = measure_retrieval_scaling(
        sizes=(600, 2_000),
        d=32,
        retrievers={"exact": ExactConfig(), "hnsw": HNSWConfig(M=8, ef_search=32)},
        n_queries=40,
        batch_sizes=(1, 8),
        n_requests=20,
        seconds_per_batch=0.5,
        min_seconds_per_batch=0.0,
        ceilings=FAKE,
        max_items={"hnsw": 1_000},
        variants={"hnsw": [{"ef_search": 64}]},
        log=None,
    )
    assert [(r["retriever"], r["n_items"]) for r in recs] == [
        ("exact", 600),
        ("hnsw", 600),
        ("hnsw[ef_search=64]", 600),
        ("exact", 2_000),
    ]
    assert recs[2]["config"]["ef_search"] == 64 and recs[2]["variant_of"] == "hnsw"
    assert recs[2]["build_s"] == recs[1]["build_s"]  # one build, two search settings
    exact = recs[0]
    assert exact["recall@10"] == 1.0 and exact["index_mb"] == pytest.approx(600 * 32 * 4 / 2**20)
    assert exact["p99_ms"] >= exact["p50_ms"] > 0 and exact["qps_8"] > 0
    assert 0 < exact["roofline"][1]["bandwidth_fraction"] < math.inf
    costs = stage_costs(recs)
    assert len(costs) == 8 and all(c.seconds for c in costs)
    assert costs[0].working_set_bytes == 600 * 32 * 4
    fits = fit_retrieval_scaling(recs)
    assert set(fits) == {"exact"}


def test_launch_figures_go_together_and_name_the_missing_one(tmp_path) -> None:
    from frugalrec.cost.hardware import HardwareProfileError, load_profiles

    base = """profiles:
  g:
    kind: gpu
    cores: 10
    memory_gb: 16
    mem_bandwidth_gbs: 300
    peak_tflops: {fp32: 8.0}
    usd_per_hour: 0.5
    launch_us: 30
    kernel_us: 5
LAST
    sources: {cores: a, memory_gb: b, mem_bandwidth_gbs: c, peak_tflops: d, usd_per_hour: e,
              launch_us: f, kernel_us: f, sync_us: f}
"""
    path = tmp_path / "hw.yaml"
    path.write_text(base.replace("LAST\n", ""))
    with pytest.raises(HardwareProfileError, match=r"hw.yaml: profiles.g.sync_us: .*together"):
        load_profiles(path, ceilings=FAKE)
    path.write_text(base.replace("LAST", "    sync_us: 8"))
    g = load_profiles(path, ceilings=FAKE)["g"]
    assert (g.launch_us, g.kernel_us, g.sync_us) == (30.0, 5.0, 8.0)
    path.write_text(base.replace("LAST", "    sync_us: -1"))
    with pytest.raises(HardwareProfileError, match="sync_us: must be non-negative"):
        load_profiles(path, ceilings=FAKE)
    # The shipped GPU profiles carry the launch model, with its source; CPUs do not.
    shipped = load_profiles(ceilings=FAKE)
    assert shipped["h100"].launch_us and "fitted" in shipped["h100"].sources["launch_us"]
    assert shipped["cpu16"].launch_us is None
