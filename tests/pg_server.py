"""A throw-away PostgreSQL server for tests: initdb + pg_ctl into a temp dir, free port.

Uses the Debian postgresql package's binaries. As root the server runs as the ``postgres``
user (PostgreSQL refuses to run as root). Returns None, with the reason, when no server can
start; callers skip loudly.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[tuple[str | None, str]]:
    """Yield (url, "") for a running server, or (None, reason) when none can start."""
    bindir = _bindir()
    if bindir is None:
        yield None, "no PostgreSQL binaries (apt-get install postgresql)"
        return
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            yield None, "running as root without runuser"
            return
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            yield None, "running as root and no 'postgres' user exists"
            return
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="frugalrec-pg-"))
    if prefix:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    started = False
    try:
        init = subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if init.returncode != 0:
            yield None, f"initdb failed: {init.stderr.strip()[-300:]}"
            return
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on"
        start = subprocess.run(
            [
                *prefix,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        if start.returncode != 0:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            yield None, f"pg_ctl start failed: {start.stderr.strip()} {log[-300:]}"
            return
        started = True
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", ""
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
