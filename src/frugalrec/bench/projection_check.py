"""Catalogue-size projection check: calibrate on small catalogues, project a large one, compare
with its measurement, next to naive predictors — with the projection model chosen on a
validation step that never sees the target size.

Reads a scaling run (``python -m frugalrec.bench.scaling ... --out scaling.json``).

1. **Selection on validation.** For each validation step ``(calibrate <= a, validate at b)``
   (default ``30k -> 100k`` and ``100k -> 300k``, only steps whose ``b`` is below the target
   and whose sizes were measured), every candidate predicts batch-1 latency (p50 and p99
   separately) of every retriever measured at ``b`` from that retriever's points ``<= a``.
   The candidate with the lowest median relative error over all validation rows is chosen,
   per quantile. Records at or above the target size are dropped before this step, so the
   choice cannot depend on them.
2. **Final check.** Every candidate is refitted on the points ``<= --max-calib-items`` and
   projects ``--target-items``; the *chosen* one is the claim, scored against the naive
   predictors (the value at the largest calibrated size; linear scaling from it). The other
   candidates' errors are printed too, for transparency, not for choosing.

Candidates (``CANDIDATES``):

- ``roofline``: the cache-aware roofline cost model (:mod:`frugalrec.cost.roofline`) calibrated
  on every calibration record's batch-1 latency, projected from the target's analytic op
  counts on the same machine (an exact scan is served from the last-level cache while its
  vectors fit, from memory bandwidth once they leave it);
- ``roofline_anchored``: the roofline's *ratio* target / largest calibrated size, times the
  latency measured there (the model's shape, the measurement's level and tail);
- ``roofline_tail``: for p99, ``roofline_anchored``'s p50 plus a contention tail
  (:class:`~frugalrec.cost.scaling.ContentionTail`: Poisson preemptions of a fitted rate and
  quantum, fitted on every calibration record's (p50, p99) pair); for p50, the same as
  ``roofline_anchored``;
- ``curve``: ``a * n**b + c`` fitted to the retriever's calibration points;
- ``loglog``: a straight line in log-log space through the retriever's last three calibration
  points (least squares);
- ``loglog_anchored``: the log-log slope of the last two points, through the last one.

Memory (index bytes) is linear in ``n``: a linear fit against the same naive predictors (naive
linear scaling is exact here, so no model can show skill; none is needed).

Run it: ``python -m frugalrec.bench.projection_check --scaling docs/bench/scaling.json
--max-calib-items 100000 --target-items 1000000 --out docs/bench/projection_1m.json``
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import write_json_atomic
from frugalrec.cost.ceilings import Ceilings
from frugalrec.cost.hardware import HardwareProfile, load_profiles
from frugalrec.cost.roofline import Calibration, calibrate, project
from frugalrec.cost.scaling import ContentionTail, fit_contention_tail, fit_scaling
from frugalrec.cost.skill import (
    format_skill,
    naive_largest,
    naive_linear,
    relative_error,
    skill_summary,
)
from frugalrec.opcount import StageCost

TARGET_ERROR = 0.25
TARGET_SKILL = 0.5
CANDIDATES = (
    "roofline",
    "roofline_anchored",
    "roofline_tail",
    "curve",
    "loglog",
    "loglog_anchored",
)
QUANTILE_KEYS = ("p50_ms", "p99_ms")
DEFAULT_VALIDATION = ((30_000, 100_000), (100_000, 300_000))


def _b1_stage(record: Mapping[str, Any], key: str = "p99_ms") -> StageCost:
    """The record's batch-1 search as a StageCost whose one sample is the measured ``key``."""
    (s,) = [s for s in record["stage_costs"] if s["batch_size"] == 1]
    fields = {k: s[k] for k in ("name", "kind", "flops", "bytes_moved", "batch_size", "dtype",
                                "working_set_bytes", "hot_bytes") if k in s}  # fmt: skip
    return StageCost(
        **fields,
        streaming=bool(s.get("streaming", record["kind"] == "exact")),
        seconds=[float(record[key]) / 1e3],
        meta=dict(s.get("meta", {})),
    )


def _loglog(sizes: Sequence[float], values: Sequence[float], n: float, last: int) -> float:
    """Least-squares line in log-log space through the last ``last`` points, at ``n``."""
    x = np.log(np.asarray(sizes[-last:], dtype=np.float64))
    y = np.log(np.asarray(values[-last:], dtype=np.float64))
    b, log_a = np.polyfit(x, y, 1)
    return float(np.exp(log_a + b * math.log(n)))


def _loglog_anchored(sizes: Sequence[float], values: Sequence[float], n: float) -> float:
    """The slope of the last two points in log-log space, through the last one."""
    b = math.log(values[-1] / values[-2]) / math.log(sizes[-1] / sizes[-2])
    return float(values[-1] * (n / sizes[-1]) ** b)


def candidate_predictions(
    own: Sequence[Mapping[str, Any]],
    target: Mapping[str, Any],
    key: str,
    cals: Mapping[str, Calibration],
    profile: HardwareProfile,
    tail: ContentionTail,
) -> dict[str, float]:
    """Every candidate's prediction of ``target[key]`` from one retriever's calibration records
    ``own`` (sorted by size, at least two), the roofline calibrations per quantile key
    ``cals`` (``p50_ms`` and ``key``), ``profile`` and the fitted contention ``tail``."""
    sizes = [float(r["n_items"]) for r in own]
    vals = [float(r[key]) for r in own]
    n = float(target["n_items"])

    def anchored(k: str) -> tuple[float, float]:
        roof_t = project(_b1_stage(target, k), cals[k], profile) * 1e3
        roof_ref = project(_b1_stage(own[-1], k), cals[k], profile) * 1e3
        return roof_t, float(own[-1][k]) * roof_t / roof_ref

    roof_t, roof_anchored = anchored(key)
    p50_anchored = anchored("p50_ms")[1]
    return {
        "roofline": roof_t,
        "roofline_anchored": roof_anchored,
        "roofline_tail": roof_anchored if key == "p50_ms" else tail.predict(p50_anchored),
        "curve": fit_scaling(list(zip(sizes, vals, strict=True)), form="power").predict(n),
        "loglog": _loglog(sizes, vals, n, min(3, len(sizes))),
        "loglog_anchored": _loglog_anchored(sizes, vals, n),
    }


def _rows(
    records: Sequence[Mapping[str, Any]],
    ceilings: Ceilings,
    max_calib_items: int,
    target_items: int,
    key: str,
) -> list[dict[str, Any]]:
    """One row per retriever measured at ``target_items`` with >= 2 calibration points:
    ``measured``, every candidate's prediction, ``constant`` and ``linear``."""
    calib = [r for r in records if r["n_items"] <= max_calib_items]
    targets = [r for r in records if r["n_items"] == target_items]
    if not calib or not targets:
        return []
    profile = load_profiles(ceilings=ceilings)["local"]
    cals = {
        k: calibrate([_b1_stage(r, k) for r in calib], profile, quantile=0.99)
        for k in {"p50_ms", key}
    }
    tail = fit_contention_tail(
        [(float(r["p50_ms"]), float(r["p99_ms"])) for r in calib], quantile=0.99
    )
    rows = []
    for t in targets:
        own = sorted((r for r in calib if r["retriever"] == t["retriever"]),
                     key=lambda r: r["n_items"])  # fmt: skip
        if len(own) < 2:
            continue
        sizes = [float(r["n_items"]) for r in own]
        vals = [float(r[key]) for r in own]
        n = float(t["n_items"])
        rows.append({
            "retriever": t["retriever"],
            "kind": str(t["kind"]),
            "n_calib_max": int(sizes[-1]),
            "n_target": int(n),
            "measured": float(t[key]),
            **candidate_predictions(own, t, key, cals, profile, tail),
            "constant": naive_largest(sizes, vals),
            "linear": naive_linear(sizes, vals, n),
            **({"tail_fit": tail.to_dict()} if key != "p50_ms" else {}),
        })  # fmt: skip
    return rows


def select_on_validation(
    records: Sequence[Mapping[str, Any]],
    ceilings: Ceilings,
    steps: Sequence[tuple[int, int]],
    target_items: int,
    *,
    candidates: Sequence[str] = CANDIDATES,
    keys: Sequence[str] = QUANTILE_KEYS,
) -> dict[str, Any]:
    """Choose one candidate per quantile key on validation steps below ``target_items``
    (and, in ``by_kind``, one per quantile key and retriever kind, on that kind's rows).

    Records with ``n_items >= target_items`` are removed first (the choice never sees the
    target). A step ``(a, b)`` calibrates on sizes ``<= a`` and validates at ``b``; steps with
    ``b >= target_items`` or no rows are skipped. The score of a candidate is its median
    relative error over every validation row of every step; the lowest wins, ties going to
    the earlier candidate in ``candidates``. Returns ``{key: {"chosen", "median_error":
    {candidate: e}, "n_rows", "by_kind": {kind: {"chosen", "median_error", "n_rows"}},
    "steps": [{calibrate_max, validate_at, rows, median_error}]}}``.
    """
    seen = [r for r in records if r["n_items"] < target_items]
    out: dict[str, Any] = {}
    for key in keys:
        all_rows: list[dict[str, Any]] = []
        step_out = []
        for a, b in steps:
            if b >= target_items:
                continue
            rows = _rows(seen, ceilings, a, b, key)
            if not rows:
                continue
            all_rows += rows
            step_out.append({
                "calibrate_max": a,
                "validate_at": b,
                "rows": rows,
                "median_error": _median_errors(rows, candidates),
            })  # fmt: skip
        if not all_rows:
            raise ValueError(f"no validation step below {target_items} items has data for {key}")
        out[key] = _choose(all_rows, candidates)
        out[key]["by_kind"] = {
            kind: _choose([r for r in all_rows if r["kind"] == kind], candidates)
            for kind in sorted({str(r["kind"]) for r in all_rows})
        }
        out[key]["steps"] = step_out
    return out


def _choose(rows: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> dict[str, Any]:
    med = _median_errors(rows, (*candidates, "constant", "linear"))
    chosen = min(candidates, key=lambda c: (med[c], candidates.index(c)))
    return {"chosen": chosen, "median_error": med, "n_rows": len(rows)}


def _median_errors(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, float]:
    return {
        name: float(np.median([relative_error(r[name], r["measured"]) for r in rows]))
        for name in names
    }


def check(
    scaling: Mapping[str, Any],
    max_calib_items: int,
    target_items: int,
    *,
    validation: Sequence[tuple[int, int]] | None = DEFAULT_VALIDATION,
    per_kind: bool = False,
) -> dict[str, Any]:
    """Selection on validation (when ``validation`` has a usable step), then the final check:
    rows per retriever measured at ``target_items`` and the skill summaries of the chosen
    candidate (and, for reference, of every candidate) per quantile; memory likewise.
    ``per_kind``: each retriever kind (exact, ivfpq, ...) gets the candidate chosen on its own
    validation rows, instead of one candidate for all."""
    records = scaling["records"]
    ceilings = Ceilings.from_dict(scaling["ceilings"])
    selection: dict[str, Any] | None = None
    if validation:
        try:
            selection = select_on_validation(records, ceilings, validation, target_items)
        except ValueError:
            selection = None
    targets_kw: dict[str, Any] = {"target_error": TARGET_ERROR, "target_skill": TARGET_SKILL}
    res: dict[str, Any] = {
        "max_calib_items": max_calib_items,
        "target_items": target_items,
        "validation_steps": [list(s) for s in validation or ()],
        "selection": selection,
        "per_kind": per_kind,
    }
    for key in QUANTILE_KEYS:
        rows = _rows(records, ceilings, max_calib_items, target_items, key)
        if not rows:
            raise ValueError(
                f"need records at <= {max_calib_items} items and at {target_items} items"
            )
        chosen: Any = None
        if selection:
            sel = selection[key]
            if per_kind:
                chosen = {k: v["chosen"] for k, v in sel["by_kind"].items()}
                rows = [r for r in rows if r["kind"] in chosen]
                for r in rows:
                    r["chosen"] = r[chosen[r["kind"]]]
            else:
                chosen = sel["chosen"]
                for r in rows:
                    r["chosen"] = r[chosen]
        res[key] = {
            "rows": rows,
            "chosen": chosen,
            **{c: skill_summary(rows, model=c, **targets_kw) for c in CANDIDATES},
        }
        if chosen is not None:
            res[key]["chosen_skill"] = skill_summary(rows, model="chosen", **targets_kw)
            res[key]["chosen_skill_by_kind"] = {
                kind: skill_summary([r for r in rows if r["kind"] == kind], model="chosen")
                for kind in sorted({str(r["kind"]) for r in rows})
            }
    res["index_mb"] = _memory_check(records, max_calib_items, target_items, targets_kw)
    res["method"] = (
        "model choice: for each validation step (calibrate <= a, validate at b < target), "
        f"each candidate ({', '.join(CANDIDATES)}) predicts "
        "each retriever's batch-1 p50/p99 at b; the lowest median relative error over all "
        "validation rows wins, per quantile; records >= the target size are removed before. "
        f"Final: refit on every record <= {max_calib_items} items, predict each retriever "
        f"measured at {target_items}; the chosen candidate is compared with naive 'constant' "
        "(value at the largest calibrated size) and 'linear' (that value x size ratio); "
        "errors |predicted/measured - 1|, medians over retrievers. Memory: index MB, linear fit."
    )
    return res


def _memory_check(
    records: Sequence[Mapping[str, Any]],
    max_calib_items: int,
    target_items: int,
    targets_kw: Mapping[str, Any],
) -> dict[str, Any]:
    calib = [r for r in records if r["n_items"] <= max_calib_items]
    rows = []
    for t in (r for r in records if r["n_items"] == target_items):
        own = sorted((r for r in calib if r["retriever"] == t["retriever"]),
                     key=lambda r: r["n_items"])  # fmt: skip
        if len(own) < 2:
            continue
        sizes = [float(r["n_items"]) for r in own]
        mem = [float(r["index_mb"]) for r in own]
        n = float(t["n_items"])
        rows.append({
            "retriever": t["retriever"],
            "measured": float(t["index_mb"]),
            "curve": fit_scaling(list(zip(sizes, mem, strict=True)), form="linear").predict(n),
            "constant": naive_largest(sizes, mem),
            "linear": naive_linear(sizes, mem, n),
        })  # fmt: skip
    return {"rows": rows, "curve": skill_summary(rows, model="curve", **targets_kw)}


def _fmt_row(r: Mapping[str, Any], unit: Callable[[float], str]) -> str:
    preds = " | ".join(f"{c} {unit(r[c])}" for c in (*CANDIDATES, "constant", "linear"))
    return f"{r['retriever']:<28} measured {unit(r['measured'])} | {preds}"


def report_lines(res: Mapping[str, Any]) -> list[str]:
    """Human-readable lines of :func:`check`'s result."""
    n0, n1 = res["max_calib_items"], res["target_items"]
    lines = []
    sel = res.get("selection")
    ms = lambda v: f"{v:8.3f}"  # noqa: E731
    if sel:
        for key, s in sel.items():
            steps = ", ".join(f"<= {st['calibrate_max']:,} -> {st['validate_at']:,}"
                              for st in s["steps"])  # fmt: skip
            errs = ", ".join(f"{c} {e:.1%}" for c, e in s["median_error"].items())
            lines.append(f"validation {key} ({steps}; {s['n_rows']} rows): {errs} "
                         f"-> chosen: {s['chosen']}")  # fmt: skip
            for kind, b in s.get("by_kind", {}).items():
                errs = ", ".join(f"{c} {e:.1%}" for c, e in b["median_error"].items())
                lines.append(f"  kind {kind} ({b['n_rows']} rows): {errs} -> {b['chosen']}")
    for key in QUANTILE_KEYS:
        for r in res[key]["rows"]:
            lines.append(f"  {key} " + _fmt_row(r, ms))
    for r in res["index_mb"]["rows"]:
        lines.append(
            f"  MB  {r['retriever']:<28} measured {r['measured']:8.1f} | curve "
            f"{r['curve']:8.1f} | constant {r['constant']:8.1f} | linear {r['linear']:8.1f}"
        )
    title = f"<= {n0:,} items -> {n1:,}"
    for key in QUANTILE_KEYS:
        for c in CANDIDATES:
            lines.append(format_skill(f"{key} {c:<18} {title}", res[key][c]))
        if res[key].get("chosen"):
            lines.append(format_skill(
                f"{key} CHOSEN on validation ({res[key]['chosen']}) {title}",
                res[key]["chosen_skill"],
            ))  # fmt: skip
            for kind, sk in res[key]["chosen_skill_by_kind"].items():
                lines.append(format_skill(f"{key}   of which {kind}", sk))
    lines.append(format_skill(f"memory curve  {title}", res["index_mb"]["curve"]))
    return lines


def _parse_steps(text: str) -> list[tuple[int, int]]:
    steps = []
    for part in text.split(","):
        if part.strip():
            a, b = part.split(":")
            steps.append((int(a), int(b)))
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scaling", required=True, help="scaling.json from frugalrec.bench.scaling")
    p.add_argument("--max-calib-items", type=int, default=100_000)
    p.add_argument("--target-items", type=int, default=1_000_000)
    p.add_argument(
        "--validation",
        default=",".join(f"{a}:{b}" for a, b in DEFAULT_VALIDATION),
        help="validation steps 'calibrate_max:validate_at,...' ('' for none)",
    )
    p.add_argument(
        "--per-kind",
        action="store_true",
        help="choose a candidate per retriever kind on its own validation rows",
    )
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    scaling = json.loads(Path(a.scaling).read_text())
    res = check(
        scaling,
        a.max_calib_items,
        a.target_items,
        validation=_parse_steps(a.validation),
        per_kind=a.per_kind,
    )
    res["source"] = str(a.scaling)
    print("\n".join(report_lines(res)))
    if a.out:
        write_json_atomic(a.out, res)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
