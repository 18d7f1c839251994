"""``frugalrec bench``: quality and cost of every configuration, side by side.

Each configuration runs in a fresh interpreter that imports only what it needs, so that its
memory is its own: the process peak (``VmHWM``), its increment over an empty worker (the same
harness imports and data, no model: :func:`measure_baseline`), and the model/index/encoder
bytes. Quality comes
from the evaluation protocols (``random`` test NDCG@10/Recall@10 through the configured
retrieval, ``cold-item`` NDCG@10 with exact scoring); cost from the profiler (per-stage
latency at batch 1, throughput at batch 1/16/256, memory, analytic FLOPs and bytes). The
parent then fits the roofline calibration on ``local`` and projects every configuration to
the other hardware profiles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec.pipeline.config import PipelineConfig

BATCH_SIZES = (1, 16, 256)


def default_grid(quick: bool = True, llm: bool | Sequence[str] = False) -> list[PipelineConfig]:
    """The configurations ``bench`` sweeps: CF baselines, ANN variants and the text ladder;
    ``llm`` adds LLM re-ranker configurations (minutes each on a CPU, hence opt-in): one per
    rung of the LLM registry (``True``) or per name given."""
    grid = [
        PipelineConfig(model="pop"),
        PipelineConfig(model="itemknn"),
        PipelineConfig(model="ease"),
        PipelineConfig(model="als"),
        PipelineConfig(model="als", retrieval="hnsw", retrieval_config={"M": 16, "ef_search": 64}),
        PipelineConfig(model="textmap", encoder="static", backend="numpy"),
        PipelineConfig(model="textmap", encoder="minilm", backend="onnx-int8"),
        PipelineConfig(model="textmap", encoder="minilm", backend="torch"),
        PipelineConfig(model="hybrid", encoder="minilm", backend="onnx-int8"),
        PipelineConfig(model="content", encoder="minilm", backend="onnx-int8"),
    ]
    if not quick:
        grid += [
            PipelineConfig(model="bpr"),
            PipelineConfig(model="textmap", encoder="mpnet", backend="onnx-int8"),
            PipelineConfig(model="hybrid", encoder="mpnet", backend="onnx-int8"),
            PipelineConfig(model="hybrid", encoder="static", backend="numpy"),
            PipelineConfig(
                model="textmap", encoder="minilm", backend="onnx-int8", retrieval="hnsw"
            ),
        ]
    if llm:
        from frugalrec.bench.llm_configs import llm_grid
        from frugalrec.llm.registry import llm_names

        models = llm_names() if llm is True else tuple(llm)
        grid += llm_grid(ks=(10,) if quick else (5, 10, 20), models=models)
    return grid


# ---------------------------------------------------------------------------------------
# Worker: one configuration, measured in its own process
# ---------------------------------------------------------------------------------------


def measure_config(
    config: PipelineConfig, dataset: str, quick: bool = True, llm_users: int | None = None
) -> dict[str, Any]:
    """Quality and cost of one configuration (run in a fresh process for honest RSS)."""
    from frugalrec._threads import configure_threads
    from frugalrec.bench.profiler import heavy_modules_loaded, process_peak_rss_bytes
    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.evaluate.metrics import per_user_metrics
    from frugalrec.evaluate.protocol import evaluate_model
    from frugalrec.models.registry import model_class
    from frugalrec.pipeline.recommend import RecommendPipeline

    configure_threads()
    config.validate()
    if config.reranker != "none":  # the LLM tier measures its own stage on top of the cheap one
        from frugalrec.bench.llm_configs import measure_llm_config

        return measure_llm_config(config, dataset, quick, n_users=llm_users)
    ds = load_dataset(dataset)
    cls = model_class(config.model)
    model_cfg = cls.config_cls.from_dict(config.model_config)
    offline: dict[str, float] = {}
    extra: dict[str, Any] = {}
    item_vectors = None
    encoder_bytes = 0
    split = make_split(ds, "random")
    cold = make_split(ds, "cold-item")
    encoders = {"random": config.encoder, "cold-item": config.encoder}
    training = None
    if config.finetune:
        encoders, training, extra["finetune"] = _finetune_encoders(config, split, cold)
    if config.encoder != "none":
        item_vectors, enc_info = _encode_catalogue(ds, config, quick, encoders["random"])
        offline.update(enc_info.pop("offline"))
        encoder_bytes = int(enc_info.get("model_bytes", 0))
        extra["encoder"] = enc_info
    fit_kwargs = {"item_vectors": item_vectors} if cls.uses_item_vectors else {}

    t0 = time.perf_counter()
    model = cls(model_cfg).fit(split.train_dataset(with_valid=True), **fit_kwargs)
    offline["fit_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe = RecommendPipeline(config, model).build()
    offline["index_seconds"] = time.perf_counter() - t0

    test = split.test
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    H = split.train_valid[users]
    ids, _ = pipe.recommend(H, k=config.k)
    q = per_user_metrics(ids, test[users], config.k)
    quality = {
        f"ndcg@{config.k}": float(q[f"ndcg@{config.k}"].mean()),
        f"recall@{config.k}": float(q[f"recall@{config.k}"].mean()),
    }
    cold_kwargs = fit_kwargs
    if config.finetune and cls.uses_item_vectors:
        # The cold-item quality needs an encoder that never saw the cold items' interactions.
        from frugalrec.text.features import item_features

        cold_kwargs = {"item_vectors": item_features(ds, encoders["cold-item"], config.backend)}
    cold_model = cls(model_cfg).fit(cold.train_dataset(with_valid=True), **cold_kwargs)
    quality[f"cold_ndcg@{config.k}"] = float(
        evaluate_model(cold_model, cold, "test", ks=(config.k,), n_boot=0).metrics[
            f"ndcg@{config.k}"
        ]
    )
    del cold_model

    # Offline work above used every core; serving runs with the configured thread count.
    configure_threads(config.threads)
    online = _measure_online(pipe, H, quick)
    hist_len = float(np.diff(H.indptr).mean())
    stages = _stage_costs(pipe, online, hist_len, config.k)
    model_bytes = learned_bytes(model)
    index_bytes = int(pipe.retriever.memory_bytes()) if pipe.retriever is not None else 0
    peak_rss = process_peak_rss_bytes()
    bs = config.batch_size if config.batch_size in online["batches"] else 16
    cost = {
        "p50_ms": online["latency"]["p50_ms"],
        "p95_ms": online["latency"]["p95_ms"],
        "p99_ms": online["latency"]["p99_ms"],
        "qps": online["batches"][bs]["items_per_s"],
        "qps_by_batch": {str(b): v["items_per_s"] for b, v in online["batches"].items()},
        "peak_rss_mb": peak_rss / 2**20,
        "heavy_modules": heavy_modules_loaded(),
        "n_items": int(model.n_items_),
        "model_mb": (model_bytes + index_bytes + encoder_bytes) / 2**20,
        "model_bytes": {"model": model_bytes, "index": index_bytes, "encoder": encoder_bytes},
        "build_seconds": sum(offline.values()),
        "offline": offline,
        "flops_per_request": float(sum(s["flops"] for s in stages if s["batch_size"] == 1)),
        "bytes_per_request": float(sum(s["bytes_moved"] for s in stages if s["batch_size"] == 1)),
        "stages": stages,
    }
    out = {"config": config.to_dict(), "quality": quality, "cost": cost, "extra": extra}
    if training is not None:
        out["training"] = training
    return out


def training_block(record: dict[str, Any]) -> dict[str, Any]:
    """A fine-tune record's cost (:func:`frugalrec.text.finetune.finetune_encoder`) as the
    ``training`` block of a CostRecord: wall and CPU seconds, examples, examples/s, peak MB."""
    t = record["training"]
    return {
        "wall_seconds": float(t["wall_seconds"]),
        "cpu_seconds": float(t["cpu_seconds"]),
        "examples": int(t["examples"]),
        "examples_per_second": t.get("examples_per_second"),
        "peak_rss_mb": float(t["peak_rss_bytes"]) / 2**20,
    }


def _finetune_encoders(
    config: PipelineConfig, split: Any, cold: Any
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """Fine-tune ``config.encoder`` on each split's TRAINING interactions (valid picks the
    epoch; cached by data and config), returning the encoder names per split, the training
    block (the random split's fine-tune: what a deployment trains once per retrain) and a
    summary of both records."""
    from frugalrec.evaluate.finetune import finetune_for_split
    from frugalrec.text.finetune import FinetuneConfig

    fcfg = FinetuneConfig.from_dict(config.finetune)
    names: dict[str, str] = {}
    summary: dict[str, Any] = {}
    for protocol, sp in (("random", split), ("cold-item", cold)):
        res = finetune_for_split(sp, config.encoder, config=fcfg)
        names[protocol] = res.name
        summary[protocol] = {
            "name": res.name, "cached": res.cached, "pairs": res.record.get("pairs"),
            "best_epoch": res.record.get("best_epoch"),
            "valid_per_epoch": res.record.get("valid_per_epoch"),
            "training": training_block(res.record),
        }  # fmt: skip
    return names, summary["random"]["training"], summary


def learned_bytes(model: Any) -> int:
    """Bytes of a fitted model's learned state (attributes ending in ``_``, the training
    history excluded), descending into sub-models (the hybrid holds EASE and a text model:
    counting only its own arrays reported 7 kB for 11 MB of weights)."""
    from frugalrec.bench.profiler import nbytes
    from frugalrec.models.base import Recommender

    total = 0
    for key, value in vars(model).items():
        if not key.endswith("_") or key == "history_":
            continue
        total += learned_bytes(value) if isinstance(value, Recommender) else nbytes(value)
    return total


def _encode_catalogue(
    ds: Any, config: PipelineConfig, quick: bool, name: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Item vectors through the cache, plus what encoding costs (measured uncached).
    ``name``: the encoder to load instead of ``config.encoder`` (a fine-tuned one)."""
    from frugalrec.text import item_texts, load_encoder
    from frugalrec.text.features import item_features

    name = name or config.encoder
    t0 = time.perf_counter()
    encoder = load_encoder(name, config.backend)
    load_s = time.perf_counter() - t0
    texts = item_texts(ds.items)
    # Encoding speed is measured on a sample without the cache (the cache would make a
    # re-run free and hide the real price of a new catalogue).
    sample = texts[: min(len(texts), 256 if quick else len(texts))]
    encoder.encode(sample[:8])  # warm-up
    t0 = time.perf_counter()
    encoder.encode(sample)
    per_text = (time.perf_counter() - t0) / len(sample)
    singles = []
    for t in texts[:30]:
        t1 = time.perf_counter()
        encoder.encode([t])
        singles.append(time.perf_counter() - t1)
    from frugalrec.engines.base import engine_encoder, engine_from_env

    with engine_from_env() as engine:  # --engine ray: the catalogue is encoded on the cluster
        batch_encoder = engine_encoder(encoder, engine)
        vectors = item_features(ds, name, config.backend, encoder=batch_encoder)
    info = encoder.info()
    return vectors, {
        "key": encoder.key,
        "dims": info.get("dims"),
        "params": info.get("params"),
        "model_bytes": info.get("model_bytes", 0),
        "texts_per_s": 1.0 / per_text,
        "engine": engine.info(),
        "encode_one_text_p50_ms": float(np.median(singles) * 1e3),
        "encode_one_text_p99_ms": float(np.quantile(singles, 0.99) * 1e3),
        "offline": {
            "encoder_load_seconds": load_s,
            "catalogue_encode_seconds": per_text * len(texts),
        },
    }


def _measure_online(pipe: Any, H: Any, quick: bool) -> dict[str, Any]:
    from frugalrec.bench.profiler import measure_online

    n = H.shape[0]
    idx = np.arange(n)
    out: dict[str, Any] = {"batches": {}, "stage_seconds": {}}
    for bs in BATCH_SIZES:
        pipe.reset_timings()
        res = measure_online(
            lambda b: pipe.recommend(H[b]),
            idx,
            batch_sizes=(bs,),
            warmup=10 if bs == 1 else 2,
            # A p99 of 400 samples is their 4th largest: on a shared VM one neighbour's burst
            # moved it by 2x between identical runs. 3,000 sub-ms requests cost ~1.5 s and
            # spread the tail over more of the neighbours' activity.
            n_requests=3000 if bs == 1 else (800 if quick else 2000),
            max_seconds=8.0 if quick else 20.0,
        )
        out["batches"][bs] = res["batches"][bs]
        # Stage samples from the timed calls only (warm-up calls come first).
        n_timed = res["batches"][bs]["n"]
        stages = {k: v[-n_timed:] for k, v in pipe.stage_seconds.items()}
        # What a call costs beyond its stages (slicing the history, CSR conversion, Python
        # dispatch) is a stage of its own: leaving it out made every projected total short.
        inside = np.sum([np.asarray(v) for v in stages.values()], axis=0)
        total = np.asarray(res["samples_s"][bs])
        stages["request"] = np.maximum(total - inside, 1e-7).tolist()
        out["stage_seconds"][bs] = stages
    out["latency"] = out["batches"][1]
    return out


# The primitive a model's exact scoring runs, so that configurations share calibrations:
# a dense read of an item-side matrix (EASE rows, a GEMV over item vectors), a sparse
# row-sum (ItemKNN), a per-user least-squares solve before the GEMV (ALS fold-in), or
# a copy of one vector (popularity).
SCORING_KINDS = {"pop": "score:vector", "itemknn": "score:sparse", "als": "score:solve"}


def scoring_kind(model_name: str) -> str:
    """Stage kind of a model's exact scoring (``score:dense`` unless listed otherwise)."""
    return SCORING_KINDS.get(model_name, "score:dense")


def _stage_costs(pipe: Any, online: dict[str, Any], hist_len: float, k: int) -> list[dict]:
    """Per-stage analytic work + measured samples at batch 1 and 16 (for the roofline)."""
    from frugalrec.opcount import topk_cost

    n_items = pipe.model.n_items_
    out = []
    for bs in (1, 16):
        for name, samples in online["stage_seconds"][bs].items():
            kind = name
            if name == "score":
                flops, moved = pipe.model.scoring_cost(hist_len, bs)
                kind = scoring_kind(pipe.config.model)
            elif name == "topk":
                flops, moved = topk_cost(n_items, k, bs)
            elif name == "retrieve":
                flops, moved = pipe.retriever.search_cost(k, bs)
                kind = f"retrieve:{pipe.config.retrieval}"
            elif name == "user_vector":
                f, d = pipe.model.scoring_cost(hist_len, bs)
                # The user-vector part is what remains once the item GEMV is left out.
                item_side = pipe.model.item_matrix().nbytes
                flops, moved = max(f - 2.0 * bs * item_side / 4, 1.0), max(d - item_side, 4.0)
                kind = f"{scoring_kind(pipe.config.model)}:user_vector"
            elif name == "request":
                # Slice bs CSR rows (index + value) and return bs x k ids and scores.
                flops, moved = bs * hist_len, 8.0 * bs * hist_len + 12.0 * bs * k
            else:
                continue
            out.append(
                {
                    "name": name,
                    "kind": kind,
                    "flops": float(flops),
                    "bytes_moved": float(moved),
                    "batch_size": bs,
                    "seconds": [float(x) for x in samples],
                }
            )
    return out


def measure_baseline(dataset: str) -> dict[str, Any]:
    """The empty worker: the harness imports of :func:`measure_config` and the dataset with its
    split, no model, no encoder (run in a fresh process). A configuration's increment is its
    peak minus this one's."""
    from frugalrec.bench.profiler import heavy_modules_loaded, process_peak_rss_bytes
    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.evaluate.metrics import per_user_metrics  # noqa: F401 - harness import
    from frugalrec.evaluate.protocol import evaluate_model  # noqa: F401 - harness import
    from frugalrec.models.registry import model_class  # noqa: F401 - harness import
    from frugalrec.pipeline.recommend import RecommendPipeline  # noqa: F401 - harness import

    split = make_split(load_dataset(dataset), "random")
    del split
    return {
        "peak_rss_mb": process_peak_rss_bytes() / 2**20,
        "heavy_modules": heavy_modules_loaded(),
    }


def _worker_main(argv: list[str]) -> int:
    if argv[0] == "--baseline":
        Path(argv[1]).write_text(json.dumps(measure_baseline(argv[2])))
        return 0
    cfg_path, out_path, dataset, quick = argv[0], argv[1], argv[2], argv[3] == "1"
    llm_users = int(argv[4]) if len(argv) > 4 and int(argv[4]) > 0 else None
    config = PipelineConfig.from_json(Path(cfg_path).read_text())
    result = measure_config(config, dataset, quick, llm_users)
    Path(out_path).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------
# Parent: sweep, projections, outputs
# ---------------------------------------------------------------------------------------


def run_config_subprocess(
    config: PipelineConfig,
    dataset: str,
    quick: bool,
    timeout_s: float = 900,
    llm_users: int | None = None,
) -> dict[str, Any]:
    """Measure one configuration in a fresh interpreter; raise with its stderr on failure.

    ``llm_users``: test users an LLM re-ranker configuration is run on (None: 16 quick, 64
    full); each may take seconds on a CPU, so the time limit grows by 30 s per user."""
    if config.reranker != "none" and llm_users:
        timeout_s = max(timeout_s, 900 + 30.0 * llm_users)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, out_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
        cfg_path.write_text(config.to_json())
        cmd = [sys.executable, "-m", "frugalrec.bench.configs", str(cfg_path), str(out_path),
               dataset, "1" if quick else "0", str(llm_users or 0)]  # fmt: skip
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=os.environ
        )
        if proc.returncode != 0 or not out_path.exists():
            tail = proc.stderr.strip().splitlines()[-5:]
            raise RuntimeError(f"bench of {config.name!r} failed: " + " | ".join(tail))
        return json.loads(out_path.read_text())


def run_baseline_subprocess(dataset: str, timeout_s: float = 300) -> dict[str, Any]:
    """:func:`measure_baseline` in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "baseline.json"
        cmd = [
            sys.executable,
            "-m",
            "frugalrec.bench.configs",
            "--baseline",
            str(out_path),
            dataset,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=os.environ
        )
        if proc.returncode != 0 or not out_path.exists():
            tail = proc.stderr.strip().splitlines()[-5:]
            raise RuntimeError("baseline worker failed: " + " | ".join(tail))
        return json.loads(out_path.read_text())


def add_increment(cost: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Set ``rss_increment_mb`` (peak over the empty worker's peak, floored at 0) and
    ``baseline_rss_mb`` on a measured cost block, in place; returns it."""
    cost["baseline_rss_mb"] = float(baseline["peak_rss_mb"])
    cost["rss_increment_mb"] = max(0.0, float(cost["peak_rss_mb"]) - cost["baseline_rss_mb"])
    return cost


def project_records(
    results: list[dict[str, Any]], profiles: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Calibrate the roofline on all local stages; project every config to every profile.

    Returns (projections per config name, projection-error report on held-out configs).
    """
    from frugalrec.cost.roofline import QUANTILES, calibrate, project, project_latency
    from frugalrec.opcount import StageCost

    local = profiles["local"]

    def stage_objs(r: dict[str, Any]) -> list[StageCost]:
        return [StageCost(**{k: s[k] for k in ("name", "kind", "flops", "bytes_moved",
                                                "batch_size", "seconds")},
                          launches=int(s.get("launches", 0)))
                for s in r["cost"]["stages"]]  # fmt: skip

    all_stages = [s for r in results for s in stage_objs(r)]
    cals = {q: calibrate(all_stages, local, quantile=q) for q in QUANTILES}
    cal, cal50 = cals[0.99], cals[0.5]
    projections: dict[str, Any] = {}
    for r in results:
        st = stage_objs(r)
        one = [s for s in st if s.batch_size == 1]
        many = [s for s in st if s.batch_size == 16]
        per: dict[str, Any] = {}
        for name, prof in profiles.items():
            if name == "local":
                continue
            lat = project_latency(one, cals, prof)
            t16 = sum(project(s, cal50, prof) for s in many)
            qps = 16.0 / t16 if t16 > 0 else float("nan")
            usd = prof.usd_per_hour / (qps * 3600.0) * 1e6 if qps > 0 else None
            per[name] = {k: lat[k] for k in ("p50_ms", "p95_ms", "p99_ms")}
            per[name].update(qps=qps, usd_per_million_requests=usd)
            # The share of the p50 spent launching kernels one by one from the host: what a
            # CUDA-graph or batched runtime would remove (the planner says so).
            if lat["launch_bound_ms"] > 0:
                per[name]["launch_bound_share"] = lat["launch_bound_ms"] / lat["p50_ms"]
        projections[r["config"]["name"]] = per
    error = _projection_error(results, stage_objs, local)
    error["calibration"] = cal.to_dict()
    return projections, error


def _projection_error(
    results: list[dict[str, Any]], stage_objs: Callable[[dict[str, Any]], list[Any]], local: Any
) -> dict[str, Any]:
    """Calibrate on every other configuration, project the rest's total p99 on local; next
    to it the naive constant (the calibration half's median p99) on the same held-out half."""
    from frugalrec.cost.roofline import calibrate, project
    from frugalrec.cost.skill import naive_constant, skill_summary

    order = sorted(results, key=lambda r: r["cost"]["p99_ms"])
    halves = (order[0::2], order[1::2])
    rows = []
    for train, test in (halves, halves[::-1]):
        if not train or not test:
            continue
        cal = calibrate([s for r in train for s in stage_objs(r)], local, quantile=0.99)
        constant = naive_constant([r["cost"]["p99_ms"] for r in train])
        for r in test:
            # Only kinds seen in calibration are checked: an unseen kind falls back to the
            # all-kinds fit, which is reported separately rather than hidden in the median.
            one = [s for s in stage_objs(r) if s.batch_size == 1]
            projected = sum(project(s, cal, local) for s in one) * 1e3
            measured = r["cost"]["p99_ms"]
            seen = all(s.kind in cal.kinds for s in one)
            rows.append({"config": r["config"]["name"], "measured_p99_ms": measured,
                         "projected_p99_ms": projected, "rel_error": abs(projected / measured - 1),
                         "constant_p99_ms": constant,
                         "constant_rel_error": abs(constant / measured - 1),
                         "kinds_seen_in_calibration": seen})  # fmt: skip
    errs = [r["rel_error"] for r in rows]
    skill = skill_summary(
        [{"measured": r["measured_p99_ms"], "model": r["projected_p99_ms"],
          "constant": r["constant_p99_ms"]} for r in rows],
        naive=("constant",),
    )  # fmt: skip
    return {
        "median_abs_error": float(np.median(errs)) if errs else None,
        "naive_constant_median_abs_error": skill["median_error"]["constant"],
        "skill": skill,
        "per_config": rows,
        "method": "configs sorted by p99, alternately assigned to two halves; calibrate on one "
        "half, project the other's p99 on local; both directions. Naive: every held-out p99 "
        "is the calibration half's median p99",
    }


def run_bench(
    dataset: str,
    out_dir: str | Path,
    quick: bool = True,
    configs: list[PipelineConfig] | None = None,
    progress: Callable[[str], None] | None = None,
    commands: list[str] | None = None,
    llm_users: int | None = None,
) -> list[dict[str, Any]]:
    """Sweep ``configs`` (default grid), write ``bench.json`` and ``report.html``.
    ``llm_users``: the sample LLM re-ranker configurations are measured on (``--llm-sample``)."""
    from frugalrec._io import write_json_atomic
    from frugalrec.cost.ceilings import cached_ceilings, measure_ceilings
    from frugalrec.cost.hardware import load_profiles
    from frugalrec.cost.records import CostRecord
    from frugalrec.cost.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = configs or default_grid(quick)
    for c in configs:
        c.validate()
    ceilings = cached_ceilings() or measure_ceilings()
    profiles = load_profiles()
    baseline = run_baseline_subprocess(dataset)
    results = []
    for c in configs:
        if progress:
            progress(c.name)
        results.append(run_config_subprocess(c, dataset, quick, llm_users=llm_users))
        add_increment(results[-1]["cost"], baseline)
    projections, error = project_records(results, profiles)
    local = profiles["local"]
    from frugalrec.bench.service import cached_overhead, scoring_seconds, service_qps

    # End-to-end capacity = scoring + the HTTP service's per-request overhead, calibrated once
    # per machine (python -m frugalrec.bench.service calibrate); the planner sizes from it.
    overhead = cached_overhead()
    records = []
    for r in results:
        cost = {k: v for k, v in r["cost"].items() if k != "stages"}
        name = r["config"]["name"]
        if overhead is not None:
            o = float(overhead["overhead_s"])
            cost["serving_overhead_ms"] = o * 1e3
            cost["service_qps"] = service_qps(o, scoring_seconds(cost))
            for hw, proj in projections[name].items():
                # One server process per machine; its Python overhead assumed as here.
                proj["service_qps"] = service_qps(o, proj["p50_ms"] / 1e3)
                price = profiles[hw].usd_per_hour
                proj["usd_per_million_requests"] = price / (proj["service_qps"] * 3600.0) * 1e6
        served = cost.get("service_qps") or cost["qps"]
        cost["usd_per_million_requests"] = local.usd_per_hour / (served * 3600.0) * 1e6
        records.append({
            "config": r["config"],
            "quality": r["quality"],
            "cost": cost,
            "hardware": "local",
            "projections": projections[r["config"]["name"]],
            "stages": r["cost"]["stages"] if not quick else _summarise_stages(r["cost"]["stages"]),
            "extra": r.get("extra", {}),
            # a fine-tuned configuration's one-off training (plan adds it to $/month)
            **({"training": r["training"]} if r.get("training") else {}),
        })  # fmt: skip
    write_json_atomic(out / "bench.json", records)
    write_json_atomic(out / "projection_error.json", error)
    write_json_atomic(out / "ceilings.json", ceilings.to_dict())
    cmds = commands or [
        f"frugalrec bench --dataset {dataset}{' --quick' if quick else ''} --out {out}"
    ]
    write_report([CostRecord.from_dict(r) for r in records], out / "report.html",
                 title=f"frugalrec bench: {dataset}", commands=cmds)  # fmt: skip
    return records


def _summarise_stages(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage rows with percentiles instead of raw samples (keeps bench.json small)."""
    from frugalrec.bench.profiler import latency_percentiles

    out = []
    for s in stages:
        row = {k: v for k, v in s.items() if k != "seconds"}
        row.update(latency_percentiles(s["seconds"]))
        out.append(row)
    return out


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
