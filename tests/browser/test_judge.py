"""The judge's page of a protocol trial in a real browser (Debian chromium via Playwright) against the embedded
server, with the simulated assistant playing the advocates at a human-visible speed. Each test is one judge of a
study of its own (made with tests.factories in the server's database):

1. a 3-round simultaneous debate: the turns stream, a refresh mid-stream resumes from the database and the
   stream goes on, every round completes, and the judge's probabilities are stored with the answer;
2. verified and unverified quotes are shown differently (classes and a text label, not colour alone);
3. in an interactive debate the judge's question is a turn of the transcript and reaches both debaters (their
   contexts in the database);
4. the deadline ends the debate and submits the probability the judge selected.

Screenshots go to test-artifacts/browser/judge-*.png.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import CHROMIUM
from tests.live_server import LiveServer, live_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
]

TRIAL_URL = re.compile(r"/s/p/([^/]+)/item/(\d+)/$")
WAIT_MS = 30_000
VIEWPORT = {"width": 1366, "height": 900}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    with live_server(tmp_path_factory.mktemp("judge-server"), seed_args=None) as live:
        yield live


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()


def make_study(server: LiveServer, slug: str, kind: str, protocol: dict, *, time_limit_s=600, simulation=None):
    server.query(
        "from tests.factories import make_protocol_study\n"
        f"make_protocol_study(slug={slug!r}, conditions=(({kind!r}, {protocol!r}),), n_items=1, "
        f"time_limit_s={time_limit_s!r}, simulation={simulation or {}!r})\n"
    )


def open_item(server: LiveServer, page, slug: str) -> tuple[str, str]:
    page.goto(f"{server.base_url}/s/{slug}/")
    page.click("#consent-yes")
    page.wait_for_url(TRIAL_URL)
    token, position = TRIAL_URL.search(page.url).groups()
    return token, position


def set_probability(page, a_percent: int) -> None:
    """Move the judge's slider to P(A) = a_percent, as dragging it does (input, then change)."""
    page.eval_on_selector(
        "#judge-slider",
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true}));"
        " el.dispatchEvent(new Event('change', {bubbles: true})); }",
        a_percent,
    )


def wait_until_over(page) -> None:
    page.wait_for_function("() => document.getElementById('debate-state').textContent.includes('The debate is over')")


def trial_record(server: LiveServer, token: str) -> dict:
    return server.query(
        "from oversight.core.models import Trial\n"
        f"t = Trial.objects.select_related('transcript').get(participant__token={token!r}, transcript__isnull=False)\n"
        "result = {'status': t.status, 'choice': t.choice, 'confidence': t.confidence, 'kind': t.submit_kind,\n"
        " 'distribution': t.distribution, 'options': t.transcript.options, 'ended_by': t.transcript.ended_by,\n"
        " 'rounds_done': t.transcript.rounds_done, 'transcript_status': t.transcript.status}\n"
    )


def test_a_judge_follows_a_three_round_debate_through_a_refresh_and_answers(server, page, artifacts):
    make_study(server, "judge-debate", "debate", {"rounds": 3}, simulation={"tokens_per_s": 25, "quote_rate": 0.5})
    token, _ = open_item(server, page, "judge-debate")
    assert page.locator(".transcript .answers li").count() == 2  # the two answers, never the four options
    # Mid-stream: both debaters of the first round are writing.
    page.wait_for_function(
        "() => document.querySelectorAll('.turn[data-status=streaming] .body').length === 2 &&"
        " Array.from(document.querySelectorAll('.turn[data-status=streaming] .body'))"
        ".every(b => b.textContent.length > 20)"
    )
    before = page.inner_text("#transcript-pane .turns")
    page.screenshot(path=str(artifacts / "judge-streaming.png"))
    page.reload()
    # The server-rendered page already holds what was said (the socket then resumes the stream).
    after = page.inner_text("#transcript-pane .turns")
    assert "Debater A" in after and "Debater B" in after and len(after) >= len(before) // 2
    wait_until_over(page)
    assert page.locator(".turn.turn-advocate[data-status=complete]").count() == 6
    rounds = page.eval_on_selector_all(".turns .round", "els => els.map(e => e.textContent.trim())")
    assert rounds == ["Round 1", "Round 2", "Round 3"]
    stored = server.query(
        "from oversight.assistant.models import TranscriptTurn\n"
        f"turns = TranscriptTurn.objects.filter(transcript__trials__participant__token={token!r})\n"
        "result = [t.content for t in turns.order_by('seq')]\n"
    )
    shown = " ".join(page.inner_text("#transcript-pane .turns").split())
    # Every stored turn is on the page (its opening words: the page shows neither tags nor Markdown marks).
    assert len(stored) == 6
    for content in stored:
        assert " ".join(re.sub(r"<[^>]+>|\*\*", "", content).split()[:4]) in shown
    set_probability(page, 30)
    assert page.inner_text("#judge-out").startswith("A: 30%") and "B: 70%" in page.inner_text("#judge-out")
    page.screenshot(path=str(artifacts / "judge-done.png"), full_page=True)
    page.click("#submit")
    page.wait_for_url(re.compile(r"/done$"))
    record = trial_record(server, token)
    assert record["status"] == "answered" and record["kind"] == "manual"
    assert record["choice"] == record["options"][1] and record["confidence"] == 70
    assert record["rounds_done"] == 3 and record["ended_by"] == "rounds"


def test_verified_and_unverified_quotes_look_different(server, page, artifacts):
    make_study(
        server,
        "judge-quotes",
        "consultancy",
        {"rounds": 2},
        simulation={"tokens_per_s": 0, "quote_rate": 1.0, "misquote_rate": 0.5, "seed": 3},
    )
    open_item(server, page, "judge-quotes")
    wait_until_over(page)
    page.reload()  # the server's rendering too
    verified = page.locator(".turns mark.quote.verified")
    unverified = page.locator(".turns mark.quote.unverified")
    assert verified.count() >= 1 and unverified.count() >= 1
    label = "(el) => getComputedStyle(el, '::after').content"
    assert "✓" in verified.first.evaluate(label)
    assert "not found in the story" in unverified.first.evaluate(label)
    background = "(el) => getComputedStyle(el).backgroundColor"
    assert verified.first.evaluate(background) != unverified.first.evaluate(background)
    unverified.first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "judge-quotes.png"), full_page=True)


def test_the_judges_question_reaches_both_debaters(server, page, artifacts):
    make_study(server, "judge-asks", "interactive_debate", {"rounds": 2}, simulation={"tokens_per_s": 0})
    token, _ = open_item(server, page, "judge-asks")
    page.wait_for_selector("#judge-question-form:not([hidden])")
    page.fill("#judge-question", "Where was the stowaway hiding?")
    page.screenshot(path=str(artifacts / "judge-question.png"))
    page.click("#judge-ask")
    page.wait_for_selector(".turn.turn-judge")
    assert "Where was the stowaway hiding?" in page.inner_text(".turn.turn-judge")
    wait_until_over(page)
    contexts = server.query(
        "from oversight.assistant.models import TranscriptTurn\n"
        f"turns = TranscriptTurn.objects.filter(transcript__trials__participant__token={token!r})\n"
        "judge = turns.get(role='judge')\n"
        "result = {'judge': judge.pk, 'text': judge.content, 'second': [(t.position, t.context['turn_ids'])"
        " for t in turns.filter(role='advocate', round=2)]}\n"
    )
    assert contexts["text"] == "Where was the stowaway hiding?"
    assert sorted(p for p, _ in contexts["second"]) == [0, 1]
    assert all(contexts["judge"] in ids for _, ids in contexts["second"])


def test_the_deadline_ends_the_debate_and_submits_the_selected_probability(server, page, artifacts):
    make_study(server, "judge-clock", "debate", {"rounds": 3}, time_limit_s=12, simulation={"tokens_per_s": 8})
    token, _ = open_item(server, page, "judge-clock")
    page.wait_for_selector(".turn[data-status=streaming]")
    set_probability(page, 80)
    page.wait_for_url(lambda url: "/item/" not in url, timeout=30_000)
    page.screenshot(path=str(artifacts / "judge-after-deadline.png"))
    record = trial_record(server, token)
    assert record["status"] == "timed_out" and record["kind"] in {"auto", "server"}
    assert record["choice"] == record["options"][0] and record["confidence"] == 80
    assert record["ended_by"] == "deadline" and record["rounds_done"] < 3
