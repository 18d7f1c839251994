"""Start ``frugalrec serve`` as a real process, for the fault and privacy-audit tests."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

API_KEY = "fault-key-0123456789abcdef"
PSEUDONYM_KEY = base64.urlsafe_b64encode(b"f" * 32).decode("ascii")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FRUGALREC_API_KEYS=API_KEY,
        FRUGALREC_PSEUDONYM_KEY=PSEUDONYM_KEY,
        FRUGALREC_CACHE=str(tmp_path / "cache"),
        OPENBLAS_NUM_THREADS="1",
        FRUGALREC_THREADS="1",
    )
    return env


def start_server(
    tmp_path: Path,
    store_url: str,
    log_name: str,
    dataset: str = "synthetic",
    log_level: str = "warning",
) -> tuple[subprocess.Popen, str]:
    """``frugalrec serve`` as a subprocess (caches under ``tmp_path/cache``, output to
    ``tmp_path/log_name``); returns once /healthz answers."""
    port = _free_port()
    cmd = [
        sys.executable, "-c", "from frugalrec.cli import main; raise SystemExit(main())",
        "serve", "--dataset", dataset, "--store", store_url, "--port", str(port),
        "--log-level", log_level,
        "--rate-limit", "100000", "--rate-burst", "100000",
    ]  # fmt: skip
    with open(tmp_path / log_name, "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / log_name).read_text(errors="replace")[-2000:])
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start within 120 s")
