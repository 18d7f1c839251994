"""The joint report: one self-contained HTML file with quality next to latency, memory and money.

Everything is generated here as plain HTML and inline SVG: no JavaScript, no CDN, no fonts to
fetch, so the file opens offline, survives being mailed around and diffs cleanly. Every piece of
text from a record goes through ``html.escape``: config names are user input.
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
from frugalrec.cost.records import MEASURED, CostRecord, metric_label, records_on

QUALITY = "ndcg@10"
FRONTIER_COLOUR = "#1f5fbf"
OTHER_COLOUR = "#98a2b3"
MODEL_COLOUR = "#e07b00"
CHAR_PX = 7.0  # generous width of one 11-12px sans-serif character, for label room
LABEL_MAX_CHARS = 32
LABEL_ALL_UP_TO = 24  # beyond this many points, only the frontier is labelled


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

    lat_pts = [r for r in rows if r.q(QUALITY) is not None and r.c("p99_ms") is not None]
    usd_pts = [
        r for r in rows if r.q(QUALITY) is not None and r.c("usd_per_million_requests") is not None
    ]
    lat_front = [lat_pts[i] for i in frontier_by_cost(_flat(lat_pts), QUALITY, "p99_ms")]
    usd_front = [
        usd_pts[i] for i in frontier_by_cost(_flat(usd_pts), QUALITY, "usd_per_million_requests")
    ]
    on_lat = {id(r) for r in lat_front}
    on_usd = {id(r) for r in usd_front}

    e = html.escape
    n_measured = sum(r.source == MEASURED for r in rows)
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
        " on another machine).</p>",
    ]
    if missing:
        parts.append(
            f'<p class="note">No measured or projected cost on {e(hardware)} for: '
            + ", ".join(f"<code>{e(m)}</code>" for m in missing)
            + ".</p>"
        )
    if not rows:
        parts.append(f"<p>No configuration has cost data for {e(hardware)}.</p>")

    label = metric_label(QUALITY)
    parts += [
        '<section aria-labelledby="h-latency">',
        f'<h2 id="h-latency">{e(label)} vs p99 latency</h2>',
        "<p>Higher and further left is better. The line is the Pareto frontier: the best "
        f"{e(label)} available at or below each latency.</p>",
        _scatter(
            "latency",
            lat_pts,
            lat_front,
            x_key="p99_ms",
            x_label="p99 latency (ms, log scale)",
            y_label=label,
            title=f"{label} vs p99 latency on {hardware}",
            log_x=True,
        ),
        "</section>",
        '<section aria-labelledby="h-usd">',
        f'<h2 id="h-usd">{e(label)} vs cost per million requests</h2>',
    ]
    if usd_pts:
        usd_vals = [r.c("usd_per_million_requests") or 0.0 for r in usd_pts]
        log_usd = min(usd_vals) > 0 and max(usd_vals) / min(usd_vals) >= 10
        parts += [
            "<p>Higher and further left is better; the line is the frontier of "
            f"{e(label)} per dollar.</p>",
            _scatter(
                "usd",
                usd_pts,
                usd_front,
                x_key="usd_per_million_requests",
                x_label="$ per million requests" + (" (log scale)" if log_usd else ""),
                y_label=label,
                title=f"{label} vs $ per million requests on {hardware}",
                log_x=log_usd,
            ),
        ]
    else:
        parts.append(f"<p>No price is known for {e(hardware)}, so there is no cost chart.</p>")
    parts += [
        "</section>",
        '<section aria-labelledby="h-memory">',
        '<h2 id="h-memory">Memory per configuration</h2>',
        "<p>Peak resident memory of the serving process next to the size of the model files.</p>",
        _memory_bars(rows, hardware),
        "</section>",
        '<section aria-labelledby="h-frontier">',
        '<h2 id="h-frontier">Pareto frontier (quality vs p99 latency)</h2>',
        _table(
            lat_front,
            caption=f"Configurations no other beats on both {label} and p99 latency, "
            "fastest first.",
            on_lat=on_lat,
            on_usd=on_usd,
            details=False,
        ),
        "</section>",
        '<section aria-labelledby="h-all">',
        '<h2 id="h-all">All configurations</h2>',
        _table(
            sorted(rows, key=lambda r: (-(r.q(QUALITY) or -math.inf), r.name)),
            caption=f"Every configuration with data on {hardware}, best {label} first. "
            "“frontier” marks the latency (p99) and cost ($) frontiers.",
            on_lat=on_lat,
            on_usd=on_usd,
            details=True,
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


def _scatter(
    ident: str,
    pts: list[_Row],
    front: list[_Row],
    *,
    x_key: str,
    x_label: str,
    y_label: str,
    title: str,
    log_x: bool,
) -> str:
    e = html.escape
    width, height = 760, 440
    left, right, top, bottom = 70, 30, 20, 60
    pw, ph = width - left - right, height - top - bottom
    title_id, desc_id = f"{ident}-title", f"{ident}-desc"
    desc = (
        f"Scatter plot of {len(pts)} configurations; {len(front)} on the Pareto frontier: "
        + ", ".join(f"{r.name} ({_num(r.q(QUALITY), 3)}, {_num(r.c(x_key))})" for r in front)
        + "."
    )
    out = [
        f'<svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" class="chart">',
        f'<title id="{title_id}">{e(title)}</title>',
        f'<desc id="{desc_id}">{e(desc)}</desc>',
    ]
    if not pts:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">'
            "no data</text></svg>"
        )
        return "\n".join(out)

    xs = [max(r.c(x_key) or 0.0, 1e-9) if log_x else (r.c(x_key) or 0.0) for r in pts]
    ys = [r.q(QUALITY) or 0.0 for r in pts]
    x_lo, x_hi, x_ticks = _log_axis(xs) if log_x else _lin_axis(xs, include_zero=True)
    y_lo, y_hi, y_ticks = _lin_axis(ys, include_zero=False)

    def sx(v: float) -> float:
        if log_x:
            v = max(v, 1e-9)
            return left + pw * (math.log10(v) - math.log10(x_lo)) / (
                math.log10(x_hi) - math.log10(x_lo)
            )
        return left + pw * (v - x_lo) / (x_hi - x_lo)

    def sy(v: float) -> float:
        return top + ph * (1 - (v - y_lo) / (y_hi - y_lo))

    out.append('<g class="grid" aria-hidden="true">')
    for t in x_ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}"/>')
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}"/>')
    out.append("</g>")
    out.append('<g class="axis" aria-hidden="true">')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    for t in x_ticks:
        out.append(
            f'<text x="{sx(t):.1f}" y="{top + ph + 18}" text-anchor="middle">{e(_tick(t))}</text>'
        )
    for t in y_ticks:
        out.append(
            f'<text x="{left - 8}" y="{sy(t) + 4:.1f}" text-anchor="end">{e(_tick(t))}</text>'
        )
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 14}" text-anchor="middle" class="label">'
        f"{e(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" text-anchor="middle" '
        f'class="label">{e(y_label)}</text>'
    )
    out.append("</g>")

    line_boxes: list[tuple[float, float, float, float]] = []
    if front:
        fx = [sx(r.c(x_key) or 0.0) for r in front]
        fy = [sy(r.q(QUALITY) or 0.0) for r in front]
        d = f"M{fx[0]:.1f},{fy[0]:.1f}"
        for k in range(1, len(front)):
            d += f" H{fx[k]:.1f} V{fy[k]:.1f}"
            line_boxes.append((fx[k - 1], fy[k - 1] - 2, fx[k], fy[k - 1] + 2))
            line_boxes.append((fx[k] - 2, fy[k], fx[k] + 2, fy[k - 1]))
        d += f" H{left + pw:.1f}"
        line_boxes.append((fx[-1], fy[-1] - 2, left + pw, fy[-1] + 2))
        out.append(
            f'<path d="{d}" fill="none" stroke="{FRONTIER_COLOUR}" stroke-width="1.8" '
            'class="frontier" aria-hidden="true"/>'
        )

    on_front = {id(r) for r in front}
    # Draw others first so frontier points sit on top.
    order = sorted(range(len(pts)), key=lambda i: id(pts[i]) in on_front)
    # Labels avoid points, other labels and the frontier line (thin boxes along each segment).
    boxes: list[tuple[float, float, float, float]] = list(line_boxes)
    labelled = len(pts) <= LABEL_ALL_UP_TO
    labels: list[str] = []
    for i in order:
        r = pts[i]
        px, py = sx(xs[i]), sy(ys[i])
        front_pt = id(r) in on_front
        colour = FRONTIER_COLOUR if front_pt else OTHER_COLOUR
        tip = (
            f"{r.name}: {metric_label(QUALITY)} {_num(ys[i], 3)}, {x_key} {_num(r.c(x_key))}"
            f" ({r.source})"
        )
        out.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{5 if front_pt else 4}" fill="{colour}" '
            f'stroke="#fff" stroke-width="1"><title>{e(tip)}</title></circle>'
        )
        boxes.append((px - 5, py - 5, px + 5, py + 5))
    # Frontier first; right to left, because points near the right edge have the fewest spots.
    for i in sorted(order, key=lambda i: (id(pts[i]) not in on_front, -xs[i])):
        r = pts[i]
        if not labelled and id(r) not in on_front:
            continue
        px, py = sx(xs[i]), sy(ys[i])
        text = _short(r.name)
        tx, ty, anchor, box = _place_label(px, py, text, boxes, (left, top, left + pw, top + ph))
        cls = "pt-label front" if id(r) in on_front else "pt-label"
        # A label pushed away from its point gets a leader line so it is not read as a neighbour's.
        lx = min(max(px, box[0]), box[2])
        ly = min(max(py, box[1]), box[3])
        if math.hypot(lx - px, ly - py) > 14:
            labels.append(
                f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{lx:.1f}" y2="{ly:.1f}" class="leader"/>'
            )
        labels.append(
            f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" class="{cls}">{e(text)}</text>'
        )
    out.append('<g aria-hidden="true">')
    out += labels
    out.append("</g>")
    # Legend, top-left inside the plot where low-quality/high-cost points rarely sit.
    lx, ly = left + 10, top + 14
    out.append('<g class="legend" aria-hidden="true">')
    out.append(f'<circle cx="{lx + 5}" cy="{ly - 4}" r="5" fill="{FRONTIER_COLOUR}"/>')
    out.append(f'<text x="{lx + 15}" y="{ly}">on the frontier</text>')
    out.append(f'<circle cx="{lx + 120}" cy="{ly - 4}" r="4" fill="{OTHER_COLOUR}"/>')
    out.append(f'<text x="{lx + 130}" y="{ly}">dominated</text>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _place_label(
    px: float,
    py: float,
    text: str,
    boxes: list[tuple[float, float, float, float]],
    plot: tuple[float, float, float, float],
) -> tuple[float, float, str, tuple[float, float, float, float]]:
    """Greedy placement: the first side of the point where the label overlaps nothing."""
    w, h = len(text) * CHAR_PX, 12.0
    # (x, y baseline, anchor) in order of preference: beside, above/below, then further out.
    spots: list[tuple[float, float, str]] = [
        (px + 8, py + 4, "start"),
        (px - 8, py + 4, "end"),
        (px, py - 10, "middle"),
        (px, py + 18, "middle"),
    ]
    for dy in (-8, 16, -20, 28, -32):
        spots += [(px + 8, py + dy, "start"), (px - 8, py + dy, "end")]
    candidates = []
    for tx, ty, anchor in spots:
        x0 = tx if anchor == "start" else tx - w if anchor == "end" else tx - w / 2
        candidates.append((tx, ty, anchor, (x0, ty - h + 1, x0 + w, ty + 1)))

    def cost(box: tuple[float, float, float, float]) -> float:
        x0, y0, x1, y1 = box
        overlap = sum(
            max(0.0, min(x1, b[2]) - max(x0, b[0])) * max(0.0, min(y1, b[3]) - max(y0, b[1]))
            for b in boxes
        )
        # Leaving the plot area is worse than a small overlap: the text would be clipped.
        outside = (
            max(0.0, plot[0] - x0)
            + max(0.0, x1 - plot[2])
            + max(0.0, plot[1] - y0)
            + max(0.0, y1 - plot[3])
        )
        return overlap + 50.0 * outside * h

    best = min(range(len(candidates)), key=lambda k: (cost(candidates[k][3]), k))
    tx, ty, anchor, box = candidates[best]
    boxes.append(box)
    return tx, ty, anchor, box


def _memory_bars(rows: list[_Row], hardware: str) -> str:
    e = html.escape
    data = [r for r in rows if r.c("peak_rss_mb") is not None]
    data.sort(key=lambda r: (-(r.c("peak_rss_mb") or 0.0), r.name))
    bar_h, gap = 11, 10
    left = int(min(260, max(80, max((len(_short(r.name)) for r in data), default=4) * CHAR_PX)))
    left += 16
    width, right, top, bottom = 760, 70, 34, 44
    pw = width - left - right
    height = top + bottom + max(1, len(data)) * (2 * bar_h + gap)
    title = f"Peak RSS and model size per configuration on {hardware}"
    desc = "; ".join(
        f"{r.name}: peak RSS {_num(r.c('peak_rss_mb'), 0)} MB, model {_num(r.c('model_mb'), 0)} MB"
        for r in data
    )
    out = [
        f'<svg viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="memory-title memory-desc" class="chart">',
        f'<title id="memory-title">{e(title)}</title>',
        f'<desc id="memory-desc">{e(desc or "no data")}</desc>',
    ]
    if not data:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">'
            "no data</text></svg>"
        )
        return "\n".join(out)
    vmax = max(max(r.c("peak_rss_mb") or 0.0, r.c("model_mb") or 0.0) for r in data)
    _, hi, ticks = _lin_axis([0.0, vmax], include_zero=True, pad=False)

    def sx(v: float) -> float:
        return left + pw * v / hi

    out.append('<g class="legend" aria-hidden="true">')
    out.append(f'<rect x="{left}" y="8" width="12" height="12" fill="{FRONTIER_COLOUR}"/>')
    out.append(f'<text x="{left + 18}" y="18">peak RSS (MB)</text>')
    out.append(f'<rect x="{left + 130}" y="8" width="12" height="12" fill="{MODEL_COLOUR}"/>')
    out.append(f'<text x="{left + 148}" y="18">model files (MB)</text>')
    out.append("</g>")
    plot_bottom = height - bottom
    out.append('<g class="grid" aria-hidden="true">')
    for t in ticks:
        out.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{plot_bottom}"/>')
    out.append("</g>")
    out.append('<g class="axis" aria-hidden="true">')
    for t in ticks:
        out.append(
            f'<text x="{sx(t):.1f}" y="{plot_bottom + 16}" text-anchor="middle">{e(_tick(t))}'
            "</text>"
        )
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle" class="label">'
        "memory (MB)</text>"
    )
    out.append("</g>")
    for k, r in enumerate(data):
        y = top + k * (2 * bar_h + gap)
        rss, model = r.c("peak_rss_mb") or 0.0, r.c("model_mb")
        out.append(
            f'<text x="{left - 8}" y="{y + bar_h + 4}" text-anchor="end" class="bar-label">'
            f"<title>{e(r.name)}</title>{e(_short(r.name))}</text>"
        )
        out.append(
            f'<rect x="{left}" y="{y}" width="{max(sx(rss) - left, 1):.1f}" height="{bar_h}" '
            f'fill="{FRONTIER_COLOUR}"><title>{e(r.name)}: peak RSS {_num(rss, 0)} MB</title>'
            "</rect>"
        )
        out.append(
            f'<text x="{sx(rss) + 4:.1f}" y="{y + bar_h - 2}" class="value">{_num(rss, 0)}</text>'
        )
        if model is not None:
            out.append(
                f'<rect x="{left}" y="{y + bar_h}" width="{max(sx(model) - left, 1):.1f}" '
                f'height="{bar_h}" fill="{MODEL_COLOUR}"><title>{e(r.name)}: model '
                f"{_num(model, 0)} MB</title></rect>"
            )
            out.append(
                f'<text x="{sx(model) + 4:.1f}" y="{y + 2 * bar_h - 2}" class="value">'
                f"{_num(model, 0)}</text>"
            )
    out.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{plot_bottom}" class="base"/>')
    out.append("</svg>")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# tables


_DETAIL_KEYS = ("encoder", "backend", "model", "retrieval", "reranker", "candidates", "batch_size")


def _table(
    rows: list[_Row], *, caption: str, on_lat: set[int], on_usd: set[int], details: bool
) -> str:
    e = html.escape
    cols = [
        ("config", "config"),
        (metric_label("ndcg@10"), "num"),
        (metric_label("recall@10"), "num"),
        (metric_label("cold_ndcg@10"), "num"),
        ("p50 ms", "num"),
        ("p99 ms", "num"),
        ("QPS", "num"),
        ("peak RSS MB", "num"),
        ("model MB", "num"),
        ("$ / 1M req", "num"),
        ("source", "text"),
    ]
    if details:
        cols += [("frontier", "text"), ("details", "text")]
    out = ["<table>", f"<caption>{e(caption)}</caption>", "<thead><tr>"]
    out += [f'<th scope="col" class="{k}">{e(name)}</th>' for name, k in cols]
    out.append("</tr></thead>")
    out.append("<tbody>")
    if not rows:
        out.append(f'<tr><td colspan="{len(cols)}">no configurations</td></tr>')
    for r in rows:
        usd = r.c("usd_per_million_requests")
        cells = [
            f'<th scope="row" class="config">{e(r.name)}</th>',
            _td(_num(r.q("ndcg@10"), 3)),
            _td(_num(r.q("recall@10"), 3)),
            _td(_num(r.q("cold_ndcg@10"), 3)),
            _td(_num(r.c("p50_ms"))),
            _td(_num(r.c("p99_ms"))),
            _td(_num(r.c("qps"), 0)),
            _td(_num(r.c("peak_rss_mb"), 0)),
            _td(_num(r.c("model_mb"), 0)),
            _td("-" if usd is None else f"${_num(usd)}"),
            f'<td class="text">{e(r.source)}</td>',
        ]
        if details:
            marks = [m for m, s in (("p99", on_lat), ("$", on_usd)) if id(r) in s]
            cells.append(f'<td class="text">{e(", ".join(marks))}</td>')
            detail = " ".join(
                f"{k}={r.record.config[k]}"
                for k in _DETAIL_KEYS
                if r.record.config.get(k) is not None
            )
            cells.append(f'<td class="text detail">{e(detail)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    return '<div class="table-wrap">' + "\n".join(out) + "</div>"


def _td(text: str) -> str:
    return f'<td class="num">{html.escape(text)}</td>'


# --------------------------------------------------------------------------------------------
# axes and numbers


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _lin_axis(
    values: list[float], *, include_zero: bool, pad: bool = True
) -> tuple[float, float, list[float]]:
    lo, hi = min(values), max(values)
    if include_zero:
        lo = min(lo, 0.0)
    if hi - lo < 1e-12:
        delta = abs(hi) * 0.1 or 0.01
        lo, hi = lo - delta, hi + delta
    elif pad:
        margin = (hi - lo) * 0.08
        lo = lo if include_zero and lo == 0 else lo - margin
        hi += margin
    step = _nice_step(hi - lo)
    lo = math.floor(lo / step + 1e-9) * step
    hi = math.ceil(hi / step - 1e-9) * step
    n = round((hi - lo) / step)
    ticks = [round(lo + k * step, 10) for k in range(n + 1)]
    return lo, hi, ticks


def _log_axis(values: list[float]) -> tuple[float, float, list[float]]:
    lo, hi = min(values), max(values)
    lo, hi = lo / 1.35, hi * 1.35
    if hi / lo < 4:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / 2, mid * 2
    ticks: list[float] = []
    for mults in (
        (1.0,),
        (1.0, 2.0, 5.0),
        (1.0, 2.0, 3.0, 5.0),
        tuple(float(m) for m in range(1, 10)),
    ):
        ticks = [
            m * 10.0**k
            for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mults
            if lo <= m * 10.0**k <= hi
        ]
        if len(ticks) >= 4:
            break
    if len(ticks) > 12:
        ticks = [t for t in ticks if round(t / 10 ** math.floor(math.log10(t)), 6) == 1.0]
    return lo, hi, ticks


def _tick(t: float) -> str:
    if t == 0:
        return "0"
    if abs(t) >= 1000:
        return f"{t:,.0f}"
    return f"{t:g}"


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


def _short(name: str) -> str:
    return name if len(name) <= LABEL_MAX_CHARS else name[: LABEL_MAX_CHARS - 1] + "…"


def _flat(rows: list[_Row]) -> list[dict[str, Any]]:
    return [{**r.cost, QUALITY: r.q(QUALITY)} for r in rows]


_CSS = """
:root{--fg:#1d2430;--muted:#5b6576;--line:#e3e7ee;--accent:#1f5fbf}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:#fff}
main{max-width:1040px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:1.6rem;margin:0 0 4px}
h2{font-size:1.15rem;margin:36px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--line)}
p{margin:6px 0 10px}
.meta,.note{color:var(--muted)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f5f7fa;border:1px solid var(--line);border-radius:6px;padding:12px;overflow:auto}
svg.chart{width:100%;height:auto;display:block;font-family:inherit}
svg text{font-size:12px;fill:var(--fg)}
svg .grid line{stroke:#edf0f4;stroke-width:1}
svg .frame{fill:none;stroke:#c4cad4}
svg .label{font-size:13px;fill:var(--muted)}
svg .pt-label{font-size:11px;fill:#4a5363}
svg .pt-label.front{fill:var(--accent);font-weight:600}
svg .legend text,svg .value{font-size:11px;fill:var(--muted)}
svg .bar-label{font-size:12px}
svg .base{stroke:#8a93a3}
svg .leader{stroke:#8a93a3;stroke-width:0.8}
svg .empty{fill:var(--muted);font-size:14px}
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
