"""A Prolific participant's whole visit, in a real browser (Debian chromium via Playwright) against daphne.

One journey (a module-scoped fixture) joins with Prolific parameters, consents, reads the instructions and each
block's introduction, refreshes mid-item, lets one item run out with an option selected, reads the attention
check, answers the rest, passes every feedback page and is sent back to the completion URL. The tests then check
what the journey saw against the database, and that no response reached the browser with an item's gold option
before its answer was committed — pages that arrive in the answer to a POST (htmx, one round trip) included: a
response is judged by the page it shows (its HX-Push-Url), not only by the address it was fetched from.
Screenshots of each page type go to test-artifacts/browser/.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
]

PID = "browser-pid-1"
PROLIFIC = {"PROLIFIC_PID": PID, "STUDY_ID": "study-42", "SESSION_ID": "session-7"}
TRIAL_URL = re.compile(r"/s/p/[^/]+/item/(\d+)/$")
FEEDBACK_URL = re.compile(r"/s/p/[^/]+/item/(\d+)/feedback$")
SUBMIT_URL = re.compile(r"/s/p/[^/]+/item/(\d+)/submit$")
ITEM_URL = re.compile(r"/s/p/[^/]+/item/(\d+)/")
DONE_URL = re.compile(r"/s/p/[^/]+/done$")
COLOURS = {"red", "green", "blue", "yellow", "orange", "purple", "black", "white", "brown", "pink", "grey", "gray"}
INTRO_URL = re.compile(r"/s/p/[^/]+/(instructions|part/(\d+))$")
SCREENSHOTS = ("consent", "instructions", "part-1", "part-2", "trial", "trial-passage", "feedback", "done")


@dataclass
class Received:
    index: int
    method: str
    url: str
    status: int
    content_type: str
    body: str | None
    error: str = ""
    pushed: str = ""  # HX-Push-Url: the address of the page this response shows, when it is not `url`

    @property
    def page_url(self) -> str:
        return self.pushed if self.pushed and self.pushed != "false" else self.url


@dataclass
class Journey:
    base_url: str
    responses: list[Received] = field(default_factory=list)
    # position → how many responses the browser had received when that item's answer was sent (or committed)
    commit_index: dict[int, int] = field(default_factory=dict)
    shown: list[int] = field(default_factory=list)
    feedback_seen: list[int] = field(default_factory=list)
    introductions: list[dict] = field(default_factory=list)
    refresh: dict = field(default_factory=dict)
    timed_out: dict = field(default_factory=dict)
    catch: dict = field(default_factory=dict)
    done: dict = field(default_factory=dict)
    screenshots: dict[str, Path] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    db: dict = field(default_factory=dict)


def attention_check_answer(question: str, options: list[str]) -> int | None:
    """What an attentive reader picks on an attention check (None if the question is not one)."""
    q = question.lower()
    if "attention" not in q and "reading carefully" not in q:
        return None
    for a, b in re.findall(r'"([^"]+)"|“([^”]+)”', question):
        for i, option in enumerate(options):
            if option.strip().lower() == (a or b).strip().lower():
                return i
    if "colour" in q or "color" in q:
        for i, option in enumerate(options):
            if option.strip().lower() in COLOURS:
                return i
    raise AssertionError(f"an attention check this test cannot read: {question!r}")


def _journey(server, browser, artifacts: Path) -> Journey:
    journey = Journey(base_url=server.base_url)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)

    def on_response(response):
        ctype = response.headers.get("content-type", "")
        entry = Received(
            index=len(journey.responses),
            method=response.request.method,
            url=response.url,
            status=response.status,
            content_type=ctype,
            body=None,
            pushed=response.headers.get("hx-push-url", ""),
        )
        if 300 <= response.status < 400 or response.headers.get("hx-redirect"):
            entry.body = ""  # a redirect, or htmx's: the browser loads the page it names
        elif any(t in ctype for t in ("text/html", "json", "javascript")):
            try:
                entry.body = response.body().decode("utf-8", "replace")
            except Exception as exc:  # noqa: BLE001 - recorded, and asserted on below
                entry.error = repr(exc)
        journey.responses.append(entry)

    def on_request(request):
        if request.method == "POST" and (m := SUBMIT_URL.search(request.url)):
            journey.commit_index.setdefault(int(m.group(1)), len(journey.responses))

    page.on("response", on_response)
    page.on("request", on_request)
    page.on("pageerror", lambda exc: journey.page_errors.append(f"{page.url}: {exc}"))
    page.on("console", lambda m: m.type == "error" and journey.console_errors.append(f"{page.url}: {m.text}"))

    def shot(kind: str) -> None:
        if kind not in journey.screenshots:
            path = artifacts / f"{kind}.png"
            page.screenshot(path=str(path), full_page=True)
            journey.screenshots[kind] = path

    def options() -> list[str]:
        return [t.strip() for t in page.locator("label.option .text").all_inner_texts()]

    def pick(selector: str) -> None:
        # Each change is reported to …/select; wait for the answer so its body is read before navigating.
        with page.expect_response(lambda r: r.url.endswith("/select") and r.request.method == "POST"):
            page.check(selector)

    def choose(index: int) -> None:
        pick(f"input[name=choice][value='{index}']")

    query = "&".join(f"{k}={v}" for k, v in PROLIFIC.items())
    page.goto(f"{server.base_url}/s/demo/?{query}")
    assert page.locator("#consent-yes").is_visible()
    shot("consent")
    page.click("#consent-yes")
    page.wait_for_url(lambda u: "/s/p/" in u)

    for _ in range(100):
        url = page.url
        if m := INTRO_URL.search(url):
            shot(f"part-{m.group(2)}" if m.group(2) else "instructions")
            journey.introductions.append(
                {"url": url, "heading": page.inner_text("h1"), "text": page.inner_text("main .card")}
            )
            page.click("#continue")
            page.wait_for_url(lambda u, before=url: u != before)
            continue
        if DONE_URL.search(url):
            shot("done")
            journey.done = {
                "url": url,
                "code": page.inner_text("#completion-code").strip(),
                "return_href": page.get_attribute("#return-link", "href"),
                "refresh": page.get_attribute("meta[http-equiv=refresh]", "content"),
            }
            # The page sends the participant back to "Prolific" (here: the server's /healthz) after 3 s.
            page.wait_for_url(lambda u: "/healthz" in u, timeout=10_000)
            journey.done["final_url"] = page.url
            for _ in range(40):  # let the response handler read the last body before the context closes
                if any("/healthz" in r.url and (r.body or r.error) for r in journey.responses):
                    break
                page.wait_for_timeout(50)
            break
        if m := FEEDBACK_URL.search(url):
            journey.feedback_seen.append(int(m.group(1)))
            shot("feedback")
            page.click("#next")
            page.wait_for_url(lambda u, before=url: u != before)
            continue
        m = TRIAL_URL.search(url)
        assert m, f"unexpected page {url}: {page.content()[:500]}"
        position = int(m.group(1))
        journey.shown.append(position)
        question = page.inner_text("#question").strip()
        texts = options()
        has_passage = page.locator("#passage").count() > 0
        seconds_attr = page.get_attribute("#answer-form", "data-seconds-left")
        shot("trial-passage" if has_passage else "trial")

        catch_choice = attention_check_answer(question, texts)
        if catch_choice is not None:
            journey.catch = {"position": position, "choice": catch_choice, "question": question}
        elif seconds_attr is not None and not journey.refresh:
            # Refresh mid-item: the same item, the same clock (less time left), the selection remembered.
            choose(0)
            before = {
                "question": question,
                "seconds": float(seconds_attr),
                "timer": int(page.inner_text("#timer").split()[0]),
            }
            time.sleep(1.6)
            page.reload()
            page.wait_for_url(TRIAL_URL)
            journey.refresh = {
                "position": position,
                "url_before": url,
                "url_after": page.url,
                "before": before,
                "after": {
                    "question": page.inner_text("#question").strip(),
                    "seconds": float(page.get_attribute("#answer-form", "data-seconds-left")),
                    "timer": int(page.inner_text("#timer").split()[0]),
                },
                "still_checked": page.is_checked("input[name=choice][value='0']"),
            }
        elif seconds_attr is not None and not has_passage and not journey.timed_out:
            # Let this one run out with an option selected (and no confidence): the page submits at zero.
            choose(1)
            journey.timed_out = {"position": position, "choice": 1, "seconds_left": float(seconds_attr)}
            page.wait_for_url(FEEDBACK_URL, timeout=(float(seconds_attr) + 15) * 1000)
            continue

        choice = catch_choice if catch_choice is not None else position % len(texts)
        if not page.is_checked(f"input[name=choice][value='{choice}']"):
            choose(choice)
        pick("input[name=confidence][value='80']")
        page.click("#submit")
        page.wait_for_url(lambda u, before=url: u != before)
    else:
        raise AssertionError(f"the journey did not finish; last page {page.url}")

    context.close()
    journey.db = server.query(
        "from oversight.core.models import Participant\n"
        f"p = Participant.objects.select_related('study').get(study__slug='demo', external_id='prolific:{PID}')\n"
        "result = {'status': p.status, 'recruitment': p.recruitment, 'code': p.study.completion_code,\n"
        "  'trials': [dict(position=t.position, status=t.status, choice=t.choice, confidence=t.confidence,\n"
        "    selected_choice=t.selected_choice, submit_kind=t.submit_kind, correct=t.correct, role=t.role,\n"
        "    subject=t.item.subject, text=t.item.text, options=t.item.options, gold_index=t.item.gold_index,\n"
        "    time_limit_s=t.time_limit_s, deadline_at=t.deadline_at, shown_at=t.shown_at)\n"
        "    for t in p.trials.select_related('item').order_by('position')]}"
    )
    return journey


@pytest.fixture(scope="module")
def journey(browser_server, chromium, artifacts) -> Journey:
    try:
        return _journey(browser_server, chromium, artifacts)
    except Exception:
        print("--- daphne log (tail)\n" + browser_server.log_tail())
        raise


def _trials(journey: Journey) -> dict[int, dict]:
    return {t["position"]: t for t in journey.db["trials"]}


def test_a_prolific_participant_finishes_and_is_sent_back_with_the_completion_code(journey):
    assert journey.db["status"] == "completed"
    assert journey.db["recruitment"] == {"source": "prolific", **PROLIFIC}
    code = journey.db["code"]
    assert journey.done["code"] == code
    expected = f"{journey.base_url}/healthz?cc={code}"
    assert journey.done["return_href"] == expected
    assert journey.done["refresh"] == f"3;url={expected}"
    assert journey.done["final_url"] == expected


def test_every_item_was_shown_in_order_answered_and_followed_by_its_feedback(journey):
    trials = _trials(journey)
    assert len(trials) == 11  # 3 MMLU + 2 QuALITY per condition, 2 conditions, 1 attention check
    assert sorted(set(journey.shown)) == sorted(trials) == list(range(len(trials)))
    assert [p for i, p in enumerate(journey.shown) if p not in journey.shown[:i]] == sorted(trials)
    assert journey.feedback_seen == sorted(trials)
    assert all(t["status"] in {"answered", "timed_out"} for t in trials.values())
    assert [p for p, t in trials.items() if t["status"] == "timed_out"] == [journey.timed_out["position"]]


def test_a_refresh_shows_the_same_item_with_less_time_left(journey):
    r = journey.refresh
    assert r, "no timed item to refresh"
    assert r["url_after"] == r["url_before"]
    assert r["after"]["question"] == r["before"]["question"]
    assert r["after"]["seconds"] < r["before"]["seconds"] - 1.0
    assert r["after"]["timer"] < r["before"]["timer"]
    assert r["still_checked"], "the selection made before the refresh was not restored"
    trial = _trials(journey)[r["position"]]
    assert trial["status"] == "answered" and trial["submit_kind"] == "manual"


def test_an_item_left_to_run_out_is_recorded_as_timed_out_with_the_selected_option(journey):
    t = journey.timed_out
    assert t, "no untimed-out MMLU item found"
    assert t["seconds_left"] <= 25
    trial = _trials(journey)[t["position"]]
    assert trial["status"] == "timed_out"
    assert trial["choice"] == trial["selected_choice"] == t["choice"]
    assert trial["confidence"] is None
    assert trial["submit_kind"] in {"auto", "server"}


def test_the_attention_check_is_answered_correctly_by_reading_it(journey):
    c = journey.catch
    assert c, "no attention check was shown"
    trial = _trials(journey)[c["position"]]
    assert trial["subject"] == "attention_check" and trial["role"] == "catch"
    assert trial["choice"] == c["choice"] == trial["gold_index"]
    assert trial["correct"] is True


def test_the_pages_run_without_script_errors(journey):
    assert not journey.page_errors


def test_screenshots_of_each_page_type_are_saved(journey):
    for kind in SCREENSHOTS:
        path = journey.screenshots.get(kind)
        assert path is not None and path.exists() and path.stat().st_size > 5_000, kind


# --- Gold never reaches the browser before the answer is committed -----------------------------------------

# Words that mark an option as the right one. The trial page has none of them; the feedback page does.
GOLD_WORDS = re.compile(r"gold|correct|right answer|solution|answer[_-]?key", re.I)
# Values known not to be about the answer: the item's position, its clock, and character offsets into the
# passage (paragraphs, quotes), which are the same for every question on that passage.
SAFE_DATA_ATTRS = {"data-position", "data-seconds-left", "data-start", "data-end"}
SAFE_HIDDEN = {"csrfmiddlewaretoken", "auto"}
SAFE_JSON = {"selected_choice", "selected_confidence", "seconds_left"}  # echoes of the participant's own input


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def _gold_values(item: dict) -> set[str]:
    g = item["gold_index"]
    return {str(g), chr(ord("A") + g), _norm(item["options"][g])}


def tags_gold_next_to_question(body: str, item: dict) -> list[str]:
    """A response about this item (it carries the question) with its gold option next to a gold word."""
    text = _norm(body)
    question = _norm(item["text"].splitlines()[0])[:60]
    if question not in text:
        return []
    gold = _norm(item["options"][item["gold_index"]])
    reasons = []
    for m in re.finditer(re.escape(gold), text):
        window = text[max(0, m.start() - 200) : m.end() + 200]
        if word := GOLD_WORDS.search(window):
            reasons.append(f"gold option {gold!r} next to {word.group(0)!r}")
    return reasons


class _Attrs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs.append((tag, {k: v or "" for k, v in attrs}))


def marks_gold_in_markup(body: str, item: dict) -> list[str]:
    """The item's own pages: no gold word outside the passage, no attribute or hidden field carrying gold."""
    reasons = []
    without_passage = re.sub(r'<section class="pane passage-pane".*?</section>', "", body, flags=re.S)
    if word := GOLD_WORDS.search(without_passage):
        reasons.append(f"the word {word.group(0)!r}")
    parser = _Attrs()
    parser.feed(body)
    gold = _gold_values(item)
    for tag, attrs in parser.attrs:
        for name, value in attrs.items():
            if GOLD_WORDS.search(name):
                reasons.append(f"attribute {name}={value!r} on <{tag}>")
            elif name.startswith("data-") and name not in SAFE_DATA_ATTRS and _norm(value) in gold:
                reasons.append(f"{name}={value!r} on <{tag}> is the gold option")
        hidden = tag == "input" and attrs.get("type") == "hidden" and attrs.get("name") not in SAFE_HIDDEN
        if hidden and (GOLD_WORDS.search(attrs.get("name", "")) or _norm(attrs.get("value", "")) in gold):
            reasons.append(f"hidden field {attrs.get('name')}={attrs.get('value')!r}")
    return reasons


def marks_gold_in_json(body: str, item: dict) -> list[str]:
    reasons = []
    gold = _gold_values(item)

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if GOLD_WORDS.search(str(k)):
                    reasons.append(f"JSON field {k!r}")
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif key not in SAFE_JSON and not isinstance(node, bool | float) and _norm(str(node)) in gold:
            reasons.append(f"JSON field {key!r}={node!r} is the gold option")

    try:
        walk(json.loads(body))
    except ValueError:
        reasons.append("unparseable JSON")
    return reasons


def gold_markers(entry: Received, position: int, item: dict) -> list[str]:
    """Every way `entry` gives away the gold option of the item at `position`."""
    body = entry.body or ""
    reasons = tags_gold_next_to_question(body, item)
    m = ITEM_URL.search(entry.page_url)
    if m and int(m.group(1)) == position:  # the item's own page, its /select, /state answers
        if "json" in entry.content_type:
            reasons += marks_gold_in_json(body, item)
        elif "html" in entry.content_type:
            reasons += marks_gold_in_markup(body, item)
    return reasons


def test_every_response_body_was_recorded(journey):
    assert len(journey.responses) > 40
    missing = [
        (r.url, r.error)
        for r in journey.responses
        if r.body is None
        and 200 <= r.status < 300
        and any(t in r.content_type for t in ("text/html", "json", "javascript"))
    ]
    assert not missing, missing
    assert any(r.url.endswith("/static/js/trial.js") and r.body for r in journey.responses)
    assert sum("json" in r.content_type for r in journey.responses) >= 11  # at least one /select per item


def test_no_response_gives_away_the_gold_option_before_the_answer_is_committed(journey):
    trials = _trials(journey)
    assert set(journey.commit_index) == set(trials), "every answer is sent by the page (manual or auto)"
    for position, item in trials.items():
        cut = journey.commit_index[position]
        before = journey.responses[:cut]
        # Not vacuous: the item's own trial page was received before the cut, with its question and options.
        own = [
            r
            for r in before
            if TRIAL_URL.search(r.page_url)
            and int(TRIAL_URL.search(r.page_url).group(1)) == position
            and r.status == 200
            and r.body
        ]
        assert own, f"item {position}: its trial page was not among the responses before the commit"
        assert all(_norm(o) in _norm(own[-1].body) for o in item["options"])
        assert _norm(item["text"].splitlines()[0])[:60] in _norm(own[-1].body)

        leaks = [(r.index, r.page_url, reason) for r in before for reason in gold_markers(r, position, item)]
        assert not leaks, f"item {position} (gold {item['gold_index']}): {leaks}"

        # Positive control: the same detector finds the gold option on the item's feedback page, after the cut.
        feedback = [
            r
            for r in journey.responses[cut:]
            if FEEDBACK_URL.search(r.page_url)
            and r.status == 200
            and r.body
            and int(FEEDBACK_URL.search(r.page_url).group(1)) == position
        ]
        assert feedback, f"item {position}: no feedback page"
        assert tags_gold_next_to_question(feedback[0].body, item), f"item {position}: detector missed the reveal"
        assert marks_gold_in_markup(feedback[0].body, item)


def test_the_gold_check_catches_planted_leaks(journey):
    """The check above is only worth something if it fires: plant leaks in a real trial page and JSON answer."""
    trials = _trials(journey)
    position = journey.timed_out["position"]
    item = trials[position]
    page = next(
        r
        for r in journey.responses
        if TRIAL_URL.search(r.page_url)
        and int(TRIAL_URL.search(r.page_url).group(1)) == position
        and r.status == 200
        and r.body
    )
    g = item["gold_index"]
    letter, text = chr(ord("A") + g), html.escape(item["options"][g])
    assert not gold_markers(page, position, item)

    def planted(body: str, content_type: str = page.content_type) -> list[str]:
        return gold_markers(
            Received(
                index=-1,
                method="GET",
                url=page.url,
                status=200,
                content_type=content_type,
                body=body,
                pushed=page.pushed,
            ),
            position,
            item,
        )

    form = '<form method="post" id="answer-form"'
    assert form in page.body
    for leak in [
        f'{form} data-answer="{g}"',
        f'{form} data-key="{letter}"',
        f'{form} data-correct="yes"',
        f'<input type="hidden" name="x" value="{letter}">{form}',
        f"<!-- gold {letter} -->{form}",
    ]:
        assert planted(page.body.replace(form, leak, 1)), leak
    # The feedback page's way of marking the gold option, served early on the trial page.
    option = f'<span class="text">{text}</span>'
    marked = page.body.replace(option, f"{option} <span class='tag ok'>correct answer</span>", 1)
    assert marked != page.body and planted(marked)
    select = next(r for r in journey.responses if r.url.endswith(f"/item/{position}/select") and r.body)
    assert not planted(select.body, select.content_type)
    for leak in [
        {"status": "shown", "answer": g},
        {"status": "shown", "is_correct": False},
        {"status": "shown", "options": [{"text": item["options"][g], "gold": True}]},
    ]:
        assert planted(json.dumps(leak), "application/json"), leak
