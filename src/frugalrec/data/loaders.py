"""Loaders for a user's own files: interactions and items, CSV or Parquet, validated.

Every problem is reported with the file, the 1-based line (header = line 1) and the field,
and a file with any problem produces no ``Dataset`` and writes nothing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from frugalrec.data.columns import ColumnMap, did_you_mean, missing_message, resolve_columns
from frugalrec.data.dataset import Dataset, build_dataset
from frugalrec.data.errors import DataValidationError, Problem
from frugalrec.privacy.deidentify import QuasiIdentifierPolicy, coarsen_users
from frugalrec.privacy.pseudonyms import Pseudonymiser

MAX_PROBLEMS = 100
INTERACTION_COLUMNS = ("user", "item")
OPTIONAL_INTERACTION_COLUMNS = ("rating", "timestamp")
ITEM_COLUMNS = ("item", "title")
OPTIONAL_ITEM_COLUMNS = ("genres", "year")
# Unix seconds accepted as timestamps: 1900-01-01 .. 2200-01-01. Outside it a value is a
# mistake (milliseconds, a typo) and pandas could not represent some of them anyway.
TS_MIN, TS_MAX = -2_208_988_800, 7_258_118_400


def read_table(
    path: str | Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    columns: ColumnMap | None = None,
) -> tuple[pd.DataFrame, list[Problem]]:
    """Read a CSV/TSV/semicolon/Parquet file as strings; return the frame and the problems.

    Header columns are renamed to the canonical names in ``required``/``optional`` (by the
    explicit names in ``columns`` or by common aliases such as ``user_id``/``itemId``).
    Problems cover: missing file, empty file, undecodable bytes (with the line), duplicate
    or missing header columns (with the closest names), rows with the wrong number of
    fields, empty ids.
    """
    p = Path(path)
    name = str(path)
    if not p.is_file():
        return pd.DataFrame(), [Problem(name, "file not found")]
    if p.suffix.lower() in {".parquet", ".pq"}:
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises many types for a bad file
            return pd.DataFrame(), [Problem(name, f"not a readable Parquet file: {exc}")]
        cols = [str(c) for c in df.columns]
        cols, problems = _canonical_header(name, cols, required, optional, columns)
        if problems:
            return pd.DataFrame(), problems
        df.columns = cols
        df = df.astype(str).where(df.notna(), "")
        return df, _empty_id_problems(name, df, required)
    raw = p.read_bytes()
    if not raw.strip():
        return pd.DataFrame(), [Problem(name, "file is empty", line=1)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return pd.DataFrame(), [
            Problem(
                name, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-save as UTF-8", line=line
            )
        ]
    if not text.strip():
        return pd.DataFrame(), [Problem(name, "file is empty", line=1)]
    first = text.splitlines()[0] if text.splitlines() else ""
    delim = detect_delimiter(first)
    # newline="": the csv module itself splits \n, \r\n and \r (and keeps newlines inside
    # quoted fields); each row remembers the file line it starts on.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    rows: list[list[str]] = []
    starts: list[int] = []
    rows_end = 0
    try:
        for row in reader:
            starts.append(rows_end + 1)
            rows.append(row)
            rows_end = reader.line_num
    except csv.Error as exc:
        return pd.DataFrame(), [Problem(name, f"malformed CSV: {exc}", line=reader.line_num)]
    if not rows:
        return pd.DataFrame(), [Problem(name, "file is empty", line=1)]
    header, problems = _canonical_header(
        name, [h.strip() for h in rows[0]], required, optional, columns
    )
    if problems:
        return pd.DataFrame(), problems
    body: list[list[str]] = []
    kept: list[int] = []
    for lineno, row in zip(starts[1:], rows[1:], strict=True):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines are harmless
        if len(row) != len(header):
            problems.append(
                Problem(name, f"expected {len(header)} fields, found {len(row)}", line=lineno)
            )
            if len(problems) >= MAX_PROBLEMS:
                break
            continue
        body.append([c.strip() for c in row])
        kept.append(lineno)
    df = pd.DataFrame(body, columns=header)
    df.attrs["lines"] = np.asarray(kept, dtype=np.int64)
    return df, problems + _empty_id_problems(name, df, required)


def detect_delimiter(first_line: str) -> str:
    """The most frequent of tab, semicolon and comma in the header line (comma on a tie)."""
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    return max(counts, key=lambda d: (counts[d], d == ","))


def _canonical_header(
    name: str,
    header: list[str],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    columns: ColumnMap | None,
) -> tuple[list[str], list[Problem]]:
    """The header with canonical names, and the problems (duplicates, missing columns)."""
    problems = []
    seen: set[str] = set()
    for col in header:
        if col in seen:
            problems.append(Problem(name, f"duplicate column {col!r} in header", line=1, field=col))
        seen.add(col)
    resolved = resolve_columns(header, required + optional, columns)
    for canon, msg in resolved.missing:
        problems.append(Problem(name, msg, line=1, field=canon))
    explicitly_missing = {c for c, _ in resolved.missing}
    # A column renamed away leaves its canonical name free; a second column that already
    # had the canonical name would then clash with it, so it keeps a suffixed name.
    renamed = []
    for h in header:
        if h in resolved.rename:
            renamed.append(resolved.rename[h])
        elif h in resolved.rename.values() and h not in resolved.rename:
            renamed.append(f"{h}_original")
        else:
            renamed.append(h)
    for col in required:
        if col not in renamed and col not in explicitly_missing:
            problems.append(Problem(name, missing_message(col, header), line=1, field=col))
    return renamed, problems


def _lines(df: pd.DataFrame) -> np.ndarray:
    lines = df.attrs.get("lines")
    if lines is None or len(lines) != len(df):
        return np.arange(len(df), dtype=np.int64) + 2
    return np.asarray(lines)


def _empty_id_problems(name: str, df: pd.DataFrame, required: tuple[str, ...]) -> list[Problem]:
    problems: list[Problem] = []
    lines = _lines(df)
    for col in required:
        bad = np.flatnonzero(df[col].astype(str).str.strip().eq("").to_numpy())
        problems += [
            Problem(name, "empty value", line=int(lines[j]), field=col) for j in bad[:MAX_PROBLEMS]
        ]
    return problems


def _numeric(name: str, df: pd.DataFrame, col: str) -> tuple[np.ndarray, list[Problem]]:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    lines = _lines(df)
    problems = [
        Problem(name, f"not a number: {df[col].iloc[j]!r}", line=int(lines[j]), field=col)
        for j in bad[:MAX_PROBLEMS]
    ]
    return values, problems


def _timestamps(name: str, df: pd.DataFrame) -> tuple[np.ndarray, list[Problem]]:
    """Unix seconds from numbers or ISO-8601 strings; numbers outside 1900..2200 are
    problems (a millisecond column is the usual cause), never a pandas overflow."""
    col = df["timestamp"]
    num = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
    lines = _lines(df)
    out = np.zeros(len(df), np.int64)
    is_num = np.isfinite(num)
    in_range = is_num & (num >= TS_MIN) & (num <= TS_MAX)
    out[in_range] = num[in_range].astype(np.int64)
    problems = [
        Problem(
            name,
            f"timestamp out of range: {col.iloc[j]!r} is not Unix seconds between 1900 and 2200"
            + (" (milliseconds? divide by 1000)" if TS_MIN <= num[j] / 1000 <= TS_MAX else ""),
            line=int(lines[j]),
            field="timestamp",
        )
        for j in np.flatnonzero(is_num & ~in_range)[:MAX_PROBLEMS]
    ]
    rest_idx = np.flatnonzero(~is_num)
    if not len(rest_idx):
        return out, problems
    parsed = pd.to_datetime(col.iloc[rest_idx], errors="coerce", utc=True, format="ISO8601")
    bad = rest_idx[parsed.isna().to_numpy()]
    problems += [
        Problem(
            name,
            f"not a timestamp (Unix seconds or ISO-8601): {col.iloc[j]!r}",
            line=int(lines[j]),
            field="timestamp",
        )
        for j in bad[:MAX_PROBLEMS]
    ]
    ok = parsed.notna().to_numpy()
    # pandas 3 may hold us or ns resolution: divide by a Timedelta, not by 10**9.
    epoch = pd.Timestamp(0, tz="UTC")
    out[rest_idx[ok]] = ((parsed[ok] - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    return out, problems


def _years(name: str, table: pd.DataFrame) -> tuple[pd.Series, list[Problem]]:
    """The ``year`` column as Int64 (empty -> missing); anything else that is not a whole
    number is a problem with its line."""
    raw = table["year"].astype(str).str.strip()
    num = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero((raw.ne("") & ~raw.str.lower().isin({"nan", "<na>", "none"})
                          & (num.isna() | (num % 1 != 0))).to_numpy())  # fmt: skip
    lines = _lines(table)
    problems = [
        Problem(name, f"not a year: {raw.iloc[j]!r}", line=int(lines[j]), field="year")
        for j in bad[:MAX_PROBLEMS]
    ]
    return num.where(num % 1 == 0).astype("Int64"), problems


def split_categories(values: pd.Series, sep: str) -> pd.Series:
    """``"Mystery, Crime "`` (``sep=","``) -> ``"Mystery|Crime"``: trimmed, empties dropped."""
    if not sep:
        raise ValueError("the category separator must not be empty")
    parts = values.fillna("").astype(str).str.split(sep, regex=False)
    return parts.map(lambda xs: "|".join(x.strip() for x in xs if x.strip()))


def _item_columns(
    table: pd.DataFrame, name: str, columns: ColumnMap
) -> tuple[pd.DataFrame, list[Problem]]:
    """Categories split and '|'-joined; only the chosen text columns kept."""
    problems: list[Problem] = []
    table = table.copy()
    if "genres" in table:
        table["genres"] = split_categories(table["genres"], columns.category_sep)
    if columns.text is not None:
        header = [str(c) for c in table.columns]
        for col in columns.text:
            if col not in table:
                problems.append(
                    Problem(
                        name,
                        f"text column {col!r} (from --text-cols) not found"
                        f"{did_you_mean(col, header)}; found: {header}",
                        line=1,
                        field=col,
                    )
                )
        keep = [c for c in table.columns if c in ("item", "title", "year", "genres")]
        table = table[keep + [c for c in columns.text if c in table and c not in keep]]
    return table, problems


def _duplicate_ids(table: pd.DataFrame, column: str, path: object) -> list[Problem]:
    """One problem per repeated id in ``column`` (the first occurrence is the valid one).

    User ids are not echoed back: they may be personal data, so the line number names them.
    """
    dup = table[column].duplicated(keep="first").to_numpy()
    lines = _lines(table)
    return [
        Problem(
            str(path),
            f"duplicate user id on line {int(lines[j])}"
            if column == "user"
            else f"duplicate {column} id {table[column].iloc[j]!r}",
            line=int(lines[j]),
            field=column,
        )
        for j in np.flatnonzero(dup)[:MAX_PROBLEMS]
    ]


def load_interactions(
    interactions: str | Path,
    items: str | Path | None = None,
    name: str = "custom",
    users: str | Path | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    quasi_identifiers: QuasiIdentifierPolicy | None = None,
    columns: ColumnMap | None = None,
) -> Dataset:
    """Validate and load ``user,item[,rating][,timestamp]`` plus optional items/users files.

    Column names may be the common aliases (``user_id``, ``itemId``, ``movieId``, ``ts``,
    ``category``...) or named in ``columns``; the category column becomes ``genres``
    ('|'-joined, split on ``columns.category_sep``), the catalogue's category vocabulary.
    The items file needs ``item,title``; any other columns are kept as text fields (only
    ``columns.text`` if given). The
    users file needs ``user``; direct identifiers (name, e-mail, phone, ...) are dropped and
    quasi-identifiers coarsened per ``quasi_identifiers`` (age -> band, zip -> 3 digits by
    default). With ``pseudonymiser`` every user id (interactions and users file) becomes its
    keyed pseudonym here, at ingestion, so the ``Dataset`` and everything downstream
    (models, caches, logs) never hold a raw user id.
    Raises :class:`DataValidationError` listing every problem (file, line, field).
    """
    df, problems = read_table(
        interactions, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS, columns
    )
    rating = ts = None
    if len(df.columns):  # header was readable: check values even if some ids are empty
        if "rating" in df:
            rating, more = _numeric(str(interactions), df, "rating")
            problems += more
        if "timestamp" in df:
            ts, more = _timestamps(str(interactions), df)
            problems += more
        if not len(df) and not problems:
            problems.append(Problem(str(interactions), "no interactions (header only)", line=1))
    item_table = None
    if items is not None:
        item_table, item_problems = read_table(items, ITEM_COLUMNS, OPTIONAL_ITEM_COLUMNS, columns)
        problems += item_problems
        if not item_problems:
            problems += _duplicate_ids(item_table, "item", items)
            item_table, more = _item_columns(item_table, str(items), columns or ColumnMap())
            problems += more
            if "year" in item_table:
                item_table["year"], more = _years(str(items), item_table)
                problems += more
    user_table = None
    if users is not None:
        user_table, user_problems = read_table(users, ("user",))
        problems += user_problems
        if not user_problems:
            problems += _duplicate_ids(user_table, "user", users)
    if problems:
        raise DataValidationError(
            problems[:MAX_PROBLEMS], truncated=max(0, len(problems) - MAX_PROBLEMS)
        )
    user_ids = df["user"].to_numpy()
    if user_table is not None:
        user_table = coarsen_users(user_table, quasi_identifiers)
    if pseudonymiser is not None:
        user_ids = pseudonymiser.pseudonyms(user_ids)
        if user_table is not None:
            user_table["user"] = pseudonymiser.pseudonyms(user_table["user"].to_numpy())
    return build_dataset(
        name,
        user_ids,
        df["item"].to_numpy(),
        None if rating is None else rating.astype(np.float32),
        ts,
        item_table=item_table,
        user_table=user_table,
    )
