"""``frugalrec batch-recommend`` (top-K for every user, on the local or the Ray engine) and
``frugalrec plan-scale`` (when a Ray cluster pays off, from measured overhead)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from frugalrec._io import dumps
from frugalrec._table import format_table

DEFAULT_OVERHEAD = "docs/bench/ray_overhead.json"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from frugalrec.cli.evaluate import add_engine_args
    from frugalrec.cli.source import add_source_args

    b = sub.add_parser("batch-recommend", help="top-K lists for every user, written to Parquet")
    add_source_args(b)
    b.add_argument("--model", default="ease", help="model name (see frugalrec evaluate)")
    b.add_argument("-k", type=int, default=10, help="list length")
    b.add_argument("--keep-seen", action="store_true", help="do not exclude seen items")
    b.add_argument("--encoder", default="static", choices=["static", "minilm", "mpnet"])
    b.add_argument("--backend", default=None, help="encoder backend (text models only)")
    b.add_argument("--out", required=True, help="Parquet file: user,item,rank,score")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_args(b)
    b.set_defaults(func=cmd_batch_recommend)

    p = sub.add_parser(
        "plan-scale", help="from what catalogue size Ray pays off; workers for a deadline"
    )
    p.add_argument("--overhead", default=DEFAULT_OVERHEAD, help="measured figures (JSON)")
    p.add_argument("--stage", help="which measured stage (default: the first in the file)")
    p.add_argument("--items", type=float, required=True, help="catalogue size, e.g. 1e7")
    p.add_argument("--deadline-h", type=float, help="deadline in hours")
    p.add_argument("--workers", default="1,2,4,8,16,32,64", help="worker counts to tabulate")
    p.add_argument("--warm", action="store_true", help="the cluster is already running")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan_scale)


def cmd_batch_recommend(args: argparse.Namespace) -> int:
    from frugalrec.engines import make_engine

    if args.k < 1:
        raise ValueError(f"-k must be >= 1, got {args.k}")
    with make_engine(args.engine, address=args.ray_address, workers=args.workers) as engine:
        return _batch_recommend(args, engine)


def _batch_recommend(args: argparse.Namespace, engine) -> int:  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from frugalrec._io import atomic_path
    from frugalrec.cli.source import load_source
    from frugalrec.engines.base import engine_encoder
    from frugalrec.models.registry import model_class

    cls = model_class(args.model)  # an unknown name fails before any work
    steps = ["load", "encode", "fit", "recommend", "write"]
    bar = tqdm(total=len(steps), desc="batch-recommend", disable=args.quiet, file=sys.stderr)
    seconds: dict[str, float] = {}

    def step(name: str, t0: float) -> float:
        seconds[name] = time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix_str(name)
        return time.perf_counter()

    t = t_start = time.perf_counter()
    ds = load_source(args, quiet=args.quiet or args.json)
    t = step("load", t)
    fit_kwargs = {}
    if cls.uses_item_vectors:
        from frugalrec.text.encoders import load_encoder
        from frugalrec.text.features import item_features

        encoder = engine_encoder(load_encoder(args.encoder, args.backend), engine)
        fit_kwargs["item_vectors"] = item_features(ds, encoder=encoder)
    t = step("encode", t)
    model = cls().fit(ds, **fit_kwargs)
    t = step("fit", t)
    users = np.arange(ds.n_users, dtype=np.int64)
    ids, scores = engine.recommend(model, users, k=args.k, exclude_seen=not args.keep_seen)
    t = step("recommend", t)
    keep = ids.ravel() >= 0
    frame = pd.DataFrame(
        {
            # External ids as the dataset stores them (pseudonyms where it was pseudonymised).
            "user": pd.Series(ds.users_vocab.external(np.repeat(users, args.k)[keep])),
            "item": pd.Series(ds.items_vocab.external(ids.ravel()[keep])),
            "rank": np.tile(np.arange(1, args.k + 1, dtype=np.int32), len(users))[keep],
            "score": scores.ravel()[keep],
        }
    ).infer_objects()
    out = Path(args.out)
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    step("write", t)
    bar.close()
    summary = {
        "dataset": ds.name,
        "model": args.model,
        "k": args.k,
        "users": int(ds.n_users),
        "rows": len(frame),
        "out": str(out),
        "engine": engine.info(),
        "seconds": seconds,
        "total_seconds": time.perf_counter() - t_start,
    }
    if args.json:
        print(dumps(summary, indent=2))
        return 0
    rows = [{"stage": k, "seconds": round(v, 2)} for k, v in seconds.items()]
    print(format_table(rows, ["stage", "seconds"]))
    workers = summary["engine"].get("workers", 1)
    print(
        f"{len(frame)} rows for {ds.n_users} users -> {out} "
        f"(engine {engine.name}, {workers} worker(s), {summary['total_seconds']:.1f} s)"
    )
    return 0


def cmd_plan_scale(args: argparse.Namespace) -> int:
    import json

    from frugalrec.engines.overhead import RayOverhead, scale_table, workers_for_deadline

    path = Path(args.overhead)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no measured overhead; measure with "
            "python -m frugalrec.bench.engines encode --overhead " + str(path) + " --out ..."
        )
    raw = json.loads(path.read_text())
    stages = raw.get("stages", {})
    if not stages:
        raise ValueError(f"{path}: field 'stages' is empty")
    stage = args.stage or next(iter(stages))
    if stage not in stages:
        raise ValueError(f"{path}: no stage {stage!r}; measured: {', '.join(stages)}")
    o = RayOverhead.from_dict(stages[stage])
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError as exc:
        raise ValueError(f"--workers must be comma-separated integers: {exc}") from exc
    if args.items <= 0 or any(w < 1 for w in workers):
        raise ValueError("--items and every --workers value must be positive")
    rows = scale_table(o, args.items, workers, args.warm)
    result = {
        "stage": stage,
        "items": args.items,
        "warm": args.warm,
        "local_seconds": args.items / o.local_items_per_s,
        "figures": o.to_dict(),
        "table": rows,
    }
    if args.deadline_h is not None:
        need = workers_for_deadline(o, args.items, args.deadline_h * 3600, args.warm)
        result["deadline_h"] = args.deadline_h
        result["workers_for_deadline"] = need
    if args.json:
        print(dumps(result, indent=2))
        return 0
    print(
        f"{stage}: {args.items:,.0f} items; in-process ({o.local_threads} thread(s)) "
        f"{_hms(result['local_seconds'])}"
    )
    shown = [
        {
            "workers": r["workers"],
            "time": _hms(r["seconds"]),
            "speed-up": f"{r['speedup_vs_local']:.2f}x",
            "pays off from": "never"
            if r["pays_off_from_items"] is None
            else f"{r['pays_off_from_items']:,} items",
        }
        for r in rows
    ]
    print(format_table(shown, ["workers", "time", "speed-up", "pays off from"]))
    if args.deadline_h is not None:
        need = result["workers_for_deadline"]
        print(
            f"within {args.deadline_h:g} h: "
            + (
                f"{need} worker(s) of one core each"
                if need
                else "impossible (one-off and driver-side costs alone exceed it)"
            )
        )
    print(f"(figures measured {raw.get('date', '?')} on {raw.get('machine', '?')}: {path})")
    return 0


def _hms(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
