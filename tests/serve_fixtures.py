"""Shared fixtures for the service tests: a small synthetic app on a temp SQLite file.

Loaded by the service test modules through ``pytest_plugins = ("serve_fixtures",)``.
"""

from __future__ import annotations

import base64
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pg_server import postgres_server
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
        # The loop-lag signal refuses whatever arrives while the loop is late, and on a
        # shared test machine the loop is late by chance; tests of that signal set it.
        overrides.setdefault("max_loop_lag_ms", 0)
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


@pytest.fixture(scope="session")
def postgres_url():
    with postgres_server() as (url, reason):
        if url is None:
            msg = f"PostgreSQL tests SKIPPED: no server could start ({reason})"
            warnings.warn(msg, stacklevel=1)
            print(f"\n*** {msg} ***")
            pytest.skip(msg)
        yield url


@pytest.fixture
def fresh_postgres(postgres_url):
    """A new database per test on the session's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'parity.db'}"
    return request.getfixturevalue("fresh_postgres")
