"""Plain-text tables for people (every CLI command also offers ``--json``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _fmt(v: object, digits: int) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return "" if v is None else str(v)


def format_table(
    rows: Sequence[Mapping[str, object]], columns: Sequence[str], digits: int = 4
) -> str:
    """Left-aligned text, right-aligned numbers, a rule under the header."""
    cells = [[_fmt(r.get(c), digits) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(r.get(c), int | float) for r in rows if r.get(c) is not None)
        for c in columns
    ]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(vals, widths, numeric, strict=True)
        ).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)
