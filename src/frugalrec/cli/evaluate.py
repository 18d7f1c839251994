"""``frugalrec evaluate``: tuned full-ranking evaluation of several models."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from frugalrec._io import dumps, write_json_atomic
from frugalrec._table import format_table
from frugalrec.data.splits import PROTOCOLS

SHOWN = (
    "ndcg@10",
    "recall@10",
    "mrr@10",
    "hr@10",
    "precision@10",
    "coverage@10",
    "novelty@10",
    "ild@10",
    "ndcg@20",
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from frugalrec.cli.source import add_source_args

    p = sub.add_parser("evaluate", help="tune on valid, report full-ranking test metrics")
    src = add_source_args(p, what="data (your own files, ml-100k, or a ready split)")
    src.add_argument("--train", help="external split: train file (user,item)")
    src.add_argument("--valid", help="external split: valid file")
    src.add_argument("--test", help="external split: test file")
    src.add_argument(
        "--cold-items", help="external split: CSV with column item; test ranks only these"
    )
    p.add_argument("--protocol", default="random", choices=PROTOCOLS)
    p.add_argument(
        "--models",
        default="pop,itemknn,ease,als,bpr",
        help="comma-separated model names ('blend' searches blends of the others on valid), "
        "or 'auto': every model that can score the protocol's candidates, plus blends; the "
        "best valid NDCG@10 is reported as 'auto'",
    )
    p.add_argument("--no-tune", action="store_true", help="use default hyper-parameters")
    txt = p.add_argument_group("text tier (for content, textmap, hybrid, attention)")
    txt.add_argument("--encoder", default="minilm", choices=["static", "minilm", "mpnet"])
    txt.add_argument(
        "--backend", default=None, help="torch | onnx | onnx-int8 (default: torch; static: static)"
    )
    txt.add_argument(
        "--attributes",
        default=None,
        help="comma-separated multi-valued item columns appended as features (default: the "
        "category column if there is one; '' for none)",
    )
    add_finetune_args(txt)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs"
    )
    p.add_argument("--json", metavar="FILE", help="write results as JSON ('-' for stdout)")
    p.add_argument("--recs-out", metavar="FILE", help="write top-20 lists (user,item,rank,score)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_args(p)
    p.set_defaults(func=cmd_evaluate)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """``--engine`` / ``--ray-address`` / ``--workers`` (shared by the batch commands)."""
    from frugalrec.engines import ENGINES

    g = p.add_argument_group("engine (where batch encoding and ranking run)")
    g.add_argument("--engine", default="local", choices=ENGINES, help="default: local")
    g.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray)")
    g.add_argument("--workers", type=int, help="Ray actors (default: the cluster's CPUs)")


def add_finetune_args(g: argparse._ArgumentGroup) -> None:
    """``--finetune`` / ``--finetune-epochs`` (evaluate, bench)."""
    g.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the encoder on the split's training interactions first (cached)",
    )
    g.add_argument("--finetune-epochs", type=int, default=3, help="at most (valid stops early)")
    g.add_argument(
        "--finetune-pairs", type=int, default=0, help="seeded sample of training pairs (0: all)"
    )
    g.add_argument("--finetune-lr", type=float, default=2e-5, help="AdamW learning rate")


def finetuned_encoder_name(args: argparse.Namespace, split, attrs, quiet: bool = False):  # type: ignore[no-untyped-def]
    """Fine-tune ``args.encoder`` on ``split.train`` when ``--finetune`` is given; returns
    (encoder name to load, training record or None)."""
    if not getattr(args, "finetune", False):
        return args.encoder, None
    from frugalrec.evaluate.finetune import finetune_for_split
    from frugalrec.text.finetune import FinetuneConfig

    res = finetune_for_split(
        split,
        args.encoder,
        attrs,
        FinetuneConfig(
            epochs=args.finetune_epochs,
            max_pairs=args.finetune_pairs,
            lr=args.finetune_lr,
            seed=args.seed,
        ),
        progress=not quiet,
    )
    print(
        f"fine-tuned {args.encoder} -> {res.name} ({'cached' if res.cached else 'trained'}; "
        f"best epoch {res.record['best_epoch']}, valid ndcg@10 {res.record['valid_per_epoch']})",
        file=sys.stderr,
    )
    return res.name, res.record


def resolve_split(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The split the options describe (built-in, own files + protocol, or external)."""
    from frugalrec.cli import UsageError
    from frugalrec.cli.source import load_source
    from frugalrec.data.sources import load_external_split
    from frugalrec.data.splits import make_split

    external = [args.train, args.valid, args.test]
    if any(external):
        if not all(external):
            raise UsageError("an external split needs all of --train, --valid and --test")
        if args.dataset or args.interactions:
            raise UsageError(
                "use either --dataset/--interactions or --train/--valid/--test, not both"
            )
        return load_external_split(args.train, args.valid, args.test, args.items, args.cold_items)
    if args.cold_items:
        raise UsageError("--cold-items applies to an external split (--train/--valid/--test)")
    ds = load_source(args, quiet=getattr(args, "quiet", False))
    return make_split(ds, args.protocol, seed=args.seed)


def _load_encoder(args: argparse.Namespace, engine, required: bool):  # type: ignore[no-untyped-def]
    """The text encoder the options name; with ``required=False`` (``--models auto``) a
    missing encoder leaves the text-aware models out instead of failing."""
    from frugalrec.text.encoders import load_encoder

    backend = args.backend or ("static" if args.encoder == "static" else "torch")
    if required:
        return load_encoder(args.encoder, backend)
    try:
        return load_encoder(args.encoder, backend)
    except Exception as exc:  # any missing model/package: the text tier is optional here
        print(
            f"auto: no text encoder ({args.encoder}/{backend}: {exc}); text-aware models skipped",
            file=sys.stderr,
        )
        return None


def check_attributes(
    attributes: str | None,
    items,
    category_col: str | None = None,  # type: ignore[no-untyped-def]
) -> tuple[str, ...]:
    """The ``--attributes`` columns, each of which must exist in the item table (the
    category column answers to its own name too). None: the category column if present."""
    from frugalrec.cli import UsageError
    from frugalrec.data.columns import ALIASES, did_you_mean

    cols = [str(c) for c in items.columns]
    if attributes is None:
        return ("genres",) if "genres" in cols else ()
    out = []
    for a in (a.strip() for a in attributes.split(",")):
        if not a:
            continue
        if a not in cols and "genres" in cols and a in (*ALIASES["genres"], category_col):
            a = "genres"  # the category column is stored as 'genres' whatever its file name
        if a not in cols:
            names = cols + (list(ALIASES["genres"]) if "genres" in cols else [])
            raise UsageError(
                f"--attributes: no item column {a!r}{did_you_mean(a, names)}; item columns: "
                f"{cols} (the category column is 'genres' or its own name)"
            )
        out.append(a)
    return tuple(out)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from frugalrec.engines import make_engine

    with make_engine(args.engine, address=args.ray_address, workers=args.workers) as engine:
        return _evaluate(args, engine)


def _evaluate(args: argparse.Namespace, engine) -> int:  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    from frugalrec.cli import UsageError
    from frugalrec.engines.base import engine_encoder
    from frugalrec.evaluate.run import auto_models, choose_auto, n_steps, run_models, write_recs
    from frugalrec.models.registry import model_class

    auto = args.models.strip() == "auto"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise UsageError(f"--models is empty ({args.models!r}); e.g. --models pop,ease,textmap")
    if not auto:
        for m in models:
            model_class(m)  # unknown names fail before any work
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0 (0: no intervals), got {args.bootstrap}")
    t0 = time.perf_counter()
    split = resolve_split(args)
    attrs = check_attributes(args.attributes, split.dataset.items, args.category_col)
    encoder = None
    if auto or any(model_class(m).uses_item_vectors for m in models):
        encoder = _load_encoder(args, engine, required=not auto)
    if auto:
        models = auto_models(split, text=encoder is not None)
        if not args.quiet:
            print(f"auto: evaluating {', '.join(models)}", file=sys.stderr)
    bar = tqdm(
        total=n_steps(models, split, not args.no_tune),
        desc="evaluate",
        unit="fit",
        disable=args.quiet,
        file=sys.stderr,
        leave=False,
    )

    def tick(label: str, steps: int) -> None:
        bar.set_postfix_str(label)
        bar.update(steps)

    item_vectors = None
    finetune_record = None
    if encoder is not None:
        from frugalrec.text.encoders import load_encoder
        from frugalrec.text.features import item_features

        backend = args.backend or ("static" if args.encoder == "static" else "torch")
        enc_name, finetune_record = finetuned_encoder_name(args, split, attrs, args.quiet)
        if enc_name != args.encoder:
            encoder = load_encoder(enc_name, backend)
        bar.set_postfix_str(f"encoding items ({enc_name}/{backend})")
        item_vectors = item_features(
            split.dataset, args.encoder, backend, attrs, encoder=engine_encoder(encoder, engine)
        )
    notes: dict[str, object] = {}
    runs = run_models(
        split,
        models,
        do_tune=not args.no_tune,
        progress=tick,
        n_boot=args.bootstrap,
        seed=args.seed,
        item_vectors=item_vectors,
        recommend=None if engine.name == "local" else engine.recommend,
        valid_for_all=auto or "blend" in models,
        notes=notes,
    )
    bar.close()
    if auto:
        runs.append(choose_auto(runs))
    payload = {
        "dataset": split.dataset.name if split.protocol != "external" else "external",
        "protocol": split.protocol,
        "encoder": None
        if item_vectors is None
        else {
            "tier": args.encoder,
            "backend": args.backend or ("static" if args.encoder == "static" else "torch"),
            "attributes": ",".join(attrs),
            "dims": int(item_vectors.shape[1]),
            "finetune": finetune_record,
        },
        "split": split.counts(),
        "engine": engine.info(),
        "results": [r.to_dict() for r in runs],
        **notes,
        "seconds": time.perf_counter() - t0,
    }
    if args.recs_out:
        for r in runs:
            path = Path(args.recs_out)
            if len(runs) > 1:
                path = path.with_name(f"{path.stem}.{r.model}{path.suffix or '.csv'}")
            n = write_recs(r, split, path)
            print(f"wrote {n} rows to {path}", file=sys.stderr)
    if args.json == "-":
        print(dumps(payload, indent=2))
        return 0
    if args.json:
        write_json_atomic(args.json, payload)
    rows = []
    for r in runs:
        row: dict[str, object] = {"model": r.model if r.chosen is None else f"auto={r.chosen}"}
        row.update({k: r.result.metrics.get(k) for k in SHOWN})
        lo_hi = r.result.ci95.get("ndcg@10") if args.bootstrap else None
        row["ndcg@10 95% CI"] = f"[{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else ""
        row["valid"] = None if r.best_valid is None else round(r.best_valid, 4)
        row["fit_s"] = round(r.fit_seconds, 2)
        rows.append(row)
    print(f"{payload['dataset']} / {split.protocol}: {payload['split']}")
    print(format_table(rows, ["model", *SHOWN, "ndcg@10 95% CI", "valid", "fit_s"]))
    print(f"({payload['seconds']:.1f} s; tuned on valid, refitted on train+valid, scored on test)")
    if args.json:
        print(f"results written to {args.json}")
    return 0
