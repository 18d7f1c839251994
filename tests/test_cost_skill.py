"""The naive-baseline comparison, on data with known answers."""

from __future__ import annotations

import pytest

from frugalrec.bench.projection_check import check, select_on_validation
from frugalrec.cost.ceilings import Ceilings
from frugalrec.cost.scaling import ContentionTail, fit_contention_tail
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


def _record(retriever, kind, n, p99, mb, p50=None):
    # a bandwidth-bound stage: bytes = n * 1 KB, measured p99 (and p50) given
    return {
        "retriever": retriever, "kind": kind, "n_items": n, "p99_ms": p99, "index_mb": mb,
        "p50_ms": p99 if p50 is None else p50,
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


SIZES = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]


def _knee_scaling(llc_bytes, sizes=SIZES, overhead_ms=0.02, eff=0.6, tail=1.3):
    """Exact search whose latency follows a cache-aware roofline exactly: ``n`` KB served at
    ``eff`` of the cache bandwidth while they fit the last-level cache, of the memory
    bandwidth once they leave it; p99 = ``tail`` x p50."""
    ceilings = {"copy_gbs": 10.0, "gemv_gbs": 9.0, "gemm_fp32_gflops": 150.0, "threads": 1,
                "cache_gbs": 50.0, "llc_bytes": llc_bytes}  # fmt: skip
    recs = []
    for n in sizes:
        gbs = ceilings["cache_gbs"] if n * 1024.0 <= llc_bytes else ceilings["copy_gbs"]
        p50 = overhead_ms + n * 1024.0 / (eff * gbs * 1e9) * 1e3
        recs.append(_record("exact", "exact", n, tail * p50, n / 1024.0, p50=p50))
    return {"ceilings": ceilings, "records": recs}


def test_validation_chooses_the_cache_aware_roofline_and_it_beats_the_naive_guesses():
    """The cache holds 100k items but not 300k or 1M: a curve through in-cache points misses
    the step down to memory bandwidth (seen at validation 100k -> 300k), the roofline knows
    it. Naive linear from 100k is 5x too optimistic at 1M (error 0.8), the constant ~0.98."""
    scaling = _knee_scaling(llc_bytes=200 * 2**20)
    res = check(scaling, 100_000, 1_000_000)
    for key in ("p50_ms", "p99_ms"):
        sel = res["selection"][key]
        assert sel["chosen"] in ("roofline", "roofline_anchored")
        assert sel["median_error"][sel["chosen"]] < 0.03
        # the in-cache slope extrapolated past the knee: 5x too fast at 300k
        assert sel["steps"][1]["median_error"]["loglog"] == pytest.approx(0.8, abs=0.02)
        assert sel["steps"][0]["median_error"]["loglog"] < 0.1  # both in cache: close
        assert [(s["calibrate_max"], s["validate_at"]) for s in sel["steps"]] == [
            (30_000, 100_000), (100_000, 300_000)]  # fmt: skip
        final = res[key]["chosen_skill"]
        assert final["median_error"]["chosen"] < 0.05
        assert final["median_error"]["linear"] == pytest.approx(0.8, abs=0.01)
        assert final["best_naive"] == "linear"
        assert final["skill"] < 0.1 and final["target_met"] is True
    # memory: linear, so naive linear is exact and no model can beat it
    mem = res["index_mb"]["curve"]
    assert mem["median_error"]["linear"] == pytest.approx(0.0, abs=1e-9)
    assert mem["target_met"] is False


def test_validation_chooses_a_curve_for_a_power_law():
    """Latency exactly 0.5 * n**0.4 while the op counts grow linearly: the roofline is wrong
    by construction, a log-log line or fitted curve is exact, and validation says so."""
    scaling = _knee_scaling(llc_bytes=1024)
    for r in scaling["records"]:
        r["p50_ms"] = 0.5 * r["n_items"] ** 0.4
        r["p99_ms"] = 2 * r["p50_ms"]
    res = check(scaling, 100_000, 1_000_000)
    for key in ("p50_ms", "p99_ms"):
        sel = res["selection"][key]
        assert sel["chosen"] in ("curve", "loglog", "loglog_anchored")
        assert sel["median_error"][sel["chosen"]] < 1e-6
        assert sel["median_error"]["roofline"] > 0.3
        assert res[key]["chosen_skill"]["median_error"]["chosen"] < 1e-6
        # the constant is off by 1 - 10**-0.4, linear by 10**0.6 - 1
        naive = res[key]["chosen_skill"]["median_error"]
        assert naive["constant"] == pytest.approx(1 - 10**-0.4)
        assert naive["linear"] == pytest.approx(10**0.6 - 1)


def test_selection_never_sees_the_target_size():
    """Replacing the 1M measurements by anything leaves the choice unchanged, and a
    validation step at or above the target is skipped."""
    scaling = _knee_scaling(llc_bytes=200 * 2**20)
    ceilings = Ceilings.from_dict(scaling["ceilings"])
    before = select_on_validation(scaling["records"], ceilings, [(30_000, 100_000),
                                  (100_000, 300_000), (300_000, 1_000_000)], 1_000_000)  # fmt: skip
    for r in scaling["records"]:
        if r["n_items"] == 1_000_000:
            r["p50_ms"] = r["p99_ms"] = 1e-3
    after = select_on_validation(scaling["records"], ceilings, [(30_000, 100_000),
                                 (100_000, 300_000), (300_000, 1_000_000)], 1_000_000)  # fmt: skip
    assert after == before
    assert all(s["validate_at"] < 1_000_000 for s in after["p99_ms"]["steps"])
    res = check(scaling, 100_000, 1_000_000)
    assert res["p99_ms"]["chosen"] == before["p99_ms"]["chosen"]
    assert res["p99_ms"]["chosen_skill"]["median_error"]["chosen"] > 10  # the garbage is seen
    with pytest.raises(ValueError, match="no validation step"):
        select_on_validation(scaling["records"], ceilings, [(300_000, 1_000_000)], 1_000_000)


def test_contention_tail_known_answer():
    """Pairs generated by a known tail (20 preemptions/s of 4 ms) are fitted back: short calls
    get p50 + one quantum at most, long ones several quanta, and the fit predicts both."""
    truth = ContentionTail(rate_per_s=20.0, quantum_ms=4.0)
    p50 = [0.2, 0.5, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]
    assert truth.predict(0.2) == pytest.approx(0.2)  # 0.4 % preempted: the p99 is clean
    assert truth.predict(1.0) == pytest.approx(5.0)  # 2 % preempted: one quantum
    assert truth.predict(300.0) > 300.0 + 4 * 10  # mean 6 preemptions, p99 more
    fit = fit_contention_tail([(s, truth.predict(s)) for s in p50])
    assert fit.log_mae < 0.02
    for s in (2.0, 50.0, 1000.0):
        assert fit.predict(s) == pytest.approx(truth.predict(s), rel=0.1)
    with pytest.raises(ValueError):
        fit_contention_tail([(1.0, 2.0)])


def test_validation_chooses_the_tail_model_when_tails_are_preemptions():
    """p50 follows the roofline exactly, p99 = p50 + Poisson preemptions: validation picks
    the roofline with the contention tail for p99 (a constant p99/p50 ratio does not carry
    from 100k to 300k), and the anchored/plain roofline for p50."""
    scaling = _knee_scaling(llc_bytes=1024, overhead_ms=0.3)
    tail = ContentionTail(rate_per_s=20.0, quantum_ms=4.0)
    for r in scaling["records"]:
        r["p99_ms"] = tail.predict(r["p50_ms"])
    res = check(scaling, 100_000, 1_000_000)
    assert res["selection"]["p50_ms"]["chosen"] in ("roofline", "roofline_anchored")
    sel = res["selection"]["p99_ms"]
    assert sel["chosen"] == "roofline_tail"
    assert sel["median_error"]["roofline_tail"] < 0.05
    assert res["p99_ms"]["chosen_skill"]["median_error"]["chosen"] < 0.1


def test_per_kind_selection_gives_each_kind_its_own_model():
    """Exact search follows the cache-aware roofline, an ANN index a power law whose op
    counts say otherwise: chosen per kind, each gets a model that is right for it."""
    scaling = _knee_scaling(llc_bytes=200 * 2**20)
    for n in SIZES:
        p50 = 0.5 * n**0.4
        scaling["records"].append(_record("ann", "ivfpq", n, 2 * p50, n / 1000.0, p50=p50))
    res = check(scaling, 100_000, 1_000_000, per_kind=True)
    for key in ("p50_ms", "p99_ms"):
        by_kind = res["selection"][key]["by_kind"]
        assert by_kind["exact"]["chosen"] in ("roofline", "roofline_anchored")
        assert by_kind["ivfpq"]["chosen"] in ("curve", "loglog", "loglog_anchored")
        assert res[key]["chosen"] == {k: v["chosen"] for k, v in by_kind.items()}
        for kind in ("exact", "ivfpq"):
            assert res[key]["chosen_skill_by_kind"][kind]["median_error"]["chosen"] < 0.05
    # one model for both kinds cannot be right for both
    res = check(scaling, 100_000, 1_000_000)
    errs = res["p99_ms"]["chosen_skill_by_kind"]
    assert max(e["median_error"]["chosen"] for e in errs.values()) > 0.2
