"""The steps between consent and the items, one round trip per answer, and the layout, in a real browser.

A study with everything (instructions, a comprehension check, two unaided parts with their instructions, MMLU and
QuALITY items) and one with a short clock are added to the demo on a live daphne server. Pages without the chat are
swapped in place by htmx: the tests check that an answer is one request, that the address bar follows, that back
and refresh land where the server says, and that the timer and Submit stay in view at 1366×900 and 390×844.
Screenshots of each page at both sizes go to test-artifacts/browser/steps-*.png.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import CHROMIUM, SEED_ARGS
from tests.live_server import LiveServer, live_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
]

TRIAL_URL = re.compile(r"/s/p/[^/]+/item/(\d+)/$")
WIDE, PHONE = (1366, 900), (390, 844)
CHECK = [
    {"question": "May you use a search engine?", "options": ["Yes", "No"], "answer": 1},
    {
        "question": "What happens when the timer reaches zero?",
        "options": ["Nothing", "The selected answer is submitted", "The study ends"],
        "answer": 1,
    },
]
SETUP = f"""
from oversight.banks.models import Bank
from oversight.core.models import Condition, Study, Task
from oversight.core.services.studies import study_launch
mmlu, quality = Bank.objects.get(name="Demo MMLU"), Bank.objects.get(name="Demo QuALITY")
steps = Study.objects.create(
    slug="steps", title="Steps: instructions, a check and two parts", consent_text="Please agree.",
    instructions="Answer each question on your own. Do not use a search engine.\\n\\nAt zero the selection is sent.",
    comprehension_questions={CHECK!r}, comprehension_max_attempts=2,
    completion_code="STEPS-DONE", screenout_code="STEPS-OUT", sample_seed=5)
Condition.objects.create(study=steps, kind="unaided", name="First", position=0,
    instructions="Part one: take your time.")
Condition.objects.create(study=steps, kind="unaided", name="Second", position=1,
    instructions="Part two: the same again, on new questions.")
Task.objects.create(study=steps, bank=mmlu, name="MMLU", sample_size=2, time_limit_s=120, position=0)
Task.objects.create(study=steps, bank=quality, name="QuALITY", sample_size=1, time_limit_s=300, position=1)
study_launch(study=steps)
clock = Study.objects.create(slug="clock", title="A short clock", consent_text="Please agree.",
    completion_code="CLOCK-DONE", sample_seed=3)
Condition.objects.create(study=clock, kind="unaided", name="Alone", position=0)
Task.objects.create(study=clock, bank=mmlu, name="MMLU", sample_size=3, time_limit_s=4, position=0)
study_launch(study=clock)
result = True
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    with live_server(tmp_path_factory.mktemp("steps-server"), seed_args=SEED_ARGS) as running:
        running.query(SETUP)
        yield running


class Visit:
    """One participant's browser tab, with what it sent and any script error."""

    def __init__(self, chromium, server: LiveServer, size=WIDE, *, javascript: bool = True):
        self.server = server
        self.context = chromium.new_context(
            viewport={"width": size[0], "height": size[1]}, java_script_enabled=javascript
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "request",
            lambda r: (
                self.requests.append((r.method, r.url.removeprefix(server.base_url)))
                if "/static/" not in r.url
                else None
            ),
        )

    def close(self):
        self.context.close()

    def join(self, slug: str, pid: str) -> None:
        self.page.goto(f"{self.server.base_url}/s/{slug}/?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID={pid}")
        self.page.click("#consent-yes")
        self.page.wait_for_url(lambda u: "/s/p/" in u)
        self.page.wait_for_selector("main h1")

    def go_on(self, selector: str = "#continue") -> None:
        url = self.page.url
        self.page.click(selector)
        self.page.wait_for_url(lambda u, before=url: u != before)
        self.page.wait_for_selector("main h1")

    def answer(self, choice: int = 0) -> None:
        page = self.page
        with page.expect_response(lambda r: r.url.endswith("/select")):
            page.check(f"input[name=choice][value='{choice}']")
        with page.expect_response(lambda r: r.url.endswith("/select")):
            page.check("input[name=confidence][value='80']")
        self.go_on("#submit")

    def shot(self, name: str, artifacts, size) -> None:
        self.page.screenshot(path=str(artifacts / f"steps-{name}-{size[0]}x{size[1]}.png"))

    def same_document(self) -> bool:
        return self.page.evaluate("window.__sameDocument === true")

    def mark_document(self) -> None:
        self.page.evaluate("window.__sameDocument = true")


def in_view(page, selector: str) -> bool:
    """Entirely inside the window, as it is now (no scrolling)."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] and box["x"] >= 0


def test_instructions_the_check_and_the_parts_come_in_order_each_page_in_one_round_trip(chromium, server, artifacts):
    visit = Visit(chromium, server)
    page = visit.page
    try:
        visit.join("steps", "steps-1")
        assert page.url.endswith("/instructions")
        assert page.inner_text("h1") == "Instructions" and "Do not use a search engine." in page.inner_text("main")
        visit.shot("instructions", artifacts, WIDE)
        visit.mark_document()
        visit.go_on()
        assert page.url.endswith("/check") and visit.same_document()

        # A wrong attempt: told how many are wrong, with the instructions open again and one attempt left.
        page.check("input[name=q0][value='0']")
        page.check("input[name=q1][value='1']")
        page.click("#continue")
        page.wait_for_selector("#check-result")
        assert "1 of 2 answers is not right yet" in page.inner_text("#check-result")
        assert "Attempts left: 1 of 2" in page.inner_text("#attempts-left")
        assert page.is_visible("details.instructions-again[open]") and page.url.endswith("/check")
        visit.shot("check", artifacts, WIDE)
        page.check("input[name=q0][value='1']")
        visit.go_on()

        assert page.url.endswith("/part/1") and visit.same_document()
        assert page.inner_text("h1") == "Part 1 of 2 — On your own"
        assert "Part one: take your time." in page.inner_text("main")
        visit.shot("part-1", artifacts, WIDE)
        visit.go_on()

        # Part 1's items: each answer is one request, the address bar follows, no page is reloaded.
        seen = []
        while (m := TRIAL_URL.search(page.url)) is not None:
            seen.append(int(m.group(1)))
            visit.requests.clear()
            visit.answer(choice=1)
            sent = [r for r in visit.requests if not r[1].endswith("/select")]
            assert len(sent) == 1 and sent[0][0] == "POST" and sent[0][1].endswith("/submit"), sent
        assert seen == [0, 1, 2] and visit.same_document()

        assert page.url.endswith("/part/2")
        assert page.inner_text("#transition") == "Part 1 of 2 done."
        assert page.inner_text("h1") == "Next: Part 2 of 2 — On your own"
        visit.shot("transition", artifacts, WIDE)
        visit.go_on()
        while TRIAL_URL.search(page.url):
            visit.answer(choice=2)
        page.wait_for_selector("#completion-code")
        assert page.inner_text("#completion-code") == "STEPS-DONE"
        assert not visit.errors
    finally:
        visit.close()
    kinds = server.query(
        "from oversight.core.models import Event\n"
        "result = list(Event.objects.filter(participant__external_id='prolific:steps-1')"
        ".order_by('at', 'id').values_list('kind', flat=True))"
    )
    answering = {"item_shown", "submitted", "selection_changed", "confidence_changed", "page_hidden", "page_visible"}
    steps = [k for k in kinds if k not in answering]
    assert steps[:6] == [
        "joined",
        "consented",
        "instructions_read",
        "comprehension_attempt",
        "comprehension_attempt",
        "block_started",
    ]
    assert steps[6:] == ["block_started", "completed"] and kinds.count("submitted") == 6


def test_failing_the_check_twice_ends_the_study_with_the_screen_out_code(chromium, server):
    visit = Visit(chromium, server)
    page = visit.page
    try:
        visit.join("steps", "steps-2")
        visit.go_on()
        for expected in ("#check-result", "#completion-code"):
            page.check("input[name=q0][value='0']")
            page.check("input[name=q1][value='0']")
            page.click("#continue")
            page.wait_for_selector(expected)
        assert page.url.endswith("/done") and page.inner_text("#completion-code") == "STEPS-OUT"
        assert "did not match the instructions" in page.inner_text("main")
        assert not visit.errors
    finally:
        visit.close()


def test_back_and_refresh_during_the_round_trips_land_where_the_server_says(chromium, server):
    visit = Visit(chromium, server)
    page = visit.page
    try:
        visit.join("clock", "back-1")
        first = page.url
        question = page.inner_text("#question")
        visit.answer()
        second = page.url
        assert TRIAL_URL.search(second) and second != first and page.inner_text("#question") != question
        # Back to the answered item: the page is fetched again and the server sends the current item.
        page.go_back()
        page.wait_for_url(second)
        page.wait_for_selector("#answer-form")
        assert page.inner_text("#question") != question
        before = float(page.get_attribute("#answer-form", "data-seconds-left"))
        page.reload()
        assert page.url == second and float(page.get_attribute("#answer-form", "data-seconds-left")) <= before
        assert not visit.errors
    finally:
        visit.close()


def test_when_the_clock_runs_out_the_next_page_says_the_selection_was_submitted(chromium, server):
    visit = Visit(chromium, server)
    page = visit.page
    try:
        visit.join("clock", "clock-1")
        visit.mark_document()
        first = page.url
        with page.expect_response(lambda r: r.url.endswith("/select")):
            page.check("input[name=choice][value='2']")
        page.wait_for_url(lambda u: u != first, timeout=15_000)  # the page's own submission at zero
        page.wait_for_selector("#timed-out")
        assert page.inner_text("#timed-out") == "Time's up on the last question — your selected answer was submitted."
        assert visit.same_document()
        second = page.url
        page.wait_for_url(lambda u: u != second, timeout=15_000)  # nothing selected this time
        page.wait_for_selector("#timed-out")
        assert "no answer was selected, so none was recorded" in page.inner_text("#timed-out")
        assert not visit.errors
    finally:
        visit.close()


@pytest.mark.parametrize("size", [WIDE, PHONE], ids=["1366x900", "390x844"])
def test_the_timer_progress_and_submit_stay_in_view(chromium, server, artifacts, size):
    visit = Visit(chromium, server, size)
    page = visit.page
    name = f"{size[0]}x{size[1]}"
    try:
        visit.join("steps", f"layout-{name}")
        visit.shot("instructions", artifacts, size)
        visit.go_on()
        page.check("input[name=q0][value='1']")
        page.check("input[name=q1][value='1']")
        visit.shot("check", artifacts, size)
        visit.go_on()
        visit.shot("part-1", artifacts, size)
        visit.go_on()
        seen_passage = seen_mmlu = False
        while TRIAL_URL.search(page.url):
            passage = page.locator("#passage").count() > 0
            header = page.locator(".participant-header").bounding_box()
            timer = page.locator("#timer").bounding_box()
            # One line: the header no taller than one line of the timer, the timer's "84 s" unbroken.
            assert header["height"] <= 64, header
            assert timer["height"] <= 40 and re.fullmatch(r"\d+ s", page.inner_text("#timer")), timer
            assert in_view(page, "#timer") and in_view(page, "#submit") and in_view(page, "#item-heading")
            assert page.locator("#question").bounding_box()["y"] < (260 if size == PHONE else 200)
            if passage:
                seen_passage = True
                visit.shot("trial-passage", artifacts, size)
                if size == WIDE:
                    # The story scrolls inside its pane; the window itself does not scroll.
                    assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight + 1")
                    assert page.evaluate(
                        "(() => { const p = document.querySelector('.passage-pane');"
                        " return p.scrollHeight > p.clientHeight; })()"
                    )
            else:
                seen_mmlu = True
                visit.shot("trial", artifacts, size)
            # Scrolled as far as it goes, the header with the timer is still there.
            page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
            assert in_view(page, "#timer") and in_view(page, "#submit")
            page.evaluate("window.scrollTo(0, 0)")
            visit.answer()
            if page.url.endswith("/part/2"):
                visit.shot("transition", artifacts, size)
                visit.go_on()
        assert seen_passage and seen_mmlu
        page.wait_for_selector("#completion-code")
        visit.shot("done", artifacts, size)
        assert not visit.errors
    finally:
        visit.close()


def test_without_javascript_every_step_still_works(chromium, server):
    visit = Visit(chromium, server, javascript=False)
    page = visit.page
    try:
        visit.join("steps", "no-js-1")
        visit.go_on()
        page.check("input[name=q0][value='1']")
        page.check("input[name=q1][value='1']")
        visit.go_on()
        visit.go_on()
        question = page.inner_text("#question")
        page.check("input[name=choice][value='0']")
        page.check("input[name=confidence][value='60']")
        visit.requests.clear()
        visit.go_on("#submit")
        assert [m for m, _ in visit.requests] == ["POST", "GET"]  # POST → 303 → GET
        assert TRIAL_URL.search(page.url) and page.inner_text("#question") != question
    finally:
        visit.close()


@pytest.mark.parametrize("size", [WIDE, PHONE], ids=["1366x900", "390x844"])
def test_the_demo_s_story_page_with_the_chat_keeps_the_question_timer_and_submit_in_view(
    chromium, server, artifacts, size
):
    """The busiest page: a QuALITY story, the chat and the question (the demo's assisted part)."""
    visit = Visit(chromium, server, size)
    page = visit.page
    try:
        visit.join("demo", f"demo-layout-{size[0]}")
        for _ in range(20):
            if not TRIAL_URL.search(page.url):
                visit.go_on("#continue" if page.locator("#continue").count() else "#next")
                continue
            if page.locator("#passage").count() and page.locator("#chat").count():
                break
            visit.answer()
        else:
            raise AssertionError("no assisted story item in the demo")
        page.wait_for_selector("#chat-connecting", state="detached")
        visit.shot("demo-story-chat", artifacts, size)
        assert in_view(page, "#timer") and in_view(page, "#submit") and in_view(page, "#item-heading")
        assert page.locator("#question").bounding_box()["y"] < (260 if size == PHONE else 200)
        assert page.locator(".participant-header").bounding_box()["height"] <= 64
        if size == WIDE:
            assert page.evaluate("document.scrollingElement.scrollHeight <= window.innerHeight + 1")
            assert in_view(page, "#chat-input")
        assert page.get_attribute("label[for=chat-input]", "class") == "visually-hidden"
        assert not visit.errors
    finally:
        visit.close()
