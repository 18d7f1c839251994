"""``frugalrec bench`` (measure every configuration) and ``frugalrec plan`` (choose one)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from frugalrec._io import dumps
from frugalrec._table import format_table

if TYPE_CHECKING:
    from frugalrec.cost.records import CostRecord


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from frugalrec.cli.source import add_source_args

    b = sub.add_parser("bench", help="measure quality and cost of a grid of configurations")
    add_source_args(b)
    b.add_argument("--quick", action="store_true", help="the small grid (under 10 minutes here)")
    b.add_argument("--out", default="bench-out", help="directory for bench.json and report.html")
    b.add_argument("--configs", help="JSON file with a list of PipelineConfig objects")
    b.add_argument("--json", action="store_true", help="print bench.json to stdout")
    b.add_argument(
        "--llm",
        nargs="?",
        const="all",
        metavar="NAMES",
        help="add LLM re-ranker configurations (seconds per request on a CPU: slow): every "
        "rung of the LLM registry (smollm2-135m, gemma3-270m, qwen2.5-0.5b, qwen2.5-1.5b), "
        "or the comma-separated NAMES",
    )
    b.add_argument(
        "--llm-sample",
        type=int,
        metavar="N",
        help="test users each LLM configuration re-ranks (default 16 with --quick, else 64); "
        "bounds the time (seconds per user on a CPU) and sets the width of the quality interval",
    )
    b.add_argument(
        "--llm-budget-minutes",
        type=float,
        metavar="M",
        help="LLM configurations join the grid where their estimated measuring time (the "
        "sample at each rung's measured CPU rate) fits M minutes together, cheapest first; "
        "from every rung, or from --llm NAMES",
    )
    from frugalrec.cli.evaluate import add_engine_args

    add_engine_args(b)
    b.set_defaults(func=cmd_bench)

    p = sub.add_parser("plan", help="pick the best configuration for hardware and budgets")
    p.add_argument("--bench", required=True, help="bench.json written by frugalrec bench")
    p.add_argument("--hardware", default="local", help="comma-separated profile names")
    p.add_argument("--p99-ms", type=float)
    p.add_argument("--max-memory-mb", type=float)
    p.add_argument("--qps", type=float)
    p.add_argument("--budget-usd-month", type=float)
    p.add_argument("--min-ndcg", type=float)
    p.add_argument("--metric", default="ndcg@10")
    p.add_argument(
        "--retrain-days",
        type=float,
        help="fine-tuned configurations retrain every N days (training $ added to $/month)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-measure the configuration chosen for local and check it against --p99-ms",
    )
    p.add_argument(
        "--catalogue-size",
        type=int,
        help="plan for this many items: resize every measured cost with the fitted scaling "
        "curves (quality stays as measured on the bench dataset)",
    )
    p.add_argument(
        "--scaling",
        help="scaling.json from `python -m frugalrec.bench.scaling` (default: the curves "
        "shipped with frugalrec, measured on the reference 2-core machine)",
    )
    add_source_args(p, what="data source (only for --verify: the data the bench ran on)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)


def llm_rungs(value: str | None) -> bool | tuple[str, ...]:
    """``--llm``: absent -> no LLM configurations; bare -> every registered rung; NAMES ->
    those (each checked against the registry: a typo fails before anything is measured)."""
    if not value:
        return False
    if value == "all":
        return True
    from frugalrec.cli import UsageError
    from frugalrec.llm.registry import llm_names

    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in llm_names()]
    if unknown or not names:
        raise UsageError(f"--llm: unknown {unknown}; registered: {', '.join(llm_names())}")
    return names


def _rungs_in_budget(args: argparse.Namespace, rungs: bool | tuple[str, ...]) -> tuple[str, ...]:
    """``--llm-budget-minutes``: the rungs (all, or ``--llm NAMES``) that fit; says which."""
    from frugalrec.bench.llm_configs import FULL_USERS, QUICK_USERS, rungs_within_budget
    from frugalrec.cli import UsageError
    from frugalrec.llm.registry import llm_names

    if args.llm_budget_minutes <= 0:
        raise UsageError(f"--llm-budget-minutes: must be > 0, got {args.llm_budget_minutes}")
    names = rungs if isinstance(rungs, tuple) else tuple(llm_names())
    users = args.llm_sample or (QUICK_USERS if args.quick else FULL_USERS)
    # the full grid measures each rung at three candidate counts (5, 10, 20)
    per_rung = users * (1 if args.quick else 3)
    chosen, est = rungs_within_budget(names, per_rung, args.llm_budget_minutes * 60.0)
    if not args.json:
        parts = []
        for n in names:
            e = est[n]
            if e is None:
                parts.append(f"{n} (no measured rate: left out)")
            else:
                parts.append(f"{n} ~{e / 60:.1f} min" + ("" if n in chosen else " (left out)"))
        print(f"LLM configurations for {users} users: " + ", ".join(parts), file=sys.stderr)
    return chosen


def cmd_bench(args: argparse.Namespace) -> int:
    if args.engine == "local":
        if args.ray_address:
            raise ValueError("--ray-address applies only to --engine ray")
        return _bench(args)
    import os

    from frugalrec.engines.base import ENV_ENGINE, ENV_RAY_ADDRESS
    from frugalrec.engines.ray_engine import RayEngine

    # Each configuration is measured in a fresh interpreter: start (or join) the cluster once
    # here and let those processes join it, so each pays no Ray start-up of its own.
    with RayEngine(address=args.ray_address, workers=args.workers) as engine:
        os.environ[ENV_ENGINE] = "ray"
        os.environ[ENV_RAY_ADDRESS] = engine.cluster_address()
        try:
            return _bench(args)
        finally:
            os.environ.pop(ENV_ENGINE, None)
            os.environ.pop(ENV_RAY_ADDRESS, None)


def _bench(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from frugalrec.bench.configs import default_grid, run_bench
    from frugalrec.cli.source import source_flags, source_from_args, warn_coverage
    from frugalrec.pipeline.config import PipelineConfig

    if args.llm_sample is not None and args.llm_sample < 2:
        from frugalrec.cli import UsageError

        raise UsageError(f"--llm-sample: needs at least 2 users, got {args.llm_sample}")
    src = source_from_args(args)
    assert src is not None
    # Load once here: a bad file fails before any worker starts, with file, line and field.
    warn_coverage(src.load(), src, args.json)
    rungs = llm_rungs(args.llm)
    if args.llm_budget_minutes is not None:
        rungs = _rungs_in_budget(args, rungs)
    configs = default_grid(args.quick, llm=rungs)
    if args.configs:
        raw = json.loads(Path(args.configs).read_text())
        if not isinstance(raw, list):
            raise ValueError(f"{args.configs}: expected a JSON list of PipelineConfig objects")
        configs = [PipelineConfig.from_dict(c) for c in raw]
    bar = tqdm(total=len(configs), desc="bench", unit="config", file=sys.stderr, leave=False)
    first = [True]

    def tick(name: str) -> None:
        if not first[0]:
            bar.update(1)
        first[0] = False
        bar.set_postfix_str(name)

    t0 = time.perf_counter()
    cmd = "frugalrec bench " + source_flags(src) + (" --quick" if args.quick else "")
    cmd += f" --out {args.out}" + (" --engine ray" if args.engine == "ray" else "")
    cmd += "" if not args.llm else " --llm" if args.llm == "all" else f" --llm {args.llm}"
    if args.llm_sample is not None:
        cmd += f" --llm-sample {args.llm_sample}"
    if args.llm_budget_minutes is not None:
        cmd += f" --llm-budget-minutes {args.llm_budget_minutes:g}"
    records = run_bench(
        src.to_spec(), args.out, args.quick, configs, tick, commands=[cmd],
        llm_users=args.llm_sample,
    )  # fmt: skip
    bar.update(1)
    bar.close()
    if args.json:
        print(dumps(records, indent=2))
        return 0
    rows = []
    for r in records:
        q, c = r["quality"], r["cost"]
        rows.append({
            "config": r["config"]["name"],
            "ndcg@10": q.get("ndcg@10"),
            "cold_ndcg@10": q.get("cold_ndcg@10"),
            "p50_ms": c["p50_ms"],
            "p99_ms": c["p99_ms"],
            "qps": round(c["qps"]),
            "rss_mb": round(c["peak_rss_mb"]),
            "+rss_mb": round(c.get("rss_increment_mb", float("nan"))),
            "model_mb": round(c["model_mb"], 1),
            "$/1M": c["usd_per_million_requests"],
        })  # fmt: skip
    print(format_table(rows, list(rows[0]), 4))
    out = Path(args.out)
    print(f"\n{len(records)} configurations in {time.perf_counter() - t0:.0f} s")
    print(f"bench: {out / 'bench.json'}\nreport: {out / 'report.html'}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from frugalrec.cost.hardware import load_profiles
    from frugalrec.cost.planner import format_plan_table, plan
    from frugalrec.cost.records import load_bench

    records = load_bench(args.bench)
    if args.verify and args.dataset is None and args.interactions is None:
        raise ValueError(
            "--verify re-measures on the bench's data: pass the same --interactions/--items "
            "(or --dataset) the bench ran on"
        )
    if args.catalogue_size is not None:
        if args.verify:
            raise ValueError("--verify re-measures on the bench dataset; drop --catalogue-size")
        records = _resized(args)
    profiles = load_profiles()
    hardware = [h.strip() for h in args.hardware.split(",") if h.strip()]
    unknown = [h for h in hardware if h not in profiles]
    if unknown:
        raise ValueError(f"unknown hardware {unknown}; known: {', '.join(sorted(profiles))}")
    result = plan(
        records,
        hardware,
        profiles,
        p99_ms=args.p99_ms,
        max_memory_mb=args.max_memory_mb,
        qps=args.qps,
        budget_usd_month=args.budget_usd_month,
        min_ndcg=args.min_ndcg,
        metric=args.metric,
        retrain_days=args.retrain_days,
    )
    verified = None
    if args.verify:
        verified = _verify(result, args)
        result["verify"] = verified
    if args.json:
        print(dumps(result, indent=2))
    else:
        print(format_plan_table(result))
        if verified:
            print(
                f"\nverify: re-measured `{verified['config']}` on local: p99 "
                f"{verified['measured_p99_ms']:.2f} ms (bench said {verified['bench_p99_ms']:.2f}"
                f" ms; budget {verified['budget_p99_ms']}) -> "
                f"{'meets' if verified['meets_budget'] else 'MISSES'} the budget"
            )
    return 0 if verified is None or verified["meets_budget"] is not False else 1


def _resized(args: argparse.Namespace) -> list[CostRecord]:
    """Bench records with their cost resized to ``--catalogue-size`` items."""
    import json

    from frugalrec.cost.catalogue import load_fits, measured_items, resize_record
    from frugalrec.cost.records import CostRecord

    if args.catalogue_size < 1:
        raise ValueError(f"--catalogue-size must be >= 1, got {args.catalogue_size}")
    fits = load_fits(args.scaling)
    raw = json.loads(Path(args.bench).read_text(encoding="utf-8"))
    return [
        CostRecord.from_dict(
            resize_record(r, args.catalogue_size, fits, measured_items(r, args.dataset)),
            where=f"{args.bench} record {i}",
        )
        for i, r in enumerate(raw)
    ]


def _verify(result: dict, args: argparse.Namespace) -> dict | None:
    """Re-measure the configuration chosen for ``local`` in a fresh process."""
    from frugalrec.bench.configs import run_config_subprocess
    from frugalrec.pipeline.config import PipelineConfig

    entry = result.get("hardware", {}).get("local")
    if not entry or "config" not in entry:
        return None
    from frugalrec.cli.source import source_spec

    config = PipelineConfig.from_dict(entry["config"])
    spec = source_spec(args)
    assert spec is not None
    measured = run_config_subprocess(config, spec, quick=True)["cost"]["p99_ms"]
    budget = args.p99_ms
    return {
        "config": config.name,
        "bench_p99_ms": entry["cost"]["p99_ms"],
        "measured_p99_ms": measured,
        "budget_p99_ms": budget,
        "meets_budget": None if budget is None else measured <= budget,
    }
