"""Real-browser fixtures: the live daphne server (tests/live_server.py) and Debian's chromium via Playwright."""

import re
from pathlib import Path

import pytest

from tests.live_server import REPO, LiveServer, live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"

# Short limits keep the timeout step under 25 s; the completion URL is the live server's own /healthz, so the
# redirect back to "Prolific" is checkable.
SEED_ARGS = (
    "--mmlu-time-limit",
    "20",
    "--quality-time-limit",
    "25",
    "--prolific-url",
    "http://127.0.0.1:{port}/healthz",
)


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory) -> LiveServer:
    with live_server(tmp_path_factory.mktemp("browser-server"), seed_args=SEED_ARGS) as server:
        yield server


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


INTRODUCTION_URL = re.compile(r"/s/p/[^/]+/(instructions|part/\d+)$")


def continue_to_items(page, *, limit: int = 5) -> None:
    """Pass the introduction pages (the study's instructions, a block's) with their button, as a participant does,
    until the page is something else (an item, the check, the done page)."""
    page.wait_for_url(lambda u: "/s/p/" in u)  # past the consent page (its form is answered in place)
    for _ in range(limit):
        page.wait_for_selector("main h1")
        url = page.url
        if not INTRODUCTION_URL.search(url):
            return
        page.click("#continue")
        page.wait_for_url(lambda u, before=url: u != before)
    raise AssertionError(f"still on an introduction page: {page.url}")
