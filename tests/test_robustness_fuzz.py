"""Property-based fuzzing: the CSV loader and the event schema never fail unexpectedly.

Any input gives either a clean result or the documented error naming where the problem is
(``DataValidationError`` with file and line; pydantic ``ValidationError`` with the field),
never another exception.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frugalrec.data.dataset import Dataset
from frugalrec.data.errors import DataValidationError
from frugalrec.data.loaders import load_interactions

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_cell_chars = st.sampled_from(list(string.ascii_letters + string.digits + ' ,"\t\r\n;-.:+eé\x00'))
cells = st.one_of(
    st.text(_cell_chars, max_size=8),
    st.sampled_from(["", "nan", "inf", "-1", "1e308", "5", "3.5", "2024-01-01T00:00:00Z",
                     "1e400", "99999999999999999999", "0x10", " 1 ", "NULL", "\ufeff"]),
)  # fmt: skip
headers = st.lists(
    st.sampled_from(["user", "item", "rating", "timestamp", "extra", "", "user ", "Item"]),
    min_size=0,
    max_size=5,
)


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    header = draw(headers)
    n_rows = draw(st.integers(0, 8))
    width = max(1, len(header))
    rows = [
        [
            draw(cells)
            for _ in range(draw(st.sampled_from([width, width, width, width - 1, width + 1])))
        ]
        for _ in range(n_rows)
    ]
    sep = draw(st.sampled_from([",", "\t", ";"]))

    def quote(c: str) -> str:
        if draw(st.booleans()) and c:
            return '"' + c.replace('"', '""') + '"'
        return c

    lines = [sep.join(header)] + [sep.join(quote(c) for c in row) for row in rows]
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):  # flip some bytes
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            if buf:
                buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        data = bytes(buf)
    return data


def _check(inter: bytes, items: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pi = Path(tmp) / "interactions.csv"
        pi.write_bytes(inter)
        pit = None
        if items is not None:
            pit = Path(tmp) / "items.csv"
            pit.write_bytes(items)
        try:
            ds = load_interactions(pi, pit)
        except DataValidationError as exc:
            assert exc.problems, "an error must list at least one problem"
            for p in exc.problems:
                assert p.file in (str(pi), str(pit)), p
                assert p.line is not None, f"problem without a line: {p}"
                assert str(p).startswith(p.file + ":"), p
            return
        assert isinstance(ds, Dataset)
        assert ds.n_interactions > 0
        assert ds.user.dtype == np.int32 and ds.item.dtype == np.int32
        assert np.isfinite(ds.rating).all()


@FUZZ
@given(data=csv_bytes())
def test_interactions_csv_never_crashes(data: bytes) -> None:
    _check(data, None)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    _check(data, None)


@FUZZ
@given(
    items=st.lists(st.tuples(st.text(_cell_chars, max_size=5), st.text(max_size=12)), max_size=6),
    year=st.sampled_from(["", "1995", "abc", "1e9", "-5"]),
)
def test_items_file_never_crashes(items: list[tuple[str, str]], year: str) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["item", "title", "year"])
    for item_id, title in items:
        w.writerow([item_id, title, year])
    _check(b"user,item\nu1,a\nu2,b\n", buf.getvalue().encode("utf-8", errors="replace"))


def test_line_endings_and_multiline_fields_keep_true_line_numbers(tmp_path: Path) -> None:
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b"user,item\ru1,a\ru2,b\r")
    assert load_interactions(cr).n_interactions == 2
    multi = tmp_path / "multi.csv"
    multi.write_bytes(b'user,item,rating\nu1,"a\nb",5\nu2,c,oops\n')
    try:
        load_interactions(multi)
    except DataValidationError as exc:
        assert [(p.line, p.field) for p in exc.problems] == [(4, "rating")]
    else:
        raise AssertionError("a non-numeric rating must be refused")
