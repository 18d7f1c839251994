"""The compiled open-loop engine of the load test (``loadgen.c``): build once, run, read back.

A Python generator on one core falls 100+ ms behind its schedule at a few thousand requests
per second, and since latencies are timed from the scheduled send, that lateness was charged
to the server. ``loadgen.c`` keeps the schedule to tens of microseconds on one core; Python
still decides what is sent (the mix, the users, the event ids, which events are retried)
and judges the answers. The binary is compiled with ``cc -O2`` and no CPU-specific flags
into the cache, keyed by the source's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frugalrec._io import cache_dir

SOURCE = Path(__file__).with_name("loadgen.c")
RESEND = 1


class LoadgenUnavailable(RuntimeError):
    """No C compiler, or the build failed: the caller falls back to the Python engine."""


def binary() -> Path:
    """Path of the built generator (compiled on first use; cached by source hash)."""
    src = SOURCE.read_bytes()
    tag = hashlib.sha256(src).hexdigest()[:12]
    out = cache_dir("bin") / f"loadgen-{tag}"
    if out.is_file() and os.access(out, os.X_OK):
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise LoadgenUnavailable("no C compiler (cc) found")
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    # -O2 only: no -march, so the binary runs on any x86-64 this cache is copied to.
    proc = subprocess.run(
        [cc, "-O2", "-std=gnu99", "-o", str(tmp), str(SOURCE)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise LoadgenUnavailable(f"building loadgen failed: {proc.stderr[-1000:]}")
    os.replace(tmp, out)
    return out


@dataclass
class Request:
    """One scheduled request: ``due_s`` after the start, raw HTTP/1.1 bytes; ``resend``
    sends it a second time right after its first answer (a client's retry)."""

    due_s: float
    raw: bytes
    resend: bool = False


def http_request(
    method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """Raw HTTP/1.1 keep-alive request bytes."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if body:
        head.append("Content-Type: application/json")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


ANSWER = np.dtype(
    [
        ("idx", np.int64),
        ("attempt", np.int8),
        ("status", np.int16),
        ("latency_ms", np.float64),
        ("send_late_ms", np.float64),
        ("server_total_ms", np.float64),
    ]
)


def run(
    host: str,
    port: int,
    requests: list[Request],
    max_conns: int = 1024,
    preopen: int = 64,
    timeout_ms: int = 10_000,
    cpus: set[int] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Send ``requests`` on schedule; returns (answers, summary). ``answers`` is a structured
    array (``ANSWER``), one row per answer (a retried request has two, attempt 0 and 1);
    latency from the scheduled send (attempt 0) or the retry's send (attempt 1), status 0
    for a transport error or a timeout. ``cpus`` pins the generator."""
    exe = binary()
    with tempfile.TemporaryDirectory(prefix="frugalrec-loadgen-") as tmp:
        req_path, out_path = Path(tmp) / "requests.bin", Path(tmp) / "answers.txt"
        with open(req_path, "wb") as f:
            for r in requests:
                f.write(
                    struct.pack("<IQI", RESEND if r.resend else 0, int(r.due_s * 1e9), len(r.raw))
                )
                f.write(r.raw)
        cmd = [str(exe), host, str(port), str(req_path), str(out_path), str(max_conns),
               str(preopen), str(timeout_ms)]  # fmt: skip
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"loadgen failed ({proc.returncode}): {proc.stderr[-2000:]}")
        summary = json.loads(proc.stderr.strip().splitlines()[-1])
        rows = np.loadtxt(out_path, ndmin=2) if out_path.stat().st_size else np.zeros((0, 6))
    answers = np.zeros(len(rows), dtype=ANSWER)
    for j, name in enumerate(ANSWER.names or ()):
        answers[name] = rows[:, j] if len(rows) else []
    answers["latency_ms"] /= 1e3
    answers["send_late_ms"] /= 1e3
    return answers, summary
