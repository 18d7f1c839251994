"""Catalogue-size projection check: calibrate on small catalogues, project a large one, compare
with its measurement, next to naive predictors.

Reads a scaling run (``python -m frugalrec.bench.scaling ... --out scaling.json``), keeps the
points at most ``--max-calib-items`` for calibration and checks every retriever measured at
``--target-items``:

- p99 latency at batch 1: the roofline cost model (calibrated on the small catalogues' stage
  costs, projected from the large catalogue's analytic op counts on the same machine), the
  fitted scaling curve (``a * n**b + c``), and the naive predictors (the value at the largest
  calibrated size; linear scaling from it);
- memory (index bytes): the fitted linear growth law against the same naive predictors.

Run it: ``python -m frugalrec.bench.projection_check --scaling docs/bench/scaling.json
--max-calib-items 100000 --target-items 1000000 --out docs/bench/projection_1m.json``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from frugalrec._io import write_json_atomic
from frugalrec.cost.ceilings import Ceilings
from frugalrec.cost.hardware import load_profiles
from frugalrec.cost.roofline import calibrate, project
from frugalrec.cost.scaling import fit_scaling
from frugalrec.cost.skill import format_skill, naive_largest, naive_linear, skill_summary
from frugalrec.opcount import StageCost

TARGET_ERROR = 0.25
TARGET_SKILL = 0.5


def _b1_stage(record: Mapping[str, Any]) -> StageCost:
    """The record's batch-1 search as a StageCost whose one sample is the measured p99."""
    (s,) = [s for s in record["stage_costs"] if s["batch_size"] == 1]
    fields = {k: s[k] for k in ("name", "kind", "flops", "bytes_moved", "batch_size", "dtype",
                                "working_set_bytes", "hot_bytes") if k in s}  # fmt: skip
    return StageCost(
        **fields,
        streaming=bool(s.get("streaming", record["kind"] == "exact")),
        seconds=[float(record["p99_ms"]) / 1e3],
        meta=dict(s.get("meta", {})),
    )


def check(scaling: Mapping[str, Any], max_calib_items: int, target_items: int) -> dict[str, Any]:
    """Rows per retriever measured at ``target_items`` and the skill summaries."""
    records = scaling["records"]
    calib = [r for r in records if r["n_items"] <= max_calib_items]
    targets = [r for r in records if r["n_items"] == target_items]
    if not calib or not targets:
        raise ValueError(f"need records at <= {max_calib_items} items and at {target_items} items")
    ceilings = Ceilings.from_dict(scaling["ceilings"])
    local = load_profiles(ceilings=ceilings)["local"]
    cal = calibrate([_b1_stage(r) for r in calib], local, quantile=0.99)
    lat_rows, mem_rows = [], []
    for t in targets:
        own = sorted((r for r in calib if r["retriever"] == t["retriever"]),
                     key=lambda r: r["n_items"])  # fmt: skip
        if len(own) < 2:
            continue
        sizes = [float(r["n_items"]) for r in own]
        p99 = [float(r["p99_ms"]) for r in own]
        mem = [float(r["index_mb"]) for r in own]
        n = float(t["n_items"])
        lat_rows.append({
            "retriever": t["retriever"],
            "measured": float(t["p99_ms"]),
            "roofline": project(_b1_stage(t), cal, local) * 1e3,
            "curve": fit_scaling(list(zip(sizes, p99, strict=True)), form="power").predict(n),
            "constant": naive_largest(sizes, p99),
            "linear": naive_linear(sizes, p99, n),
        })  # fmt: skip
        mem_rows.append({
            "retriever": t["retriever"],
            "measured": float(t["index_mb"]),
            "curve": fit_scaling(list(zip(sizes, mem, strict=True)), form="linear").predict(n),
            "constant": naive_largest(sizes, mem),
            "linear": naive_linear(sizes, mem, n),
        })  # fmt: skip
    targets_kw: dict[str, Any] = {"target_error": TARGET_ERROR, "target_skill": TARGET_SKILL}
    return {
        "max_calib_items": max_calib_items,
        "target_items": target_items,
        "p99_ms": {
            "rows": lat_rows,
            "roofline": skill_summary(lat_rows, model="roofline", **targets_kw),
            "curve": skill_summary(lat_rows, model="curve", **targets_kw),
        },
        "index_mb": {
            "rows": mem_rows,
            "curve": skill_summary(mem_rows, model="curve", **targets_kw),
        },
        "method": (
            f"calibrate on every scaling record with <= {max_calib_items} items; for each "
            f"retriever measured at {target_items}, predict batch-1 p99 (roofline: calibrated "
            "efficiencies x the target's analytic op counts on the same machine; curve: "
            "a*n^b+c fitted to that retriever's points) and index MB (linear fit), next to "
            "naive 'constant' (value at the largest calibrated size) and 'linear' (that value "
            "x size ratio); errors |predicted/measured - 1|, medians over retrievers"
        ),
    }


def report_lines(res: Mapping[str, Any]) -> list[str]:
    """Human-readable lines of :func:`check`'s result."""
    n0, n1 = res["max_calib_items"], res["target_items"]
    lines = []
    for r in res["p99_ms"]["rows"]:
        lines.append(
            f"  p99 {r['retriever']:<28} measured {r['measured']:8.3f} ms | roofline "
            f"{r['roofline']:8.3f} | curve {r['curve']:8.3f} | constant {r['constant']:8.3f} "
            f"| linear {r['linear']:8.3f}"
        )
    for r in res["index_mb"]["rows"]:
        lines.append(
            f"  MB  {r['retriever']:<28} measured {r['measured']:8.1f} | curve "
            f"{r['curve']:8.1f} | constant {r['constant']:8.1f} | linear {r['linear']:8.1f}"
        )
    title = f"<= {n0:,} items -> {n1:,}"
    lines.append(format_skill(f"p99 roofline  {title}", res["p99_ms"]["roofline"]))
    lines.append(format_skill(f"p99 curve     {title}", res["p99_ms"]["curve"]))
    lines.append(format_skill(f"memory curve  {title}", res["index_mb"]["curve"]))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scaling", required=True, help="scaling.json from frugalrec.bench.scaling")
    p.add_argument("--max-calib-items", type=int, default=100_000)
    p.add_argument("--target-items", type=int, default=1_000_000)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    scaling = json.loads(Path(a.scaling).read_text())
    res = check(scaling, a.max_calib_items, a.target_items)
    res["source"] = str(a.scaling)
    print("\n".join(report_lines(res)))
    if a.out:
        write_json_atomic(a.out, res)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
