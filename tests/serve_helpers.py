"""Constants and helpers for the service tests (fixtures live in serve_fixtures.py)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def item_ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [it["item_id"] for it in response.json()["items"]]


def wait_retrain(c: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the running retrain until it ends; assert it is done and return its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = c.get("/v1/admin/retrain", headers=AUTH).json()
        if status["state"] in ("done", "failed"):
            assert status["state"] == "done", status
            return status
        time.sleep(0.05)
    raise AssertionError("retrain did not finish")


def retrain(c: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Start a retrain (202) and wait for it: :func:`wait_retrain`."""
    assert c.post("/v1/admin/retrain", headers=AUTH).status_code == 202
    return wait_retrain(c, timeout)


class ServerThread:
    """The real app under uvicorn on a free port, in a thread, on the CLI's event loop."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        from frugalrec.cli.serve import UVICORN_LOOP
        from frugalrec.serve.app import http_protocol

        # As `frugalrec serve` runs it: the same loop and the shedding protocol.
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            loop=UVICORN_LOOP,
            http=http_protocol(app),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
