"""``frugalrec encoders``: list the encoder ladder and benchmark it."""

from __future__ import annotations

import argparse

from frugalrec._io import dumps
from frugalrec._table import format_table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("encoders", help="the text encoder ladder: list or benchmark")
    esub = e.add_subparsers(dest="encoders_command", required=True, metavar="ACTION")
    ls = esub.add_parser("list", help="tiers and backends")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    b = esub.add_parser(
        "bench",
        help="texts/s, memory, size and fidelity per tier/backend",
        description="Each tier/backend runs in its own process; arguments as for "
        "`python -m frugalrec.bench.encoders`.",
    )
    b.add_argument("rest", nargs=argparse.REMAINDER, help="--configs, --n, --repeats, --out ...")
    b.set_defaults(func=cmd_bench)


def cmd_list(args: argparse.Namespace) -> int:
    from frugalrec.text import encoder_names, encoder_spec

    rows = [encoder_spec(name).row() for name in encoder_names()]
    cols = ["tier", "model", "backends", "dims", "size_mb", "licence"]
    print(dumps(rows, indent=2) if args.json else format_table(rows, cols))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from frugalrec.bench.encoders import main

    return main(args.rest)
