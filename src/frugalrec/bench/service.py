"""Service capacity: the real HTTP service under open-loop load, and the per-request serving
overhead it adds to a configuration's scoring.

``frugalrec serve`` (uvicorn, request parsing, the store, JSON) costs more per request than the
scorer alone: planning from in-process throughput put EASE at ~20k QPS per machine where the
service holds ~1.5-3k. This instrument starts the service for a configuration, offers
recommendation GETs on a fixed clock at rising rates (the project's open-loop load generator,
``scripts/load_test.py`` or its successor ``frugalrec.bench.loadtest``) and reports the highest
rate served with p99 within the budget, no errors and the offered rate achieved.

:func:`calibrate_overhead` does it once per machine with ``pop`` (whose scoring is a copy of one
vector): ``overhead_s = 1 / capacity - scoring_s``. The planner then sizes machines from
``service_qps = 1 / (overhead_s + scoring_s(config))`` (one server process per machine, as
``frugalrec serve`` runs). The check: measure EASE's capacity the same way and compare.

    python -m frugalrec.bench.service calibrate            # once per machine (cached)
    python -m frugalrec.bench.service check --bench demo-out/bench/bench.json \\
        --out docs/bench/capacity_check.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from frugalrec._io import cache_dir, write_json_atomic

RATES = (50.0, 100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0)
P99_BUDGET_MS = 50.0
ACHIEVED_FRACTION = 0.95


def _load_generator() -> list[str]:
    """Command prefix of the open-loop load generator (flags and JSON keys of
    ``scripts/load_test.py``)."""
    if importlib.util.find_spec("frugalrec.bench.loadtest") is not None:
        return [sys.executable, "-m", "frugalrec.bench.loadtest"]
    script = Path(__file__).resolve().parents[3] / "scripts" / "load_test.py"
    if not script.exists():
        raise FileNotFoundError(
            "no load generator: neither frugalrec.bench.loadtest nor scripts/load_test.py"
        )
    return [sys.executable, str(script)]


def start_service(config: dict[str, Any] | None, dataset: str, workdir: Path) -> tuple[Any, str]:
    """``frugalrec serve`` on a free loopback port, limits lifted for one client; returns
    (process, url) once ``/readyz`` answers."""
    from frugalrec.bench.loadtest import spawn_server

    args = ["--dataset", dataset, "--store", f"sqlite:///{workdir / 'svc.db'}",
            "--model-dir", str(workdir / "models"),
            "--rate-limit", "1000000", "--rate-burst", "1000000",
            "--anonymous-rate-limit", "1000000"]  # fmt: skip
    if config is not None:
        cfg = workdir / "config.json"
        cfg.write_text(json.dumps(config))
        args += ["--config", str(cfg)]
    env = {"FRUGALREC_API_KEYS": secrets.token_urlsafe(24)}
    return spawn_server(workdir, args, env, ready_s=300)


def measure_capacity(
    config: dict[str, Any] | None,
    dataset: str = "ml-100k",
    *,
    rates: Sequence[float] = RATES,
    duration_s: float = 6.0,
    warmup_s: float = 2.0,
    p99_budget_ms: float = P99_BUDGET_MS,
    resolution: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Highest offered rate (recommendation GETs/s, open loop) at which the service answers
    with client p99 <= ``p99_budget_ms``, no errors, and >= 95% of the offered rate; stops at
    the first rate that fails, then bisects between the last rate served and it down to
    ``resolution`` (relative). Returns ``{"capacity_rps", "runs": [...]}``."""
    from frugalrec.bench.loadtest import MAX_SHED_AT_CAPACITY

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="frugalrec-capacity-") as tmp:
        proc, url = start_service(config, dataset, Path(tmp))

        def run(rate: float) -> bool:
            out = Path(tmp) / f"load-{int(rate)}.json"
            cmd = [*_load_generator(), "--url", url, "--rate", str(rate),
                   "--duration", str(duration_s), "--warmup", str(warmup_s),
                   "--mix", "100,0,0", "--dataset", dataset, "--out", str(out)]  # fmt: skip
            subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
            if not out.exists():
                runs.append({"rate": rate, "ok": False, "error": "load generator failed"})
                return False
            res = json.loads(out.read_text())
            rec = res.get("latency_client", {}).get("rec", {})
            # Since the service sheds, an overloaded run can answer fast with no errors: a
            # rate counts only where (almost) nothing was refused, as in loadtest --sweep.
            ok = (
                res.get("errors", 1) == 0
                and res.get("shed_share", 1.0) <= MAX_SHED_AT_CAPACITY
                and rec.get("p99_ms", float("inf")) <= p99_budget_ms
                and res.get("achieved_rps", 0.0) >= ACHIEVED_FRACTION * rate
            )
            runs.append({
                "rate": rate, "ok": ok, "achieved_rps": res.get("achieved_rps"),
                "p50_ms": rec.get("p50_ms"), "p99_ms": rec.get("p99_ms"),
                "errors": res.get("errors"), "shed_share": res.get("shed_share"),
                "cache_hit_ratio": res.get("cache_hit_ratio"),
                "scheduler_late_p99_ms": res.get("scheduler_late_p99_ms"),
                "loadavg_start": res.get("loadavg_start"),
            })  # fmt: skip
            if progress:
                progress(f"{rate:.0f}/s: p99 {rec.get('p99_ms')} ms, ok={ok}")
            return ok

        try:
            lo, hi = 0.0, None
            for rate in rates:
                if not run(rate):
                    hi = rate
                    break
                lo = rate
            # Narrow the step between the last rate served and the first one missed to 10%.
            while hi is not None and lo > 0 and (hi - lo) / lo > resolution:
                mid = round((lo + hi) / 2.0)
                if run(mid):
                    lo = mid
                else:
                    hi = mid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    passed = [r["rate"] for r in runs if r["ok"]]
    return {
        "capacity_rps": max(passed) if passed else None,
        "p99_budget_ms": p99_budget_ms,
        "runs": runs,
        "method": f"open-loop GET /v1/users/{{id}}/recommendations at rising rates, "
        f"{duration_s:g} s each after {warmup_s:g} s warm-up; capacity = the highest rate with "
        f"0 errors, <= {MAX_SHED_AT_CAPACITY:.0%} shed, client p99 <= {p99_budget_ms:g} ms "
        f"and >= {ACHIEVED_FRACTION:.0%} of the "
        "offered rate achieved",
    }


def scoring_seconds(cost: dict[str, Any]) -> float:
    """Mean in-process seconds of one batch-1 request of a bench record's cost block."""
    by_batch = cost.get("qps_by_batch") or {}
    qps1 = by_batch.get("1") or by_batch.get(1)
    if qps1:
        return 1.0 / float(qps1)
    return float(cost["p50_ms"]) / 1e3


def _machine_key() -> str:
    from frugalrec.cost.ceilings import cpu_model

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "".join(ch if ch.isalnum() else "-" for ch in f"{cpu_model()}-{cores}")


def overhead_path() -> Path:
    """Where this machine's calibrated serving overhead is cached."""
    return cache_dir("service") / f"overhead-{_machine_key()}.json"


def cached_overhead() -> dict[str, Any] | None:
    """This machine's calibration, if one was made."""
    p = overhead_path()
    return json.loads(p.read_text()) if p.exists() else None


def calibrate_overhead(
    dataset: str = "ml-100k", progress: Callable[[str], None] | None = None, **kw: Any
) -> dict[str, Any]:
    """Measure ``pop``'s service capacity and in-process scoring time on this machine; the
    difference of their reciprocals is the per-request serving overhead. Cached."""
    from frugalrec.bench.configs import run_config_subprocess
    from frugalrec.pipeline.config import PipelineConfig

    pop = PipelineConfig(model="pop")
    cap = measure_capacity(pop.to_dict(), dataset, progress=progress, **kw)
    if not cap["capacity_rps"]:
        raise RuntimeError(f"pop's service served no rate within budget: {cap['runs']}")
    scoring = scoring_seconds(run_config_subprocess(pop, dataset, quick=True)["cost"])
    out = {
        "overhead_s": max(0.0, 1.0 / cap["capacity_rps"] - scoring),
        "calibrated_with": "pop",
        "pop_capacity_rps": cap["capacity_rps"],
        "pop_scoring_s": scoring,
        "capacity": cap,
        "machine": _machine_key(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    write_json_atomic(overhead_path(), out)
    return out


def service_qps(overhead_s: float, scoring_s: float) -> float:
    """End-to-end requests/s of one server process: ``1 / (overhead + scoring)``."""
    return 1.0 / (overhead_s + scoring_s)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Service capacity and serving overhead.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate", help="measure the per-request serving overhead (pop)")
    c.add_argument("--dataset", default="ml-100k")
    c.add_argument("--duration", type=float, default=6.0)
    k = sub.add_parser("check", help="planner QPS/machine vs the load test's capacity")
    k.add_argument("--bench", required=True, help="bench.json with the configuration")
    k.add_argument("--config", default="ease", help="configuration name in the bench")
    k.add_argument("--dataset", default="ml-100k")
    k.add_argument("--duration", type=float, default=6.0)
    k.add_argument("--out", default="")
    a = p.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if a.cmd == "calibrate":
        res = calibrate_overhead(a.dataset, progress=say, duration_s=a.duration)
        print(json.dumps({k: v for k, v in res.items() if k != "capacity"}, indent=1))
        return 0
    records = json.loads(Path(a.bench).read_text())
    (rec,) = [r for r in records if r["config"]["name"] == a.config]
    planned = rec["cost"].get("service_qps")
    if planned is None:
        raise SystemExit(f"{a.bench}: {a.config} has no service_qps (calibrate, then re-run bench)")
    cap = measure_capacity(rec["config"], a.dataset, progress=say, duration_s=a.duration)
    measured = cap["capacity_rps"]
    err = None if not measured else abs(planned / measured - 1)
    res = {
        "config": a.config,
        "planner_qps_per_machine": planned,
        "scorer_only_qps": rec["cost"].get("qps"),
        "load_test_capacity_rps": measured,
        "rel_error": err,
        "target": 0.25,
        "within_target": err is not None and err <= 0.25,
        "overhead": cached_overhead(),
        "capacity": cap,
        "bench": str(a.bench),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"{a.config}: planner {planned:.0f} QPS/machine, load test {measured} req/s "
        f"(scorer alone {rec['cost'].get('qps', 0):.0f}) -> error "
        + ("n/a" if err is None else f"{err:.0%}")
    )
    if a.out:
        write_json_atomic(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
