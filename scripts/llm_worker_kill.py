"""SIGKILL the LLM worker of a running ``frugalrec serve --rerank llm`` in the middle of a run
of recommendation requests: every request must still be answered (200), the one in flight
from the cheap stage (``route: fallback``, ``fallback_reason: worker_crash:SIGKILL``), and
the worker must be back within seconds.

    python scripts/llm_worker_kill.py --requests 100 --kill-at 50 \\
        --out docs/bench/llm_worker_kill.json

Starts its own server (ml-100k, a fresh SQLite store in a temp dir, loopback, a free port,
``--llm-margin inf`` so that every request asks the LLM), sends ``--requests`` sequential
``GET /v1/users/{id}/recommendations`` for distinct users with history (no cache hits), and
SIGKILLs the worker (found with psutil among the server's children) half-way through the
LLM call of request ``--kill-at``. Records each request's status, route, fallback reason
and latency; the worker's restart time as the server logged it (kill -> new worker loaded)
and the time from the kill to the next answer the LLM re-ranked; and, after the server is
stopped with SIGTERM, whether any worker process was left running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil


def _workers(server: psutil.Process) -> list[psutil.Process]:
    out = []
    for p in server.children(recursive=True):
        try:
            if "frugalrec.llm.worker" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child waiting to be reaped by init)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_server(work: Path, threads: int) -> tuple[subprocess.Popen, str]:
    from frugalrec.bench.loadtest import spawn_server

    args = ["--dataset", "ml-100k", "--rerank", "llm", "--llm-margin", "inf",
            "--store", f"sqlite:///{work / 'store.db'}",
            "--model-dir", str(work / "models")]  # fmt: skip
    env = {"FRUGALREC_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    try:
        return spawn_server(work, args, env, ready_s=600)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc


def _machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")), "")
    return {"cpu": model, "cores": os.cpu_count(), "load_avg": list(os.getloadavg())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--kill-at", type=int, default=50, help="request index (0-based)")
    ap.add_argument("--budget-ms", type=float, default=30_000.0)
    ap.add_argument("--threads", type=int, default=1, help="server and LLM threads")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    before = _machine()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="frugalrec-kill-") as tmp:
        work = Path(tmp)
        t_start = time.perf_counter()
        proc, url = start_server(work, args.threads)
        startup_s = time.perf_counter() - t_start
        server = psutil.Process(proc.pid)
        first = _workers(server)
        if len(first) != 1:
            raise SystemExit(f"expected one LLM worker under the server, found {len(first)}")
        users = [str(u) for u in range(1, args.requests + 1)]  # ml-100k ids 1..943 all rated
        rows: list[dict[str, Any]] = []
        kill_t: float | None = None
        killed_pid = first[0].pid
        with httpx.Client(base_url=url, timeout=120) as http:
            for i, user in enumerate(users):
                killer = None
                if i == args.kill_at:
                    # Half-way through this request's LLM call (median of the calls so far).
                    llm_ms = [r["ms"] for r in rows if r["route"] == "llm"]
                    delay = 0.5 * float(np.median(llm_ms)) / 1e3 if llm_ms else 0.2
                    stamp: list[float] = []

                    def kill(stamp: list[float] = stamp) -> None:
                        stamp.append(time.perf_counter())
                        os.kill(killed_pid, signal.SIGKILL)

                    killer = threading.Timer(delay, kill)
                    killer.start()
                t0 = time.perf_counter()
                r = http.get(
                    f"/v1/users/{user}/recommendations",
                    params={"k": 10, "budget_ms": args.budget_ms},
                )
                t1 = time.perf_counter()
                if killer is not None:
                    killer.join()
                    kill_t = stamp[0]
                json_body = r.headers.get("content-type", "").startswith("application/json")
                body = r.json() if json_body else {}
                cost = body.get("cost", {})
                rows.append({
                    "i": i, "user": user, "status": r.status_code, "route": cost.get("route"),
                    "fallback_reason": cost.get("fallback_reason"), "tier": cost.get("tier"),
                    "items": len(body.get("items", [])), "ms": (t1 - t0) * 1e3,
                    "sent_after_kill_s": None if kill_t is None or i == args.kill_at
                    else t0 - kill_t,
                    "done_after_kill_s": None if kill_t is None else t1 - kill_t,
                })  # fmt: skip
                why = cost.get("fallback_reason") or ""
                ms_i = rows[-1]["ms"]
                print(f"{i:3d} {r.status_code} {cost.get('route')} {why} {ms_i:.0f} ms", flush=True)
        after_workers = _workers(server)
        metrics = httpx.get(url + "/metrics", timeout=10).text
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # uvicorn re-raises SIGTERM after its graceful shutdown, so atexit does not run: the
        # worker sees its parent gone (it polls every 0.5 s) and exits by itself.
        t_exit = time.perf_counter()
        left = [p.pid for p in after_workers]
        while left and time.perf_counter() - t_exit < 15:
            left = [pid for pid in left if _running(pid)]
            time.sleep(0.1)
        exit_s = time.perf_counter() - t_exit
        log = (work / "server.log").read_text()
    back = [float(x) for x in re.findall(r"LLM worker back after ([0-9.]+) s", log)]
    fallback_lines = [ln for ln in metrics.splitlines() if ln.startswith("frugalrec_llm_fallbacks")]
    after = [r for r in rows if r["i"] > args.kill_at]
    first_llm = next((r for r in after if r["route"] == "llm"), None)
    routes: dict[str, int] = {}
    for r in rows:
        routes[str(r["route"])] = routes.get(str(r["route"]), 0) + 1
    ms = np.array([r["ms"] for r in rows])
    out = {
        "command": " ".join(sys.argv),
        "started_utc": started,
        "machine_before": before,
        "machine_after": _machine(),
        "server": "frugalrec serve --dataset ml-100k --rerank llm --llm-margin inf "
        f"(smollm2-135m, FRUGALREC_THREADS={args.threads}); budget_ms={args.budget_ms:g}",
        "server_startup_s": startup_s,
        "requests": len(rows),
        "answered_200": sum(r["status"] == 200 for r in rows),
        "routes": routes,
        "fallback": [
            {"i": r["i"], "reason": r["fallback_reason"]} for r in rows if r["route"] == "fallback"
        ],
        "killed_request": rows[args.kill_at],
        "killed_worker_pid": killed_pid,
        "new_worker_pids": [p.pid for p in after_workers],
        "worker_restart_s_server_log": back,
        "first_llm_answer_after_kill_s": first_llm and first_llm["done_after_kill_s"],
        "first_llm_answer_request": first_llm and first_llm["i"],
        "metrics_llm_fallbacks": fallback_lines,
        "server_exit_code": proc.returncode,
        "workers_running_15_s_after_server_exit": left,
        "workers_exited_within_s": None if left else exit_s,
        "latency_ms": {
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max()),
        },
        "targets": {
            "answered_200": "100 of 100",
            "in_flight_marked_fallback": rows[args.kill_at]["route"] == "fallback",
            "worker_back_within_5_s": bool(back) and back[0] <= 5.0,
        },
        "rows": rows,
    }
    text = json.dumps(out, indent=2)
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
