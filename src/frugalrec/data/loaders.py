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

from frugalrec.data.dataset import Dataset, build_dataset
from frugalrec.data.errors import DataValidationError, Problem
from frugalrec.privacy.deidentify import QuasiIdentifierPolicy, coarsen_users
from frugalrec.privacy.pseudonyms import Pseudonymiser

MAX_PROBLEMS = 100
INTERACTION_COLUMNS = ("user", "item")
OPTIONAL_INTERACTION_COLUMNS = ("rating", "timestamp")


def read_table(path: str | Path, required: tuple[str, ...]) -> tuple[pd.DataFrame, list[Problem]]:
    """Read a CSV/TSV/Parquet file as strings; return the frame and the problems found.

    Problems cover: missing file, empty file, undecodable bytes (with the line), duplicate
    or missing header columns, rows with the wrong number of fields, empty ids.
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
        problems = _header_problems(name, cols, required)
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
    delim = "\t" if first.count("\t") > first.count(",") else ","
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
    header = [h.strip() for h in rows[0]]
    problems = _header_problems(name, header, required)
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


def _header_problems(name: str, header: list[str], required: tuple[str, ...]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for col in header:
        if col in seen:
            problems.append(Problem(name, f"duplicate column {col!r} in header", line=1, field=col))
        seen.add(col)
    for col in required:
        if col not in seen:
            problems.append(
                Problem(
                    name, f"missing required column {col!r} (found: {header})", line=1, field=col
                )
            )
    return problems


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
    """Unix seconds from numbers or ISO-8601 strings."""
    col = df["timestamp"]
    numeric = pd.to_numeric(col, errors="coerce")
    out = np.zeros(len(df), np.int64)
    is_num = numeric.notna().to_numpy()
    out[is_num] = numeric[is_num].to_numpy(np.float64).astype(np.int64)
    if is_num.all():
        return out, []
    rest = col[~is_num]
    parsed = pd.to_datetime(rest, errors="coerce", utc=True, format="ISO8601")
    bad = np.flatnonzero(~is_num)[parsed.isna().to_numpy()]
    lines = _lines(df)
    problems = [
        Problem(
            name,
            f"not a timestamp (Unix seconds or ISO-8601): {col.iloc[j]!r}",
            line=int(lines[j]),
            field="timestamp",
        )
        for j in bad[:MAX_PROBLEMS]
    ]
    ok = parsed.notna().to_numpy()
    idx = np.flatnonzero(~is_num)[ok]
    # pandas 3 may hold us or ns resolution: divide by a Timedelta, not by 10**9.
    epoch = pd.Timestamp(0, tz="UTC")
    out[idx] = ((parsed[ok] - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    return out, problems


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
) -> Dataset:
    """Validate and load ``user,item[,rating][,timestamp]`` plus optional items/users files.

    The items file needs ``item,title``; any other columns are kept as text fields. The
    users file needs ``user``; direct identifiers (name, e-mail, phone, ...) are dropped and
    quasi-identifiers coarsened per ``quasi_identifiers`` (age -> band, zip -> 3 digits by
    default). With ``pseudonymiser`` every user id (interactions and users file) becomes its
    keyed pseudonym here, at ingestion, so the ``Dataset`` and everything downstream
    (models, caches, logs) never hold a raw user id.
    Raises :class:`DataValidationError` listing every problem (file, line, field).
    """
    df, problems = read_table(interactions, INTERACTION_COLUMNS)
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
        item_table, item_problems = read_table(items, ("item", "title"))
        problems += item_problems
        if not item_problems:
            problems += _duplicate_ids(item_table, "item", items)
            if "year" in item_table:
                item_table["year"] = pd.to_numeric(item_table["year"], errors="coerce").astype(
                    "Int64"
                )
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
