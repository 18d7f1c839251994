"""The service against generated input: schemathesis over its own OpenAPI, and a fuzzed
event schema. Zero server errors (5xx) is the target; every rejection is a 4xx JSON body."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("schemathesis")

API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Per operation (hypothesis stops early where an operation's input space is small):
# 12 operations give about 700 generated requests (target: at least 500).
EXAMPLES_PER_OPERATION = 80


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FRUGALREC_PSEUDONYM_KEY", base64.urlsafe_b64encode(b"k" * 32).decode("ascii")
    )


def _app(tmp_path: Path):
    from frugalrec.serve.app import create_app
    from frugalrec.serve.settings import ServeSettings

    s = ServeSettings.from_environment(
        api_keys=[API_KEY],
        dataset="synthetic",
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        # The rate limiter answers 429 by design; lift it so requests reach the handlers.
        rate_limit_per_s=1e9,
        rate_limit_burst=10**9,
        # Nor shed by a loop that a shared machine made late by chance.
        max_loop_lag_ms=0,
    )
    return create_app(s)


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    import schemathesis

    app = _app(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 8, [f"{o.method} {o.path}" for o in operations]
    for op in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            # Three in four with a valid key (reaches the handlers), the rest without.
            headers = AUTH if statuses.total() % 4 else {}
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            elif response.status_code >= 400:
                body = response.json()
                assert "error" in body or "detail" in body, body

        run()
    total = statuses.total()
    print(f"schemathesis: {total} requests, status counts {dict(sorted(statuses.items()))}")
    assert total >= 500
    assert failures == []


# ---- the event schema, fuzzed directly ------------------------------------------------------
_ids = st.one_of(st.text(max_size=140), st.integers(), st.none(), st.just(""))
_values = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5)
)
event_dicts = st.fixed_dictionaries(
    {},
    optional={
        "user_id": _ids,
        "item_id": _ids,
        "type": st.one_of(
            st.sampled_from(["view", "click", "like", "dislike", "rate"]), st.text(max_size=6)
        ),
        "value": _values,
        "ts": _values,
        "extra": st.integers(),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(
        event_dicts, st.fixed_dictionaries({"events": st.lists(event_dicts, max_size=4)})
    )
)
def test_event_schema_accepts_or_names_the_field(body: dict) -> None:
    from pydantic import TypeAdapter, ValidationError

    from frugalrec.serve.schemas import EventBatchIn, EventIn, EventsBody

    adapter = TypeAdapter(EventsBody)
    try:
        parsed = adapter.validate_python(body)
    except ValidationError as exc:
        for err in exc.errors():
            assert err["loc"], err  # every error names where it is
        return
    events = parsed.events if isinstance(parsed, EventBatchIn) else [parsed]
    for e in events:
        assert isinstance(e, EventIn)
        assert 1 <= len(e.user_id) <= 128 and 1 <= len(e.item_id) <= 128
        if e.type == "rate":
            assert e.value is not None and 0 <= e.value <= 5
        if e.ts is not None:
            assert e.ts >= 0
