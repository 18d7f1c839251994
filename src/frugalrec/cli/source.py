"""The one data-source argument group every data-reading command shares.

``--dataset ml-100k`` or ``--interactions FILE [--items FILE]`` (CSV, TSV, semicolon or
Parquet), the user's column names, the cleaning options. A command given neither says so:
nothing falls back to ml-100k silently.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from frugalrec.data.dataset import Dataset
    from frugalrec.data.sources import DataSource

# Catalogues the service knows besides the data sources (a tiny one for tests).
SERVE_ONLY = ("synthetic",)


def add_source_args(
    p: argparse.ArgumentParser, *, serve_names: bool = False, what: str = "data source"
) -> argparse._ArgumentGroup:
    """Add the data-source group (and the column and cleaning options) to ``p``."""
    names = "ml-100k" + (", or synthetic (tiny, for tests)" if serve_names else "")
    g = p.add_argument_group(
        what, "--dataset NAME, or your own files: --interactions FILE [--items FILE]"
    )
    g.add_argument("--dataset", help=f"built-in reference dataset: {names}")
    g.add_argument(
        "--interactions",
        metavar="FILE",
        help="your interactions (CSV/TSV/;-separated/Parquet): user,item[,rating][,timestamp]",
    )
    g.add_argument(
        "--items",
        metavar="FILE",
        help="your items: item,title[,category][,year][,free-text columns...]",
    )
    c = p.add_argument_group(
        "columns (default: common names, e.g. user_id/userId, item_id/itemId/movieId, ts/time)"
    )
    c.add_argument("--user-col", metavar="NAME", help="user id column")
    c.add_argument("--item-col", metavar="NAME", help="item id column (both files)")
    c.add_argument("--rating-col", metavar="NAME", help="rating column")
    c.add_argument("--time-col", metavar="NAME", help="timestamp column (Unix s or ISO-8601)")
    c.add_argument("--title-col", metavar="NAME", help="item title column")
    c.add_argument(
        "--text-cols", metavar="A,B", help="free-text item columns for the text models "
        "(default: every other text column)"
    )  # fmt: skip
    c.add_argument(
        "--category-col", metavar="NAME", help="multi-valued category column (default: "
        "genres/genre/category/categories)"
    )  # fmt: skip
    c.add_argument(
        "--category-sep", metavar="SEP", default="|", help="separator inside the category "
        "column (default: '|')"
    )  # fmt: skip
    c.add_argument(
        "--noun", help='what your items are called in sentences, e.g. "books" (default: items)'
    )
    k = p.add_argument_group("cleaning (applied in this order)")
    k.add_argument(
        "--min-rating",
        type=float,
        metavar="R",
        help="only ratings >= R are positives (default: every interaction is one)",
    )
    k.add_argument(
        "--dedup", action="store_true", help="keep the latest of repeated (user, item) rows"
    )
    k.add_argument(
        "--k-core", type=int, default=0, metavar="K", help="drop users/items with < K interactions"
    )
    return g


def source_from_args(args: argparse.Namespace, required: bool = True) -> DataSource | None:
    """The :class:`DataSource` the options describe (None if none given and not required)."""
    from frugalrec.cli import UsageError
    from frugalrec.data.columns import ColumnMap
    from frugalrec.data.sources import DataSource

    if args.dataset is None and args.interactions is None:
        if args.items is not None:
            raise UsageError(
                "--items needs --interactions (the items file alone is not a dataset); "
                "nothing falls back to ml-100k"
            )
        if not required:
            return None
        raise UsageError(
            "no data given: pass --interactions FILE [--items FILE] (your own data) or "
            "--dataset ml-100k (the reference benchmark)"
        )
    if args.dataset is not None and args.items is not None:
        raise UsageError("--items goes with --interactions, not with --dataset")
    text = None
    if args.text_cols is not None:
        text = tuple(c.strip() for c in args.text_cols.split(",") if c.strip())
    if not args.category_sep:
        raise UsageError("--category-sep must not be empty")
    columns = ColumnMap(
        user=args.user_col,
        item=args.item_col,
        rating=args.rating_col,
        timestamp=args.time_col,
        title=args.title_col,
        category=args.category_col,
        category_sep=args.category_sep,
        text=text,
    )
    if args.dataset is not None and columns != ColumnMap():
        raise UsageError("column options apply to your own files (--interactions), not --dataset")
    try:
        return DataSource(
            dataset=args.dataset,
            interactions=args.interactions,
            items=args.items,
            columns=columns,
            min_rating=args.min_rating,
            dedup=args.dedup,
            k_core=args.k_core,
            noun=args.noun,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def source_spec(args: argparse.Namespace, required: bool = True) -> str | None:
    """The source as a spec string (what workers and the service load); ``synthetic`` passes
    through for the commands that accept it."""
    if args.dataset in SERVE_ONLY:
        return str(args.dataset)
    src = source_from_args(args, required)
    return None if src is None else src.to_spec()


def load_source(args: argparse.Namespace, quiet: bool = False) -> Dataset:
    """Load and clean the source; warn (stderr) when few interacted items have metadata."""
    src = source_from_args(args)
    assert src is not None
    ds = src.load()
    warn_coverage(ds, src, quiet)
    return ds


def warn_coverage(ds: Dataset, src: DataSource, quiet: bool = False) -> None:
    """One stderr line when the items file describes too few of the interacted items."""
    from frugalrec.data.validate import DEFAULT_MIN_COVERAGE, coverage

    if src.items is None or quiet:
        return
    cov = coverage(ds)
    if cov["metadata_coverage"] < DEFAULT_MIN_COVERAGE:
        print(
            f"warning: only {cov['interacted_items_with_metadata']} of "
            f"{cov['interacted_items']} interacted items have a row in {src.items} "
            f"(e.g. {cov['example_ids_without_metadata']}); check that both files use the "
            "same item ids (frugalrec data validate)",
            file=sys.stderr,
        )


def source_flags(src: DataSource | str) -> str:
    """The command-line flags that name ``src`` (for the commands written into reports)."""
    from frugalrec.data.sources import DataSource

    if isinstance(src, str):
        if not src.strip().startswith("{"):
            return f"--dataset {shlex.quote(src)}"
        src = DataSource.from_spec(src)
    if src.dataset is not None:
        out = [f"--dataset {src.dataset}"]
    else:
        out = [f"--interactions {shlex.quote(str(src.interactions))}"]
        if src.items:
            out.append(f"--items {shlex.quote(src.items)}")
    cols = src.columns
    for flag, value in (
        ("--user-col", cols.user),
        ("--item-col", cols.item),
        ("--rating-col", cols.rating),
        ("--time-col", cols.timestamp),
        ("--title-col", cols.title),
        ("--category-col", cols.category),
        ("--text-cols", None if cols.text is None else ",".join(cols.text)),
        ("--category-sep", None if cols.category_sep == "|" else cols.category_sep),
        ("--noun", src.noun),
        ("--min-rating", None if src.min_rating is None else f"{src.min_rating:g}"),
        ("--k-core", src.k_core or None),
    ):
        if value is not None:
            out.append(f"{flag} {shlex.quote(str(value))}")
    if src.dedup:
        out.append("--dedup")
    return " ".join(out)
