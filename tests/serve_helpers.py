"""Constants and helpers for the service tests (fixtures live in serve_fixtures.py)."""

from __future__ import annotations

from typing import Any

API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def item_ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [it["item_id"] for it in response.json()["items"]]
