"""End-to-end: the page in headless Chromium (Debian ``chromium`` driven by playwright).

Drives it by keyboard: pick a user, see recommendations with explanations and cost, dislike
one and watch it leave the list, ask in words, read the live cost panel; takes a screenshot.
``FRUGALREC_SCREENSHOT=docs/serve_page.png`` also writes it there (the README's image;
``FRUGALREC_PAGE_DATASET=ml-100k`` for real titles).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from serve_helpers import API_KEY

pytest_plugins = ("serve_fixtures",)

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(tmp_path):
    import uvicorn

    from frugalrec.serve.app import create_app
    from frugalrec.serve.settings import ServeSettings

    settings = ServeSettings.from_environment(
        api_keys=[API_KEY],
        dataset=os.environ.get("FRUGALREC_PAGE_DATASET", "synthetic"),
        store_url=f"sqlite:///{tmp_path / 'page.db'}",
        model_dir=tmp_path / "models",
        max_loop_lag_ms=0,  # a late loop on a shared machine must not refuse the page
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_page_end_to_end_in_chromium(live_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: run `make install` (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(live_server + "/")
        expect = sync_api.expect
        expect.set_options(timeout=20_000)  # a busy shared machine, not a slow page
        user = page.get_by_label("User id")
        expect(user).not_to_have_value("", timeout=10_000)  # pre-filled from the samples
        page.get_by_text("API key (needed for like / dislike)").click()
        page.get_by_label("API key", exact=True).fill(API_KEY)
        page.get_by_label("API key", exact=True).dispatch_event("change")
        user.focus()
        page.keyboard.press("Enter")  # submit by keyboard
        items = page.locator("#recs li")
        expect(items).to_have_count(10)
        expect(page.locator("#recs-cost")).to_contain_text("tier cheap")
        expect(items.first.locator(".why")).to_contain_text("Recommended because you liked")
        first_id = items.first.get_attribute("data-item")
        first_title = items.first.locator(".title").inner_text()
        dislike = page.get_by_role("button", name=f"Dislike {first_title}", exact=True)
        dislike.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("Disliked")
        expect(page.locator(f'#recs li[data-item="{first_id}"]')).to_have_count(0)
        expect(items).to_have_count(10)
        page.get_by_label("Request").fill("a comedy, no horror")
        page.keyboard.press("Enter")
        expect(page.locator("#recs-for")).to_contain_text("a comedy, no horror")
        expect(page.locator("#recs-cost")).to_contain_text("query-rules")
        for genres in page.locator("#recs li .meta").all_inner_texts():
            assert "Horror" not in genres
        expect(page.locator("#cost-table tbody tr").first).to_be_visible(timeout=5_000)
        expect(page.locator("#cost-table")).to_contain_text("cheap")
        shot = tmp_path / "serve_page.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    target = os.environ.get("FRUGALREC_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
