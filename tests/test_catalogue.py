"""Resizing measured costs to another catalogue size with fitted scaling curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from frugalrec.cli import main
from frugalrec.cost.catalogue import load_fits, measured_items, resize_record, stage_curve
from frugalrec.cost.scaling import ScalingModel

# Exact search linear in n (no fixed cost), HNSW flat: known growth factors.
FITS = {
    "exact": ScalingModel(a=1e-3, b=1.0, c=0.0, n_range=(1e3, 1e6)),
    "hnsw": ScalingModel(a=0.5, b=0.0, c=0.0, n_range=(1e3, 1e6)),
}


def _record(model: str = "ease", retrieval: str = "exact") -> dict[str, Any]:
    if retrieval == "exact":
        kinds = [("score:dense", "score"), ("topk", "topk"), ("request", "request")]
    else:
        kinds = [("score:solve:user_vector", "user_vector"), ("retrieve:hnsw", "retrieve"),
                 ("request", "request")]  # fmt: skip
    stages = [{"name": n, "kind": k, "batch_size": bs, "p50_ms": 1.0, "p99_ms": 2.0}
              for k, n in kinds for bs in (1, 16)]  # fmt: skip
    return {
        "config": {"name": f"{model}-{retrieval}", "model": model, "retrieval": retrieval},
        "quality": {"ndcg@10": 0.3, "recall@10": 0.2},
        "cost": {"p50_ms": 3.0, "p95_ms": 5.0, "p99_ms": 6.0, "qps": 900.0,
                 "peak_rss_mb": 300.0, "model_mb": 10.0, "n_items": 1000,
                 "model_bytes": {"model": 10 * 2**20, "index": 0, "encoder": 0},
                 "offline": {"fit_seconds": 2.0, "index_seconds": 0.5},
                 "usd_per_million_requests": 0.03},
        "stages": stages,
        "hardware": "local",
        "projections": {"h100": {"p50_ms": 1.0, "p99_ms": 2.0, "qps": 3000.0}},
    }  # fmt: skip


def test_stage_curves() -> None:
    assert stage_curve("score:dense") == stage_curve("topk") == "exact"
    assert stage_curve("retrieve:ivfpq") == "ivfpq"
    assert stage_curve("request") is None and stage_curve("score:solve:user_vector") is None


def test_exact_stages_grow_with_the_curve_and_overhead_does_not() -> None:
    out = resize_record(_record(), 10_000, FITS, n0=1000)
    # score and topk grow 10x, the request overhead stays: (2*10 + 2*10 + 2) / 6 = 7.
    assert out["cost"]["p99_ms"] == pytest.approx(6.0 * 7.0)
    assert out["cost"]["qps"] == pytest.approx(900.0 / 7.0)
    assert out["projections"]["h100"]["p99_ms"] == pytest.approx(2.0 * 7.0)
    # EASE keeps an item x item matrix (100x the bytes) and inverts it (1000x the time).
    assert out["cost"]["model_mb"] == pytest.approx(10.0 * 100)
    assert out["cost"]["peak_rss_mb"] == pytest.approx(300.0 + 990.0)
    assert out["cost"]["offline"]["fit_seconds"] == pytest.approx(2000.0)
    assert out["quality"] == _record()["quality"]  # quality is never resized
    assert out["cost"]["catalogue"]["items"] == 10_000
    assert out["cost"]["catalogue"]["extrapolated"] is False
    assert resize_record(_record(), 10**8, FITS, 1000)["cost"]["catalogue"]["extrapolated"]


def test_ann_retrieval_follows_its_own_curve() -> None:
    out = resize_record(_record("als", "hnsw"), 100_000, FITS, n0=1000)
    assert out["cost"]["p99_ms"] == pytest.approx(6.0)  # flat HNSW curve, no exact stage
    assert out["cost"]["model_mb"] == pytest.approx(10.0 * 100)  # factors: linear in items


def test_same_size_is_identity_and_bad_sizes_refused() -> None:
    out = resize_record(_record(), 1000, FITS, n0=1000)
    assert out["cost"]["p99_ms"] == pytest.approx(6.0)
    assert out["cost"]["model_mb"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="catalogue size"):
        resize_record(_record(), 0, FITS, n0=1000)
    with pytest.raises(ValueError, match="ivfpq"):
        resize_record(_record("als", "hnsw") | {"stages": [
            {"name": "retrieve", "kind": "retrieve:ivfpq", "batch_size": 1, "p50_ms": 1,
             "p99_ms": 1}]}, 10, FITS, 1000)  # fmt: skip


def test_measured_items_and_shipped_fits() -> None:
    assert measured_items(_record()) == 1000
    no_n = _record()
    del no_n["cost"]["n_items"]
    assert measured_items(no_n, "ml-100k") == 1682
    with pytest.raises(ValueError, match="n_items"):
        measured_items(no_n)
    fits = load_fits()
    assert {"exact", "hnsw", "ivfpq"} <= set(fits)
    assert fits["exact"].predict(1e6) > fits["exact"].predict(1e3)


def test_plan_cli_with_catalogue_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = tmp_path / "bench.json"
    ease = _record("ease")
    ease["quality"]["ndcg@10"] = 0.31
    bench.write_text(json.dumps([ease, _record("als", "hnsw")]))
    scaling = tmp_path / "scaling.json"
    scaling.write_text(json.dumps({"fits": {k: v.to_dict() for k, v in FITS.items()}}))
    args = ["plan", "--bench", str(bench), "--scaling", str(scaling), "--json"]
    assert main([*args, "--p99-ms", "10"]) == 0
    small = json.loads(capsys.readouterr().out)["hardware"]["local"]
    assert small["config"]["name"] == "ease-exact"
    assert main([*args, "--p99-ms", "10", "--catalogue-size", "100000"]) == 0
    big = json.loads(capsys.readouterr().out)["hardware"]["local"]
    # At 100k items exact EASE needs ~700 ms and ~100 GB: only the ANN config fits.
    assert big["config"]["name"] == "als-hnsw"
    assert big["cost"]["catalogue"]["items"] == 100_000
