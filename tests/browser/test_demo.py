"""The demo a new user meets (issue 13.11), in a real browser (Debian chromium via Playwright), 1366×900.

Against the embedded server on the seeded demo: the home page's demo link makes a new participant at each visit; its
Prolific-style form arrives as Prolific sends participants, and the same id comes back to where it left off; the
simulated assistant's reply is rendered Markdown (bold, a list). Screenshots: test-artifacts/browser/demo-*.png.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import CHROMIUM, continue_to_items

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
]
VIEWPORT = {"width": 1366, "height": 900}
TRIAL_URL = re.compile(r"/s/p/([^/]+)/item/(\d+)/$")
WAIT_MS = 20_000


@pytest.fixture
def page(chromium):
    """A fresh browser (no cookies) for each use: a new visitor."""
    contexts = []

    def new_page():
        context = chromium.new_context(viewport=VIEWPORT)
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        return pg

    yield new_page
    for context in contexts:
        context.close()


def test_the_demo_link_makes_a_new_participant_at_each_visit(browser_server, page, artifacts):
    tokens = []
    for _ in range(2):
        pg = page()
        pg.goto(browser_server.base_url + "/")
        pg.click("text=Start the demo as a participant")
        pg.click("#consent-yes")
        continue_to_items(pg)
        pg.wait_for_url(TRIAL_URL)
        tokens.append(TRIAL_URL.search(pg.url).group(1))
    pg.screenshot(path=str(artifacts / "demo-first-item.png"))
    assert tokens[0] != tokens[1]


def test_the_prolific_style_form_resumes_the_same_id(browser_server, page, artifacts):
    pg = page()
    pg.goto(browser_server.base_url + "/")
    pg.fill("#demo-pid", "browser-7")
    pg.screenshot(path=str(artifacts / "demo-home.png"), full_page=True)
    pg.click("text=Start as this participant")
    assert "PROLIFIC_PID=browser-7&STUDY_ID=demo-study&SESSION_ID=demo-session" in pg.url
    pg.click("#consent-yes")
    continue_to_items(pg)
    pg.wait_for_url(TRIAL_URL)
    first = TRIAL_URL.search(pg.url).group(1)

    again = page()  # later, from another browser: back where they were
    again.goto(browser_server.base_url + "/")
    again.fill("#demo-pid", "browser-7")
    again.click("text=Start as this participant")
    assert "Welcome back" in again.inner_text("h1")
    again.click("#consent-yes")
    continue_to_items(again)
    again.wait_for_url(TRIAL_URL)
    assert TRIAL_URL.search(again.url).group(1) == first
    n = browser_server.query(
        "from oversight.core.models import Participant\n"
        "result = Participant.objects.filter(external_id='prolific:browser-7').count()"
    )
    assert n == 1


def test_the_simulated_assistant_s_reply_is_rendered_markdown(browser_server, page, artifacts):
    pg = page()
    pg.goto(browser_server.base_url + "/s/demo/")
    pg.click("#consent-yes")
    continue_to_items(pg)
    pg.wait_for_url(TRIAL_URL)  # the demo's order is fixed, assisted first: the first item has the chat
    pg.wait_for_selector("#chat-connecting", state="detached")
    pg.wait_for_function("() => !document.getElementById('chat-send').disabled")
    pg.fill("#chat-input", "Which answer is right?")
    pg.click("#chat-send")
    reply = pg.locator(".msg.assistant:not(.streaming) .body").last
    reply.locator("strong").first.wait_for()
    assert re.fullmatch(r"\([A-D]\) .+", reply.locator("strong").first.inner_text())
    assert reply.locator("ul > li").count() == 2  # why this option, and which other one is tempting
    assert "**" not in reply.inner_text()
    pg.screenshot(path=str(artifacts / "demo-chat-markdown.png"))
