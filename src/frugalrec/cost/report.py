"""The joint report: one self-contained HTML file with quality next to latency, memory and money.

Charts are Plotly figures with plotly.js inlined into the page (no CDN, no fonts to fetch), so
the file opens offline and a reader can hover a point to see its configuration and zoom. Tables
and text are plain HTML; every piece of text from a record goes through ``html.escape``
(config names are user input), in the charts' hover text too.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frugalrec.cost.pareto import frontier_by_cost
from frugalrec.cost.records import MEASURED, CostRecord, cost_on, metric_label, records_on

QUALITY = "ndcg@10"
COLD_QUALITY = "cold_ndcg@10"
FRONTIER_COLOUR = "#1f5fbf"
OTHER_COLOUR = "#98a2b3"
HOURS_PER_MONTH = 730
_DETAIL_KEYS = ("encoder", "backend", "model", "retrieval", "reranker", "candidates", "batch_size")


@dataclass
class _Row:
    record: CostRecord
    cost: dict[str, Any]
    source: str

    @property
    def name(self) -> str:
        return self.record.name

    def q(self, key: str) -> float | None:
        return _float(self.record.quality.get(key))

    def c(self, key: str) -> float | None:
        return _float(self.cost.get(key))


def write_report(
    records: Sequence[CostRecord],
    path: str | os.PathLike[str],
    title: str,
    commands: list[str],
    hardware: str = "local",
) -> None:
    """Write the joint quality/cost report for ``hardware`` as one offline HTML file.

    Uses measured costs for records measured on ``hardware`` and projections otherwise;
    records with neither are listed but not charted.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(render_report(records, title, commands, hardware), encoding="utf-8")


def render_report(
    records: Sequence[CostRecord], title: str, commands: list[str], hardware: str = "local"
) -> str:
    """The HTML text :func:`write_report` writes."""
    rows = [_Row(r, c, s) for r, c, s in records_on(records, hardware)]
    have = {r.name for r in rows}
    missing = sorted({r.name for r in records if r.name not in have})
    e = html.escape
    n_measured = sum(r.source == MEASURED for r in rows)
    label, cold_label = metric_label(QUALITY), metric_label(COLD_QUALITY)
    charts = _Charts()

    def frontier_chart(quality: str, x_key: str, x_label: str, log_x: bool) -> str:
        pts = [r for r in rows if r.q(quality) is not None and r.c(x_key) is not None]
        if not pts:
            return (
                f'<p class="note">No configuration has {e(metric_label(quality))} and '
                f"{e(x_label)} on {e(hardware)}.</p>"
            )
        flat = [{**r.cost, quality: r.q(quality)} for r in pts]
        front = [pts[i] for i in frontier_by_cost(flat, quality, x_key)]
        return charts.scatter(pts, front, quality, x_key, x_label, log_x)

    usd_rows = [r for r in rows if r.c("usd_per_million_requests") is not None]
    usd_vals = [r.c("usd_per_million_requests") or 0.0 for r in usd_rows]
    log_usd = bool(usd_vals) and min(usd_vals) > 0 and max(usd_vals) / min(usd_vals) >= 10
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">Hardware <strong>{e(hardware)}</strong> · {len(rows)} configurations'
        f" ({n_measured} measured on it, {len(rows) - n_measured} projected from measurements"
        " on another machine). Hover a point for its configuration; drag to zoom, double-click"
        " to reset.</p>",
    ]
    if missing:
        parts.append(
            f'<p class="note">No measured or projected cost on {e(hardware)} for: '
            + ", ".join(f"<code>{e(m)}</code>" for m in missing)
            + ".</p>"
        )
    if not rows:
        parts.append(f"<p>No configuration has cost data for {e(hardware)}.</p>")
    parts += [
        '<section aria-labelledby="h-latency">',
        f'<h2 id="h-latency">Quality vs p99 latency: warm ({e(label)}) and cold items '
        f"({e(cold_label)})</h2>",
        "<p>Higher and further left is better. The line is the Pareto frontier: the best quality "
        "available at or below each latency. Cold items are those no interaction was trained "
        "on: only text can rank them.</p>",
        '<div class="pair">',
        frontier_chart(QUALITY, "p99_ms", "p99 latency (ms)", True),
        frontier_chart(COLD_QUALITY, "p99_ms", "p99 latency (ms)", True),
        "</div>",
        "</section>",
        '<section aria-labelledby="h-usd">',
        f'<h2 id="h-usd">{e(label)} vs cost per million requests</h2>',
    ]
    if usd_rows:
        parts += [
            "<p>Higher and further left is better; the line is the frontier of "
            f"{e(label)} per dollar.</p>",
            frontier_chart(QUALITY, "usd_per_million_requests", "$ per million requests", log_usd),
        ]
    else:
        parts.append(f"<p>No price is known for {e(hardware)}, so there is no cost chart.</p>")
    parts += [
        "</section>",
        '<section aria-labelledby="h-llm">',
        '<h2 id="h-llm">Language-model re-rankers: what the quality gain costs</h2>',
        "<p>Each LLM re-ranker configuration's change in quality over the cheap stage on its "
        "sample of test users (bar: the bootstrap 95% interval of the per-user paired "
        "difference) against dollars per million requests on each hardware profile (measured "
        "where the bench ran, projected elsewhere). Open markers: zero-shot; filled: "
        "fine-tuned (training cost in the hover). A gain whose bar reaches 0 is not shown, and "
        "<code>plan</code> does not pay for it.</p>",
        charts.llm_curve(records),
        "</section>",
        '<section aria-labelledby="h-capacity">',
        '<h2 id="h-capacity">Capacity per $1,000 a month, per hardware profile</h2>',
        "<p>Requests per second one $1,000/month buys on each profile (measured where the bench "
        "ran, projected elsewhere): end-to-end service capacity where the serving overhead was "
        "calibrated, the scorer's throughput otherwise.</p>",
        charts.capacity(records),
        "</section>",
        '<section aria-labelledby="h-memory">',
        '<h2 id="h-memory">Memory per configuration</h2>',
        "<p>Each configuration measured in a fresh process: its peak resident memory, its "
        "increment over an empty worker (the same harness imports and data, no model), and the "
        "bytes of its model, index and encoder.</p>",
        charts.memory(rows),
        "</section>",
        '<section aria-labelledby="h-all">',
        '<h2 id="h-all">All configurations</h2>',
        _table(
            sorted(rows, key=lambda r: (-(r.q(QUALITY) or -math.inf), r.name)),
            caption=f"Every configuration with data on {hardware}, best {label} first.",
        ),
        "</section>",
        '<section aria-labelledby="h-repro">',
        '<h2 id="h-repro">Reproduce</h2>',
        "<pre><code>" + e("\n".join(commands)) + "</code></pre>",
        "</section>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# charts


class _Charts:
    """Plotly figures as HTML fragments; the first one carries plotly.js (inlined, once)."""

    def __init__(self) -> None:
        self.n = 0

    def _html(self, fig: Any, ident: str) -> str:
        import plotly.io as pio

        self.n += 1
        return pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=self.n == 1,
            div_id=f"chart-{ident}",
            config={"displaylogo": False, "responsive": True},
        )

    def scatter(
        self, pts: list[_Row], front: list[_Row], quality: str, x_key: str, x_label: str,
        log_x: bool,
    ) -> str:  # fmt: skip
        import plotly.graph_objects as go

        on = {id(r) for r in front}
        fig = go.Figure()
        for group, colour, name in ((False, OTHER_COLOUR, "other"),
                                    (True, FRONTIER_COLOUR, "frontier")):  # fmt: skip
            sel = [r for r in pts if (id(r) in on) == group]
            fig.add_trace(go.Scatter(
                x=[r.c(x_key) for r in sel], y=[r.q(quality) for r in sel],
                mode="markers+text" if group else "markers", name=name,
                text=[html.escape(r.name) for r in sel], textposition="top center",
                hovertext=[_hover(r) for r in sel], hoverinfo="text",
                marker={"color": colour, "size": 10 if group else 8},
            ))  # fmt: skip
        fr = sorted(front, key=lambda r: r.c(x_key) or 0.0)
        fig.add_trace(go.Scatter(
            x=[r.c(x_key) for r in fr], y=[r.q(quality) for r in fr], mode="lines",
            line={"shape": "hv", "color": FRONTIER_COLOUR}, hoverinfo="skip", showlegend=False,
        ))  # fmt: skip
        fig.update_layout(
            title=f"{metric_label(quality)} vs {x_label}", height=420,
            margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white",
        )  # fmt: skip
        fig.update_xaxes(title=x_label + (" (log)" if log_x else ""),
                         type="log" if log_x else "linear")  # fmt: skip
        fig.update_yaxes(title=metric_label(quality))
        return self._html(fig, f"{quality}-{x_key}".replace("@", "at"))

    def memory(self, rows: list[_Row]) -> str:
        import plotly.graph_objects as go

        pts = [r for r in rows if r.c("peak_rss_mb") is not None]
        if not pts:
            return '<p class="note">No memory figures.</p>'
        names = [html.escape(r.name) for r in pts]
        fig = go.Figure()
        for key, label in (("peak_rss_mb", "process peak RSS"),
                           ("rss_increment_mb", "increment over an empty worker"),
                           ("model_mb", "model + index + encoder bytes")):  # fmt: skip
            fig.add_trace(go.Bar(
                y=names, x=[r.c(key) for r in pts], name=label, orientation="h",
                hovertext=[_hover(r) for r in pts], hoverinfo="text+x",
            ))  # fmt: skip
        fig.update_layout(
            barmode="group", height=120 + 60 * len(pts), template="plotly_white",
            margin={"l": 220, "r": 20, "t": 30, "b": 50}, xaxis_title="MB",
        )  # fmt: skip
        return self._html(fig, "memory")

    def llm_curve(self, records: Sequence[CostRecord]) -> str:
        import plotly.graph_objects as go

        llm = [r for r in records if isinstance(r.quality.get("llm_gain"), dict)]
        hardware = sorted({h for r in llm for h in (r.hardware, *r.projections)})
        fig = go.Figure()
        for hw in hardware:
            for tuned in (False, True):
                xs, ys, lo, hi, hover = [], [], [], [], []
                for rec in llm:
                    g = rec.quality["llm_gain"]
                    cost = cost_on(rec, hw)
                    usd = _float((cost or {}).get("usd_per_million_requests"))
                    delta, ci = _float(g.get("delta")), g.get("ci95") or [None, None]
                    if bool(g.get("fine_tuned")) != tuned or not usd or delta is None:
                        continue
                    c_lo, c_hi = _float(ci[0]), _float(ci[1])
                    xs.append(usd)
                    ys.append(delta)
                    lo.append(delta - (delta if c_lo is None else c_lo))
                    hi.append((delta if c_hi is None else c_hi) - delta)
                    train = ""
                    if rec.training:
                        train = (f"<br>training {float(rec.training['wall_seconds']):,.0f} s on "
                                 f"{html.escape(rec.hardware)}")  # fmt: skip
                    hover.append(
                        f"{html.escape(rec.name)} on {html.escape(hw)}<br>"
                        f"{metric_label(str(g.get('metric', QUALITY)))} change {delta:+.4f} "
                        f"[{_num(c_lo, 4)}, {_num(c_hi, 4)}], "
                        f"{int(g.get('users', 0))} users<br>${usd:,.2f} per 1M requests{train}"
                    )
                if xs:
                    fig.add_trace(go.Scatter(
                        x=xs, y=ys, mode="markers", hovertext=hover, hoverinfo="text",
                        name=f"{html.escape(hw)}, {'fine-tuned' if tuned else 'zero-shot'}",
                        error_y={"type": "data", "symmetric": False, "array": hi,
                                 "arrayminus": lo},
                        marker={"size": 10, "symbol": "circle" if tuned else "circle-open"},
                    ))  # fmt: skip
        if not fig.data:
            return (
                '<p class="note">No LLM re-ranker configurations in this bench '
                "(<code>frugalrec bench --llm</code> adds them).</p>"
            )
        fig.add_hline(y=0.0, line={"color": OTHER_COLOUR, "dash": "dot"})
        fig.update_layout(
            height=460, template="plotly_white", margin={"l": 60, "r": 20, "t": 30, "b": 50},
            xaxis={"title": "$ per million requests (log)", "type": "log"},
            yaxis={"title": "quality change over the cheap stage"},
        )  # fmt: skip
        return self._html(fig, "llm-curve")

    def capacity(self, records: Sequence[CostRecord]) -> str:
        import plotly.graph_objects as go

        hardware = sorted({h for r in records for h in (r.hardware, *r.projections)})
        fig = go.Figure()
        for rec in records:
            xs, ys, hover = [], [], []
            for hw in hardware:
                cost = cost_on(rec, hw)
                usd = _float((cost or {}).get("usd_per_million_requests"))
                if cost is None or not usd:
                    continue
                # qps / ($/hour * hours/month) = 1e6 / ($ per 1M requests * 3600 * 730)
                per_k = 1e9 / (usd * 3600.0 * HOURS_PER_MONTH)
                basis = "service" if cost.get("service_qps") else "scorer"
                xs.append(hw)
                ys.append(per_k)
                hover.append(f"{html.escape(rec.name)} on {html.escape(hw)}: {per_k:,.0f} req/s "
                             f"per $1k/month ({basis})")  # fmt: skip
            if xs:
                fig.add_trace(go.Bar(x=xs, y=ys, name=html.escape(rec.name), hovertext=hover,
                                     hoverinfo="text"))  # fmt: skip
        if not fig.data:
            return '<p class="note">No prices: no capacity per dollar.</p>'
        fig.update_layout(
            barmode="group", height=460, template="plotly_white",
            margin={"l": 60, "r": 20, "t": 30, "b": 50},
            yaxis={"title": "requests/s per $1,000 a month (log)", "type": "log"},
        )  # fmt: skip
        return self._html(fig, "capacity")


def _hover(r: _Row) -> str:
    cfg = r.record.config
    detail = " ".join(
        f"{k}={html.escape(str(cfg[k]))}" for k in _DETAIL_KEYS if cfg.get(k) is not None
    )
    q = r.q(QUALITY)
    cold = r.q(COLD_QUALITY)
    return (
        f"<b>{html.escape(r.name)}</b><br>{detail}<br>"
        f"{metric_label(QUALITY)} {_num(q, 3)} · cold {_num(cold, 3)}<br>"
        f"p50 {_num(r.c('p50_ms'))} ms · p99 {_num(r.c('p99_ms'))} ms · "
        f"{_num(r.c('service_qps') or r.c('qps'), 0)} QPS<br>"
        f"peak RSS {_num(r.c('peak_rss_mb'), 0)} MB ({html.escape(r.source)})"
    )


# --------------------------------------------------------------------------------------------
# tables


def _table(rows: list[_Row], *, caption: str) -> str:
    e = html.escape
    cols = [
        ("config", "config"),
        (metric_label("ndcg@10"), "num"),
        (metric_label("recall@10"), "num"),
        (metric_label("cold_ndcg@10"), "num"),
        ("p50 ms", "num"),
        ("p95 ms", "num"),
        ("p99 ms", "num"),
        ("scorer QPS", "num"),
        ("service QPS", "num"),
        ("peak RSS MB", "num"),
        ("+RSS MB", "num"),
        ("model MB", "num"),
        ("$ / 1M req", "num"),
        ("source", "text"),
        ("details", "text"),
    ]
    out = ["<table>", f"<caption>{e(caption)}</caption>", "<thead><tr>"]
    out += [f'<th scope="col" class="{k}">{e(name)}</th>' for name, k in cols]
    out.append("</tr></thead>")
    out.append("<tbody>")
    if not rows:
        out.append(f'<tr><td colspan="{len(cols)}">no configurations</td></tr>')
    for r in rows:
        usd = r.c("usd_per_million_requests")
        detail = " ".join(
            f"{k}={r.record.config[k]}" for k in _DETAIL_KEYS if r.record.config.get(k) is not None
        )
        cells = [
            f'<th scope="row" class="config">{e(r.name)}</th>',
            _td(_num(r.q("ndcg@10"), 3)),
            _td(_num(r.q("recall@10"), 3)),
            _td(_num(r.q("cold_ndcg@10"), 3)),
            _td(_num(r.c("p50_ms"))),
            _td(_num(r.c("p95_ms"))),
            _td(_num(r.c("p99_ms"))),
            _td(_num(r.c("qps"), 0)),
            _td(_num(r.c("service_qps"), 0)),
            _td(_num(r.c("peak_rss_mb"), 0)),
            _td(_num(r.c("rss_increment_mb"), 0)),
            _td(_num(r.c("model_mb"), 1)),
            _td("-" if usd is None else f"${_num(usd)}"),
            f'<td class="text">{e(r.source)}</td>',
            f'<td class="text detail">{e(detail)}</td>',
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    return '<div class="table-wrap">' + "\n".join(out) + "</div>"


def _td(text: str) -> str:
    return f'<td class="num">{html.escape(text)}</td>'


# --------------------------------------------------------------------------------------------
# numbers


def _num(x: float | None, digits: int | None = None) -> str:
    if x is None:
        return "-"
    if digits is None:
        ax = abs(x)
        if ax >= 1 and x == round(x):
            digits = 0
        else:
            digits = 0 if ax >= 100 else 1 if ax >= 1 else 2 if ax >= 0.1 or ax == 0 else 3
    return f"{x:,.{digits}f}"


def _float(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


_CSS = """
:root{--fg:#1d2430;--muted:#5b6576;--line:#e3e7ee;--accent:#1f5fbf}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:#fff}
main{max-width:1280px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:1.6rem;margin:0 0 4px}
h2{font-size:1.15rem;margin:36px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--line)}
p{margin:6px 0 10px}
.meta,.note{color:var(--muted)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f5f7fa;border:1px solid var(--line);border-radius:6px;padding:12px;overflow:auto}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
caption{text-align:left;color:var(--muted);padding:4px 0 8px}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
thead th{background:#f5f7fa;text-align:left;font-weight:600}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody th{text-align:left;font-weight:600}
tbody tr:nth-child(even){background:#fafbfc}
td.detail{color:var(--muted);white-space:normal;min-width:16em}
""".strip()
