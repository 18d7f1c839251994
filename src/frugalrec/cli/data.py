"""``frugalrec data validate`` and ``frugalrec export-split``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from frugalrec._io import atomic_path, dumps
from frugalrec._table import format_table
from frugalrec.data.splits import PROTOCOLS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from frugalrec.cli.source import add_source_args
    from frugalrec.data.validate import DEFAULT_MIN_COVERAGE

    data = sub.add_parser("data", help="check and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    v = dsub.add_parser(
        "validate",
        help="validate your files: every problem (file, line, field), id coverage, duplicates",
    )
    add_source_args(v)
    v.add_argument(
        "--min-coverage",
        type=float,
        default=DEFAULT_MIN_COVERAGE,
        metavar="SHARE",
        help="fail when fewer than this share of the interacted items have a row in --items "
        f"(default {DEFAULT_MIN_COVERAGE})",
    )
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")
    v.set_defaults(func=cmd_validate)

    x = dsub.add_parser(
        "example", help="write a small generated bookshop catalogue (interactions.csv, items.csv)"
    )
    x.add_argument("--out", required=True, help="output directory")
    x.add_argument("--items", type=int, default=300, dest="n_items", help="books (default 300)")
    x.add_argument("--users", type=int, default=200, dest="n_users", help="readers (default 200)")
    x.add_argument(
        "--interactions", type=int, default=4000, dest="n_interactions", help="about this many"
    )
    x.add_argument("--seed", type=int, default=7)
    x.add_argument("--category-sep", default="|", help="separator in the category column")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_example)

    e = sub.add_parser("export-split", help="write a protocol split as CSV files (original ids)")
    add_source_args(e)
    e.add_argument("--protocol", default="random", choices=PROTOCOLS)
    e.add_argument("--seed", type=int, default=42)
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_export_split)


def cmd_validate(args: argparse.Namespace) -> int:
    from frugalrec.cli import UsageError
    from frugalrec.cli.source import source_from_args
    from frugalrec.data.errors import DataValidationError
    from frugalrec.data.validate import coverage, duplicates, ratings

    if not 0.0 <= args.min_coverage <= 1.0:
        raise UsageError(f"--min-coverage must be in [0, 1], got {args.min_coverage}")
    src = source_from_args(args)
    assert src is not None
    try:
        ds, steps = src.load_with_report()
    except DataValidationError as exc:
        if args.json:
            print(dumps({"ok": False, "problems": [p.to_dict() for p in exc.problems]}, indent=2))
        else:
            print(f"{len(exc.problems)} problem(s) found:", file=sys.stderr)
            for p in exc.problems:
                print(f"  {p}", file=sys.stderr)
        return 1
    # Coverage, duplicates and ratings describe the files as given, before cleaning.
    raw = src.with_cleaning(min_rating=None, dedup=False, k_core=0).load() if len(steps) > 1 else ds
    summary = ds.summary()
    summary.pop("name", None)
    cats = _categories(ds)
    if cats:
        summary["categories"] = len(cats)
        summary["category_examples"] = ", ".join(cats[:8])
    cov = coverage(raw) if src.items is not None else None
    problems: list[str] = []
    if cov is not None and cov["metadata_coverage"] < args.min_coverage:
        problems.append(
            f"{src.items}: only {cov['interacted_items_with_metadata']} of "
            f"{cov['interacted_items']} interacted items ({cov['metadata_coverage']:.1%}) have "
            f"a row here, below --min-coverage {args.min_coverage:g}; ids without one, e.g. "
            f"{cov['example_ids_without_metadata']} (do both files use the same item ids?)"
        )
    report = {
        "ok": not problems,
        "summary": summary,
        "coverage": cov,
        "duplicates": duplicates(raw),
        "ratings": ratings(raw, src.min_rating),
        "cleaning": steps,
        "problems": problems,
    }
    if args.json:
        print(dumps(report, indent=2))
        return 0 if report["ok"] else 1
    rows = [{"field": k, "value": v} for k, v in summary.items()]
    if cov is not None:
        rows += [
            {"field": "interacted items with metadata",
             "value": f"{cov['interacted_items_with_metadata']} of {cov['interacted_items']} "
                      f"({cov['metadata_coverage']:.1%})"},
            {"field": "catalogue items without interactions",
             "value": f"{cov['catalogue_items_without_interactions']} of "
                      f"{cov['catalogue_items']}"},
        ]  # fmt: skip
    dup = duplicates(raw)
    rows.append({"field": "duplicate (user, item) rows", "value": dup["duplicate_interactions"]})
    print(format_table(rows, ["field", "value"], 6))
    print(f"duplicates: {dup['what_happens']}")
    r = ratings(raw, src.min_rating)
    if r:
        print(f"ratings {r['rating_min']:g}..{r['rating_max']:g}: {r['positives']}")
    if len(steps) > 1:
        print("cleaning:")
        print(format_table(steps, ["step", "interactions", "users", "items"]))
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    return 0 if not problems else 1


def _categories(ds) -> list[str]:  # type: ignore[no-untyped-def]
    from frugalrec.text.features import multi_hot

    return multi_hot(ds.items, "genres")[1] if "genres" in ds.items else []


def cmd_example(args: argparse.Namespace) -> int:
    from frugalrec.cli import UsageError
    from frugalrec.data.example import write_example

    if min(args.n_items, args.n_users, args.n_interactions) < 10:
        raise UsageError("--items, --users and --interactions must each be at least 10")
    paths = write_example(
        args.out,
        category_sep=args.category_sep,
        n_items=args.n_items,
        n_users=args.n_users,
        n_interactions=args.n_interactions,
        seed=args.seed,
    )
    if args.json:
        print(dumps({k: str(v) for k, v in paths.items()}, indent=2))
        return 0
    print(f"wrote {paths['interactions']} and {paths['items']} (a generated bookshop)")
    sep = "" if args.category_sep == "|" else f" --category-sep {args.category_sep!r}"
    print(
        "next: frugalrec data validate --interactions "
        f"{paths['interactions']} --items {paths['items']}{sep}"
    )
    return 0


def cmd_export_split(args: argparse.Namespace) -> int:
    from frugalrec.cli.source import load_source
    from frugalrec.data.splits import make_split

    ds = load_source(args)
    split = make_split(ds, args.protocol, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for stage, mask in (
        ("train", split.train_mask),
        ("valid", split.valid_mask),
        ("test", split.test_mask),
    ):
        frame = pd.DataFrame(
            {
                "user": ds.users_vocab.external(ds.user[mask]),
                "item": ds.items_vocab.external(ds.item[mask]),
            }
        )
        written[stage] = _write_csv(frame, out / f"{stage}.csv")
    items = ds.items.copy()
    cols = [c for c in ("item", "title", "year", "genres") if c in items]
    # The category column keeps its canonical name: feed the files back with --items.
    written["items"] = _write_csv(items[cols], out / "items.csv")
    if split.test_candidates is not None:
        cold = pd.DataFrame({"item": ds.items_vocab.external(split.test_candidates)})
        written["cold_items"] = _write_csv(cold, out / "cold_items.csv")
    if args.json:
        print(json.dumps({"out": str(out), "rows": written, "protocol": args.protocol}, indent=2))
    else:
        print(
            format_table(
                [{"file": f"{k}.csv", "rows": v} for k, v in written.items()], ["file", "rows"]
            )
        )
        print(f"written to {out}")
    return 0


def _write_csv(frame: pd.DataFrame, path: Path) -> int:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return len(frame)
