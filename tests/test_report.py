"""The HTML report: self-contained, charts and tables present, text escaped, tags balanced."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from frugalrec.cost.records import CostRecord
from frugalrec.cost.report import render_report, write_report

VOID = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", "source", "area", "base"}


class _Balance(HTMLParser):
    """Tracks open tags; any mismatch or leftover is an error."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.starts: dict[str, int] = {}
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts[tag] = self.starts.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts[tag] = self.starts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def _rec(name: str, ndcg: float, p99: float, usd: float | None, **extra: Any) -> CostRecord:
    cost = {
        "p50_ms": p99 / 2,
        "p95_ms": p99 * 0.8,
        "p99_ms": p99,
        "qps": 1000 / p99,
        "peak_rss_mb": 300 + 100 * p99,
        "model_mb": 20 * p99,
        "build_seconds": 3.0,
        "flops_per_request": 1e6,
        "usd_per_million_requests": usd,
    }
    return CostRecord.from_dict(
        {
            "config": {"name": name, "encoder": "minilm", "backend": "onnx-int8", "model": "ease"},
            "quality": {"ndcg@10": ndcg, "recall@10": ndcg * 1.5, "cold_ndcg@10": ndcg * 0.9},
            "cost": cost,
            "hardware": extra.get("hardware", "local"),
            "projections": extra.get("projections", {}),
        }
    )


RECORDS = [
    _rec("popularity", 0.06, 0.2, 0.01),
    _rec("ease", 0.20, 2.0, 0.05),
    _rec("minilm-int8+ease+hnsw", 0.23, 3.1, 0.10),
    _rec("slow-and-worse", 0.15, 40.0, 2.0),  # dominated on both charts
    _rec("<script>alert('x')</script>", 0.19, 2.5, 0.2),
    _rec("mpnet+rerank & friends", 0.25, 400.0, 8.0),
    _rec("elsewhere", 0.3, 1.0, 0.1, hardware="h100"),  # no data on local
]
COMMANDS = [
    "frugalrec bench --dataset ml-100k --out bench.json",
    "frugalrec report bench.json --out report.html --title '<b>x</b>'",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    write_report(RECORDS, path, "Joint report <test>", COMMANDS, hardware="local")
    assert path.is_file()
    return path.read_text(encoding="utf-8")


def test_report_is_balanced_html(report: str) -> None:
    parser = _Balance()
    parser.feed(report)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert report.startswith("<!DOCTYPE html>")


class _Resources(HTMLParser):
    """Every URL the page would fetch: src/href attributes of any tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "script":
            self.scripts.append(d)
        for key in ("src", "href", "data", "poster", "action"):
            if d.get(key):
                self.urls.append(f"{tag}.{key}={d[key]}")


def test_report_has_no_external_urls(report: str) -> None:
    """Opens offline: nothing is fetched (no script src, no stylesheet link, no CSS url()),
    plotly.js is inlined once."""
    res = _Resources()
    res.feed(report)
    assert res.urls == []
    assert all("src" not in s for s in res.scripts)
    assert "<link" not in report
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", report)
    assert "@import" not in report
    assert report.count("plotly.js v") == 1  # the library's banner: inlined exactly once


def test_report_charts_are_interactive_plotly(report: str) -> None:
    for ident in ("ndcgat10-p99_ms", "cold_ndcgat10-p99_ms", "ndcgat10-usd_per_million_requests",
                  "capacity", "memory"):  # fmt: skip
        assert f'id="chart-{ident}"' in report
    # hover text names the configuration and its details
    assert "minilm-int8+ease+hnsw" in report and "backend=onnx-int8" in report
    assert "Capacity per $1,000 a month, per hardware profile" in report


def test_report_tables_list_every_config_with_data(report: str) -> None:
    full = report[report.index('id="h-all"') :]
    for name in ("popularity", "ease", "minilm-int8+ease+hnsw", "slow-and-worse"):
        assert f'<th scope="row" class="config">{name}</th>' in full
    assert '<th scope="row" class="config">mpnet+rerank &amp; friends</th>' in full
    assert full.count('<th scope="row"') == 6
    assert '<th scope="col"' in report
    # The record measured elsewhere is named as missing, not charted.
    assert "<code>elsewhere</code>" in report
    assert ">3.1<" in full  # p99 of minilm-int8+ease+hnsw


def test_report_escapes_all_text(report: str) -> None:
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in report
    assert "<title>Joint report &lt;test&gt;</title>" in report
    assert "&#x27;&lt;b&gt;x&lt;/b&gt;&#x27;" in report  # the command line in <pre>
    parser = _Balance()
    parser.feed(report)
    text = "".join(parser.data)
    assert "<script>alert('x')</script>" in text  # round-trips to the literal name


def test_report_commands_in_pre(report: str) -> None:
    m = re.search(r"<pre><code>(.*?)</code></pre>", report, re.S)
    assert m is not None
    assert "frugalrec bench --dataset ml-100k --out bench.json" in m.group(1)


def test_report_without_prices_or_data(tmp_path: Path) -> None:
    recs = [_rec("a", 0.2, 2.0, None), _rec("b", 0.3, 9.0, None)]
    html = render_report(recs, "t", ["x"], hardware="local")
    assert "no cost chart" in html
    assert 'id="chart-ndcgat10-usd_per_million_requests"' not in html
    assert "No prices: no capacity per dollar" in html
    empty = render_report(recs, "t", ["x"], hardware="tpu")
    assert "No configuration has cost data for tpu" in empty
    parser = _Balance()
    parser.feed(empty)
    assert parser.errors == [] and parser.stack == []


def test_report_uses_projections_for_other_hardware() -> None:
    rec = _rec(
        "a",
        0.2,
        50.0,
        1.0,
        projections={
            "h100": {"p50_ms": 1.0, "p99_ms": 7.5, "qps": 9000, "usd_per_million_requests": 0.4}
        },
    )
    html = render_report([rec], "t", [], hardware="h100")
    row = html[html.index('id="h-all"') :]
    assert ">7.5<" in row and ">projected<" in row


def test_report_draws_the_llm_curve_zero_shot_and_fine_tuned(tmp_path: Path) -> None:
    import json

    def llm(name: str, delta: float, ci: list[float], tuned: bool) -> CostRecord:
        raw = _rec(name, 0.36 + delta, 900.0, 12.0,
                   projections={"t4": {"p50_ms": 30.0, "p99_ms": 40.0, "qps": 30.0,
                                       "usd_per_million_requests": 3.5}}).to_dict()  # fmt: skip
        raw["quality"]["llm_gain"] = {"metric": "ndcg@10", "delta": delta, "ci95": ci,
                                      "users": 300, "cheap": 0.36, "fine_tuned": tuned}  # fmt: skip
        if tuned:
            raw["training"] = {"wall_seconds": 1224.0}
        return CostRecord.from_dict(raw)

    records = [*RECORDS, llm("ease+smol<b>", -0.0001, [-0.0005, 0.0003], False),
               llm("ease+smol+lora", 0.004, [0.001, 0.007], True)]  # fmt: skip
    html_text = render_report(records, "t", [], hardware="local")
    assert 'id="chart-llm-curve"' in html_text
    div = html_text[html_text.index('id="chart-llm-curve"') :]
    payload = div[: div.index("</script>")]
    # one trace per (hardware, zero-shot|fine-tuned) with data: local and t4, both kinds
    for name in ("local, zero-shot", "local, fine-tuned", "t4, zero-shot", "t4, fine-tuned"):
        assert json.dumps(name) in payload
    assert "training 1,224 s on local" in payload
    assert "ease+smol<b>" not in payload and "ease+smol&lt;b&gt;" in payload
    assert "change +0.0040 [0.0010, 0.0070], 300 users" in payload
    # without LLM configurations the section says how to get them
    plain = render_report(RECORDS, "t", [], hardware="local")
    assert "frugalrec bench --llm</code> adds them" in plain
