"""Shared fixtures for the service tests: a small synthetic app on a temp SQLite file.

Loaded by the service test modules through ``pytest_plugins = ("serve_fixtures",)``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_helpers import API_KEY


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FRUGALREC_PSEUDONYM_KEY", base64.urlsafe_b64encode(b"k" * 32).decode("ascii")
    )
    monkeypatch.delenv("FRUGALREC_API_KEYS", raising=False)
    monkeypatch.delenv("FRUGALREC_API_KEY_FILE", raising=False)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_client(llm=None, **settings)`` -> an entered TestClient on the synthetic
    dataset (``llm``: the model of ``rerank="llm"``, e.g. a FakeLLM)."""
    from fastapi.testclient import TestClient

    from frugalrec.serve.app import create_app
    from frugalrec.serve.settings import ServeSettings

    clients: list[Any] = []

    def make(api_keys: list[str] | None = None, llm: Any = None, **overrides: Any) -> Any:
        overrides.setdefault("dataset", "synthetic")
        overrides.setdefault("store_url", f"sqlite:///{tmp_path / 'store.db'}")
        overrides.setdefault("model_dir", tmp_path / "models")
        settings = ServeSettings.from_environment(
            api_keys=[API_KEY] if api_keys is None else api_keys, **overrides
        )
        client = TestClient(create_app(settings, llm=llm), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)
