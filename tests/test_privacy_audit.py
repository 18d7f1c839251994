"""Privacy audit: after ingesting ml-100k plus a PII-laden fixture through the running
service, no raw user id and no seeded PII string is found in the store, logs or caches."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import httpx
import pytest

from robustness_helpers import API_KEY, PSEUDONYM_KEY, start_server

# Distinctive forms, so a grep cannot miss them or hit something else.
RAW_USER = "user-raw-{}"
PII = {
    "email": "jane.doe.audit@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "token_url": "https://example.com/reset?token=s3cr3tT0k3nAudit",
    "address": "221B Baker Street",
}
QUERIES = [
    "funny movies from the 90s, write to {email}",
    "call me on {phone} about westerns",
    "my card is {card}, something romantic",
    "refund to {iban} and show me thrillers",
    "I clicked {token_url}, any sci-fi?",
    "deliver to {address}: kids films",
]


def _ml100k_into(cache: Path) -> None:
    """Copy the verified ml-100k files into the test's own cache dir (no download)."""
    from frugalrec.data.movielens import ml100k_dir

    src = ml100k_dir()
    dst = cache / "datasets" / "ml-100k"
    dst.mkdir(parents=True)
    for name in ("ml-100k.inter", "ml-100k.item", "ml-100k.user"):
        shutil.copy(src / name, dst / name)


def find_leaks(root: Path, needles: dict[str, bytes]) -> list[str]:
    """``file: name`` for every needle found in any file under ``root`` (raw bytes, so
    database pages, WAL frames, npz arrays and logs are all searched)."""
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {n}" for n, s in needles.items() if s in data]
    return hits


@pytest.mark.slow
def test_no_raw_id_or_pii_reaches_store_logs_or_caches(tmp_path: Path) -> None:
    from frugalrec.data.movielens import load_ml100k
    from frugalrec.privacy.pseudonyms import Pseudonymiser

    ds = load_ml100k()
    root = tmp_path / "run"
    _ml100k_into(root / "cache")
    store_url = f"sqlite:///{root / 'store' / 'frugalrec.db'}"
    proc, base = start_server(root, store_url, "serve.log", dataset="ml-100k", log_level="debug")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    users = [str(u) for u in ds.users_vocab.external(ds.user[:5000])]
    items = [str(i) for i in ds.items_vocab.external(ds.item[:5000])]
    try:
        with httpx.Client(base_url=base, timeout=60.0) as c:
            # ml-100k's first 5,000 ratings as events, under distinctive raw ids.
            for start in range(0, 5000, 500):
                batch = [
                    {"user_id": RAW_USER.format(u), "item_id": i, "type": "rate", "value": 4.0}
                    for u, i in zip(
                        users[start : start + 500], items[start : start + 500], strict=True
                    )
                ]
                r = c.post("/v1/events", json={"events": batch}, headers=auth)
                assert r.status_code == 201, r.text
            # The PII fixture: queries carrying PII, from raw ids; reads; one forget.
            for n, q in enumerate(QUERIES):
                text = q.format(**PII)
                r = c.post("/v1/query", json={"text": text, "user_id": RAW_USER.format(n)})
                assert r.status_code == 200, r.text
                for s in PII.values():
                    assert s not in r.json()["text"]
                r = c.get(f"/v1/users/{RAW_USER.format(n)}/recommendations?explain=true")
                assert r.status_code == 200, r.text
            # A bad event naming a PII-laden id is rejected (4xx) and must not be logged.
            r = c.post(
                "/v1/events",
                json={"user_id": PII["email"], "item_id": "no-such-item", "type": "like"},
                headers=auth,
            )
            assert r.status_code == 422
            assert c.delete(f"/v1/users/{RAW_USER.format(1)}", headers=auth).status_code == 200
            assert c.post("/v1/admin/retrain", headers=auth).status_code == 202
            for _ in range(600):
                status = c.get("/v1/admin/retrain", headers=auth).json()
                if status["state"] != "running":
                    break
                time.sleep(0.1)
            assert status["state"] == "done", status
            metrics = c.get("/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    needles = {name: s.encode() for name, s in PII.items()}
    needles["raw user id"] = b"user-raw-"
    assert "user-raw-" not in metrics
    store_files = list((root / "store").rglob("*"))
    assert any(p.name.endswith(".db") for p in store_files)
    assert any(p.name == "arrays.npz" for p in store_files)  # model versions were written
    # Control: the search does find what is there (pseudonyms in the store and the model).
    p0 = Pseudonymiser(base64.urlsafe_b64decode(PSEUDONYM_KEY)).pseudonym(RAW_USER.format(users[0]))
    found = find_leaks(root, {"pseudonym": p0.encode()})
    assert any(".db" in f for f in found) and any("users.json" in f for f in found), found
    leaks = find_leaks(root, needles)
    print(f"privacy audit: {sum(1 for p in root.rglob('*') if p.is_file())} files searched, "
          f"{len(leaks)} leaks")  # fmt: skip
    assert leaks == []
