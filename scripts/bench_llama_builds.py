"""Prompt-eval speed of two llama-cpp-python builds on the same model and prompt: the
installed (portable: AVX2, no AVX-512) build and another one installed under ``--other-site``
(for instance a build with native CPU detection, made outside the venv as BENCHMARKS.md
describes). Each build runs in its own subprocesses (a build that crashes on this CPU is
recorded with its signal, not a dead benchmark), in alternating rounds so that a change in
machine load hits both.

    python scripts/bench_llama_builds.py --other-site /tmp/llama-native-site \\
        --other-name native --rounds 4 --repeats 5 \\
        --out docs/bench/llama_portable_vs_native.json

Per build: the CPU features llama.cpp was compiled with, prompt tokens/s (median over all
timed repeats; each repeat evaluates the whole prompt, no prefix reuse), and the next-token
logits, compared across builds (same top token, largest absolute difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PROMPT_BODY = (
    "A customer bought: cordless drill; 18V battery pack; wood screws 4x40; spirit level; "
    "masking tape. Candidates: A. hammer drill bits, B. stud finder, C. sanding sheets, "
    "D. safety glasses, E. extension cable, F. clamp set. Which one next? "
)


def child(threads: int, repeats: int, n_body: int) -> dict[str, Any]:
    """In the subprocess: load SmolLM2 in process, time ``repeats`` full prompt evals."""
    import llama_cpp

    from frugalrec.llm.runtime import load_llm

    llm = load_llm("smollm2-135m", threads=threads, in_process=True)
    prompt = llm.chat_prompt(PROMPT_BODY * n_body)
    n_tokens = llm.count_tokens(prompt)
    ms = []
    logits = None
    for _ in range(repeats + 1):  # the first is a warm-up
        llm.reset_cache()
        t0 = time.perf_counter()
        logits = llm.logits_for_next_token([prompt])[0]
        ms.append((time.perf_counter() - t0) * 1e3)
    assert logits is not None
    return {
        "llama_cpp_file": llama_cpp.__file__,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "prompt_tokens": n_tokens,
        "ms": ms[1:],
        "warmup_ms": ms[0],
        "top_token": int(np.argmax(logits)),
        "logits_head": logits[:4096].tolist(),
    }


def run_build(site: str | None, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (site, src, env.get("PYTHONPATH")) if p]  # the other build first
    )
    cmd = [sys.executable, __file__, "--child", str(args.threads), str(args.repeats),
           str(args.body)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        import signal

        rc = proc.returncode
        what = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}"
        return {"crashed": what, "stderr_tail": proc.stderr[-2000:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")), "")
    return {"cpu": model, "cores": os.cpu_count(), "load_avg": list(os.getloadavg())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other-site", required=True, help="folder holding the other llama_cpp")
    ap.add_argument("--other-name", default="native")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--body", type=int, default=4, help="prompt body repeats (~300 tokens)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    names = {"portable": None, args.other_name: args.other_site}
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    before = _machine()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for r in range(args.rounds):
        order = list(names) if r % 2 == 0 else list(reversed(names))
        for name in order:
            res = run_build(names[name], args)
            runs[name].append(res)
            tail = res.get("crashed") or f"{np.median(res['ms']):.1f} ms"
            print(f"round {r + 1}/{args.rounds} {name}: {tail}", flush=True)
    out: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "started_utc": started,
        "machine_before": before,
        "machine_after": _machine(),
        "threads": args.threads,
        "model": "smollm2-135m (Q4_1)",
        "builds": {},
    }
    heads = {}
    for name, rs in runs.items():
        ok = [r for r in rs if "crashed" not in r]
        entry: dict[str, Any] = {"runs": len(rs), "crashed_runs": [r["crashed"] for r in rs
                                                                  if "crashed" in r]}  # fmt: skip
        if ok:
            ms = np.concatenate([r["ms"] for r in ok])
            tok = ok[0]["prompt_tokens"]
            entry |= {
                "llama_cpp_file": ok[0]["llama_cpp_file"],
                "system_info": ok[0]["system_info"],
                "prompt_tokens": tok,
                "prompt_eval_ms_median": float(np.median(ms)),
                "prompt_eval_ms_p10_p90": [
                    float(np.percentile(ms, 10)),
                    float(np.percentile(ms, 90)),
                ],
                "tokens_per_s_median": float(tok / np.median(ms) * 1e3),
                "round_medians_ms": [float(np.median(r["ms"])) for r in ok],
                "top_token": ok[0]["top_token"],
            }
            heads[name] = np.asarray(ok[0]["logits_head"], dtype=np.float32)
        else:
            entry["stderr_tail"] = rs[-1].get("stderr_tail", "")
        out["builds"][name] = entry
    b = out["builds"]
    if len(heads) == 2 and all("tokens_per_s_median" in e for e in b.values()):
        other = b[args.other_name]
        out["other_over_portable_speed"] = (
            other["tokens_per_s_median"] / b["portable"]["tokens_per_s_median"]
        )
        h = list(heads.values())
        out["logits_max_abs_diff_first_4096"] = float(np.abs(h[0] - h[1]).max())
        out["same_top_token"] = b["portable"]["top_token"] == other["top_token"]
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        res = child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(res))
        sys.exit(0)
    sys.exit(main())
