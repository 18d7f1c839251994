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
    data = sub.add_parser("data", help="check and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    v = dsub.add_parser("validate", help="validate interaction/item files; list every problem")
    v.add_argument(
        "--interactions", required=True, help="CSV/TSV/Parquet with user,item[,rating][,timestamp]"
    )
    v.add_argument("--items", help="CSV/TSV/Parquet with item,title[,text columns...]")
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")
    v.set_defaults(func=cmd_validate)

    e = sub.add_parser("export-split", help="write a protocol split as CSV files (original ids)")
    e.add_argument("--dataset", default="ml-100k")
    e.add_argument("--protocol", default="random", choices=PROTOCOLS)
    e.add_argument("--seed", type=int, default=42)
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_export_split)


def cmd_validate(args: argparse.Namespace) -> int:
    from frugalrec.data.errors import DataValidationError
    from frugalrec.data.loaders import load_interactions

    try:
        ds = load_interactions(args.interactions, args.items)
    except DataValidationError as exc:
        if args.json:
            print(dumps({"ok": False, "problems": [p.to_dict() for p in exc.problems]}, indent=2))
        else:
            print(f"{len(exc.problems)} problem(s) found:", file=sys.stderr)
            for p in exc.problems:
                print(f"  {p}", file=sys.stderr)
        return 1
    summary = ds.summary()
    summary.pop("name", None)
    if args.json:
        print(dumps({"ok": True, "summary": summary}, indent=2))
    else:
        print(
            format_table(
                [{"field": k, "value": v} for k, v in summary.items()], ["field", "value"], 6
            )
        )
    return 0


def cmd_export_split(args: argparse.Namespace) -> int:
    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split

    ds = load_dataset(args.dataset)
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
