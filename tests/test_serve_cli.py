"""``frugalrec serve`` as a real process: starts with only a dataset, tells how to set a key,
serves the page and the API; settings read keys from the environment or a key file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from frugalrec.serve.settings import ServeSettings, hash_key
from serve_helpers import API_KEY

pytest_plugins = ("serve_fixtures",)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command_starts_and_explains_keys(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGALREC_API_KEY")}
    env["FRUGALREC_CACHE"] = str(tmp_path / "cache")  # default store lands here
    cmd = [
        sys.executable,
        "-c",
        "import sys; from frugalrec.cli import main; sys.exit(main())",
        "serve",
        "--dataset",
        "synthetic",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        assert "<label" in httpx.get(base + "/").text
        assert httpx.get(base + "/v1/users/u1/recommendations").status_code == 200
        r = httpx.post(
            base + "/v1/events",
            json={"user_id": "u1", "item_id": "i1", "type": "like"},
            headers={"Authorization": "Bearer whatever-key-123456"},
        )
        assert r.status_code == 403
        assert (tmp_path / "cache" / "serve" / "frugalrec.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "FRUGALREC_API_KEYS" in err and "no API key configured" in err
    assert "u1" not in err  # no access log: paths carry user ids


def test_settings_read_keys_from_env_and_key_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FRUGALREC_API_KEYS", f"{API_KEY}, second-key-abcdefghijk")
    s = ServeSettings.from_environment()
    assert s.api_key_hashes == {hash_key(API_KEY), hash_key("second-key-abcdefghijk")}
    monkeypatch.delenv("FRUGALREC_API_KEYS")
    key_file = tmp_path / "keys"
    key_file.write_text("# service keys\nfile-key-0123456789abc\n\n")
    monkeypatch.setenv("FRUGALREC_API_KEY_FILE", str(key_file))
    assert ServeSettings.from_environment().api_key_hashes == {hash_key("file-key-0123456789abc")}
    with pytest.raises(ValueError, match="at least 16"):
        ServeSettings.from_environment(api_keys=["short"])
    with pytest.raises(ValueError, match="store_url"):
        ServeSettings(store_url="mysql://nope")
