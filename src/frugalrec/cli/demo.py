"""``frugalrec demo``: the main job end to end on MovieLens-100K with embedded defaults."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="run the main job end to end on ml-100k and print a summary")
    p.add_argument("--out", default="demo-out", help="directory for results (default: demo-out)")
    p.add_argument("--skip-bench", action="store_true", help="stop before bench and plan")
    p.set_defaults(func=cmd_demo)


def _step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from frugalrec.cli import main as cli_main
    from frugalrec.data.sources import load_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _step("1. Data: MovieLens-100K (fetched once into the cache, SHA-256 verified)")
    ds = load_dataset("ml-100k")
    for k, v in ds.summary().items():
        print(f"  {k:>12}: {v}")
    steps: list[tuple[str, list[str]]] = [
        (
            "2. Collaborative baselines: tuned on valid, full-ranking test metrics (random)",
            ["evaluate", "--dataset", "ml-100k", "--protocol", "random",
             "--json", str(out / "evaluate-random.json"), "--recs-out", str(out / "recs.csv")],
        ),
        (
            "3. Language-model tier on cold items (only text can score them)",
            ["evaluate", "--dataset", "ml-100k", "--protocol", "cold-item",
             "--models", "pop,content,textmap,hybrid", "--encoder", "minilm",
             "--backend", "onnx-int8", "--json", str(out / "evaluate-cold.json")],
        ),
        (
            "4. A natural-language request",
            ["query", "a funny animated movie for kids, no horror, from the 90s",
             "--dataset", "ml-100k", "-k", "5", "--backend", "onnx-int8"],
        ),
    ]  # fmt: skip
    if not args.skip_bench:
        bench_dir = out / "bench"
        plan = ["plan", "--bench", str(bench_dir / "bench.json"),
                "--hardware", "local,cpu16,t4,l4,h100", "--p99-ms", "50", "--qps", "200",
                "--budget-usd-month", "500"]  # fmt: skip
        steps += [
            (
                "5. Cost and quality side by side (bench --quick)",
                ["bench", "--dataset", "ml-100k", "--quick", "--out", str(bench_dir)],
            ),
            (
                "6. Plan: best configuration for 200 QPS, p99 <= 50 ms, <= $500/month",
                plan,
            ),
            (
                "7. The same budget for a 1M-item catalogue (costs resized by fitted curves)",
                [*plan, "--catalogue-size", "1000000"],
            ),
        ]  # fmt: skip
    for title, argv in steps:
        _step(title)
        print("$ frugalrec " + " ".join(f'"{a}"' if " " in a else a for a in argv), flush=True)
        code = cli_main(argv)
        if code:
            return code
    print(f"\nDemo finished in {time.perf_counter() - t0:.0f} s; results in {out}/")
    if not args.skip_bench:
        print(f"Open {out / 'bench' / 'report.html'} for the quality-vs-cost report.")
    return 0
