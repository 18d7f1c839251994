"""The ``frugalrec`` command: one sub-command module per resource."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from frugalrec.data.errors import DataValidationError


class UsageError(Exception):
    """A bad option or combination; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from frugalrec.cli import (
        bench,
        data,
        demo,
        encoders,
        evaluate,
        forget,
        hardware,
        models,
        query,
        recommend,
        scale,
        serve,
    )

    parser = argparse.ArgumentParser(
        prog="frugalrec",
        description="Language-model recommendations that know what they cost.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, evaluate, query, encoders, models, bench, hardware, demo, scale, serve,
                   recommend, forget):  # fmt: skip
        module.register(sub)
    query.register_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn known errors into one clear line (no traceback)."""
    from frugalrec._threads import configure_threads

    configure_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DataValidationError as exc:
        print(f"error: invalid input ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
