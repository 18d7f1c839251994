"""PipelineConfig, the online pipeline, and bench end to end on ml-100k."""

from __future__ import annotations

import json

import numpy as np
import pytest

from frugalrec.models import model_class
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.pipeline.recommend import RecommendPipeline


def test_pipeline_config_round_trip_and_validation() -> None:
    cfg = PipelineConfig(model="textmap", encoder="minilm", backend="onnx-int8", retrieval="hnsw")
    assert cfg.name == "textmap+minilm-onnx-int8+hnsw"
    assert PipelineConfig.from_json(cfg.to_json()) == cfg
    cfg.validate()
    with pytest.raises(ValueError, match="needs an encoder"):
        PipelineConfig(model="textmap").validate()
    with pytest.raises(ValueError, match="retrieval"):
        PipelineConfig(model="ease", retrieval="magic").validate()
    with pytest.raises(ValueError, match="unknown field"):
        PipelineConfig.from_dict({"model": "ease", "colour": "red"})
    with pytest.raises(ValueError, match="unknown field"):
        PipelineConfig(model="ease", model_config={"lambda": 3}).validate()


def test_ann_pipeline_matches_exact_on_small_data(blocks) -> None:  # type: ignore[no-untyped-def]
    X, _ = blocks
    model = model_class("als")(factors=2, regularization=0.1, alpha=5.0, iterations=20).fit(X)
    exact = RecommendPipeline(PipelineConfig(model="als"), model).build()
    ann = RecommendPipeline(PipelineConfig(model="als", retrieval="hnsw"), model).build()
    a, _ = exact.recommend(X, k=3)
    b, _ = ann.recommend(X, k=3)
    assert (a == b).mean() >= 0.9
    dense = X.toarray()
    assert not any(dense[u, b[u][b[u] >= 0]].any() for u in range(X.shape[0])), "seen items"
    # A dot-product model serves retrieval="exact" through the ExactRetriever (the code the
    # exact scaling curve measures); its answer equals scoring every item and taking top_k.
    assert set(exact.stage_seconds) == {"user_vector", "retrieve"}
    ref, _ = model.recommend_history(X, k=3)
    assert (a == ref).mean() >= 0.95
    assert set(ann.stage_seconds) == {"user_vector", "retrieve"}
    ease = model_class("ease")(l2=10.0).fit(X)
    scored = RecommendPipeline(PipelineConfig(model="ease"), ease).build()
    scored.recommend(X, k=3)
    assert set(scored.stage_seconds) == {"score", "topk"}


def test_ann_needs_a_dot_product_model(blocks) -> None:  # type: ignore[no-untyped-def]
    X, _ = blocks
    model = model_class("ease")(l2=10.0).fit(X)
    with pytest.raises(ValueError, match="dot-product"):
        RecommendPipeline(PipelineConfig(model="ease", retrieval="hnsw"), model).build()


def test_scoring_cost_is_positive_and_grows_with_batch(blocks) -> None:  # type: ignore[no-untyped-def]
    X, _ = blocks
    for name, kw in [("ease", {"l2": 10.0}), ("itemknn", {}), ("als", {"factors": 2}), ("pop", {})]:
        m = model_class(name)(**kw).fit(X)
        f1, b1 = m.scoring_cost(5, 1)
        f16, b16 = m.scoring_cost(5, 16)
        assert f1 > 0 and b1 > 0 and f16 > f1 and b16 >= b1


@pytest.mark.slow
def test_bench_and_plan_end_to_end(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.cli import main

    cfgs = tmp_path / "configs.json"
    cfgs.write_text(json.dumps([{"model": "pop"}, {"model": "ease"}]))
    out = tmp_path / "bench"
    assert (
        main(
            ["bench", "--dataset", "ml-100k", "--quick", "--configs", str(cfgs), "--out", str(out)]
        )
        == 0
    )
    records = json.loads((out / "bench.json").read_text())
    assert [r["config"]["name"] for r in records] == ["pop", "ease"]
    for r in records:
        assert {"ndcg@10", "recall@10", "cold_ndcg@10"} <= set(r["quality"])
        assert {"p50_ms", "p95_ms", "p99_ms", "qps", "peak_rss_mb", "model_mb", "build_seconds",
                "flops_per_request", "usd_per_million_requests"} <= set(r["cost"])  # fmt: skip
        assert r["hardware"] == "local" and "h100" in r["projections"]
        for block in (r["cost"], *r["projections"].values()):
            assert block["p50_ms"] <= block.get("p95_ms", block["p50_ms"]) <= block["p99_ms"]
    ease = records[1]["quality"]["ndcg@10"]
    assert ease > 0.3 > records[0]["quality"]["ndcg@10"]
    html = (out / "report.html").read_text()
    assert 'id="chart-memory"' in html and "ease" in html
    capsys.readouterr()
    assert main(["plan", "--bench", str(out / "bench.json"), "--hardware", "local,t4",
                 "--min-ndcg", "0.3", "--json"]) == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert plan["hardware"]["local"]["config"]["name"] == "ease"
    assert main(["plan", "--bench", str(out / "bench.json"), "--min-ndcg", "0.9", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["hardware"]["local"]["infeasible"]["constraint"] == "min_ndcg"
    assert np.isfinite(records[1]["cost"]["usd_per_million_requests"])
