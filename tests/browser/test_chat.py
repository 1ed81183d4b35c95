"""The assisted condition's chat pane in a real browser (Debian chromium via Playwright) against daphne and FakeTGI.

The demo study is seeded with TGI_URL pointing at a threaded FakeTGI (docs/faketgi.md), so the assisted
condition's "Demo TGI" endpoint streams from the fake at a human-visible speed. Each test is one participant:

1. a QuALITY item: tokens appear progressively, a refresh mid-stream re-attaches and the reply finishes
   (checked against the database), Reset empties the model's context (checked in the DB and in what the fake
   received), a verified quote highlights the story, and the answer is recorded;
2. a mid-stream model error becomes a human message with a Retry button, the question stays answerable, and
   Retry brings a complete reply;
3. a reply (and a participant message) carrying <script> and an onerror <img> renders inert;
4. a message typed while a reply streams is kept, queued on the server (through a refresh) and sent when the
   reply ends, with speaker labels on every message;
5. Stop ends the reply where it is, keeps its text, and the model's request is cancelled.

Screenshots go to test-artifacts/browser/chat-*.png.
"""

from __future__ import annotations

import re
import time

import pytest

from oversight_dev.faketgi import FakeTGI
from tests.browser.conftest import CHROMIUM, continue_to_items
from tests.live_server import LiveServer, live_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
]

TRIAL_URL = re.compile(r"/s/p/([^/]+)/item/(\d+)/$")
FEEDBACK_URL = re.compile(r"/s/p/[^/]+/item/\d+/feedback$")
SEED_ARGS = ("--mmlu-time-limit", "300", "--quality-time-limit", "300")
WAIT_MS = 20_000

# ~90 words of plain prose (no quotes, no Markdown): ~110 tokens, about 4.5 s at 25 tokens/s, so the stream is
# long enough to watch grow, refresh in the middle of, and still see continue.
LONG_REPLY = (
    "Let me think about this carefully before I answer. The story gives several clues about what happened "
    "aboard the ship, and it is worth going through them one at a time. First, the quartermaster started "
    "rationing after the small meteor struck the hull. Second, it kept reporting that one crew member had "
    "missed many meals in a row. Third, the rations shrank by a steady proportion rather than at random. "
    "Taken together, these details suggest the machine believes there is one more person aboard than the "
    "crew can see, and it is sharing the stores with them."
)
SHORT_REPLY = "Here is a complete answer this time: the story explains it in the middle section."
XSS_REPLY = (
    'Before the tags. <script>window.__pwned=1</script> Between the tags. <img src=x onerror="window.__pwned=2"> '
    "After the tags."
)
# What a participant must never read in the chat: tracebacks, exception class names, raw JSON.
TECHNICAL = re.compile(r"Traceback|Exception|Error\b|UnknownError|http_status_code|[{}\[\]]|\\n|File \"")

INSERTION_WATCH_JS = """
window.__chatInserted = [];
new MutationObserver(function (records) {
  records.forEach(function (r) {
    if (!(r.target instanceof Element) || !r.target.closest('#chat-log')) return;
    r.addedNodes.forEach(function (n) {
      if (!(n instanceof Element)) return;
      [n].concat(Array.from(n.querySelectorAll('*'))).forEach(function (e) {
        if (/^(SCRIPT|IMG|IFRAME|OBJECT|EMBED|SVG)$/i.test(e.tagName) || e.hasAttribute('onerror')
            || e.hasAttribute('onload')) window.__chatInserted.push(e.outerHTML.slice(0, 200));
      });
    });
  });
}).observe(document, {childList: true, subtree: true});
"""
LAST_ASSISTANT_JS = """() => {
  const all = document.querySelectorAll('#chat-log .msg.assistant');
  const el = all[all.length - 1];
  if (!el) return null;
  const body = el.querySelector('.body');
  return {id: el.dataset.id, streaming: el.classList.contains('streaming'),
          complete: el.classList.contains('complete'), length: body ? body.textContent.length : 0,
          text: body ? body.textContent : ''};
}"""


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def tgi():
    with FakeTGI(ttft_ms=150, tokens_per_s=25, reply=LONG_REPLY) as fake:
        yield fake


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory, tgi) -> LiveServer:
    with live_server(
        tmp_path_factory.mktemp("chat-server"), seed_args=SEED_ARGS, extra_env={"TGI_URL": tgi.url}
    ) as server:
        yield server


@pytest.fixture
def page(request, chromium, chat_server, tgi):
    tgi.configure(reset=True)  # each test starts from the module's settings, whatever the last one changed
    failed_before = request.session.testsfailed
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.page_errors = []
    pg.on("pageerror", lambda exc: pg.page_errors.append(str(exc)))
    pg.console_errors = []
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(f"{pg.url}: {m.text}"))
    yield pg
    context.close()
    if request.session.testsfailed > failed_before:  # the call phase's report is in before teardown
        print("--- daphne log (tail)\n" + chat_server.log_tail())


# --- navigation ----------------------------------------------------------------------------------------------


def join(page, server: LiveServer, pid: str) -> None:
    page.goto(f"{server.base_url}/s/demo/?PROLIFIC_PID={pid}&STUDY_ID=chat-study&SESSION_ID={pid}")
    page.click("#consent-yes")
    continue_to_items(page)
    page.wait_for_url(TRIAL_URL)


def answer(page, choice: int = 0, confidence: int = 80) -> None:
    """Answer the current item through its form and pass its feedback page."""
    url = page.url
    page.check(f"input[name=choice][value='{choice}']")
    page.check(f"input[name=confidence][value='{confidence}']")
    page.click("#submit")
    page.wait_for_url(lambda u: u != url)
    if FEEDBACK_URL.search(page.url):
        feedback = page.url
        page.click("#next")
        page.wait_for_url(lambda u: u != feedback)


def go_to_assisted_item(page, *, with_passage: bool) -> tuple[str, int]:
    """Answer items until the page has the chat (and the story, if asked); the demo's order is random."""
    for _ in range(12):
        m = TRIAL_URL.search(page.url)
        assert m, f"unexpected page {page.url}"
        if page.locator("#chat").count() and (not with_passage or page.locator("#passage").count()):
            wait_connected(page)
            return m.group(1), int(m.group(2))
        assert page.locator("#chat").count() or not with_passage, "left the assisted condition without a story"
        answer(page)
    raise AssertionError("no assisted item found")


def wait_connected(page) -> None:
    """The socket is open and the history arrived (it replaces the 'Connecting…' line)."""
    page.wait_for_selector("#chat-connecting", state="detached", timeout=WAIT_MS)


def ask(page, text: str) -> None:
    page.wait_for_function("() => !document.getElementById('chat-send').disabled", timeout=WAIT_MS)
    page.fill("#chat-input", text)
    page.click("#chat-send")


def last_assistant(page) -> dict | None:
    return page.evaluate(LAST_ASSISTANT_JS)


def wait_assistant_count(page, n: int, status: str) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('#chat-log .msg.assistant.{status}').length >= {n}", timeout=WAIT_MS
    )


def trial_db(server: LiveServer, token: str, position: int) -> dict:
    return server.query(
        "from oversight.core.models import Trial\n"
        f"t = Trial.objects.select_related('item__passage').get(participant__token={token!r}, position={position})\n"
        "result = {'status': t.status, 'choice': t.choice, 'confidence': t.confidence,\n"
        "  'passage': t.item.passage.text if t.item.passage_id else None,\n"
        "  'messages': [dict(id=m.pk, seq=m.seq, role=m.role, status=m.status, content=m.content,\n"
        "     context=m.context, error_kind=m.error_kind, quotes=m.quotes) for m in t.messages.order_by('seq')]}"
    )


def pick_sentence(passage: str) -> str:
    """A plain sentence of the story (6–30 words, inside one paragraph, no quote marks or Markdown)."""
    for paragraph in re.split(r"\n\s*\n", passage):
        for sentence in re.findall(r"[A-Z][^.!?\n]*[.!?]", paragraph):
            words = sentence.split()
            if 6 <= len(words) <= 30 and re.fullmatch(r"[A-Za-z0-9 ,;.-]+", sentence) and "  " not in sentence:
                return sentence
    raise AssertionError("no plain sentence of 6+ words in the passage")


def assert_no_script_errors(page) -> None:
    assert not page.page_errors, page.page_errors
    csp = [e for e in page.console_errors if "Content Security Policy" in e]
    assert not csp, csp  # a blocked inline script or handler would mean markup got through to the DOM


def chat_requests(tgi) -> list:
    return [r for r in tgi.requests if r.path == "/v1/chat/completions"]


# --- 1. stream, refresh, reset, quote, answer -----------------------------------------------------------------


def test_streaming_refresh_reset_quote_and_answer(page, chat_server, tgi, artifacts):
    join(page, chat_server, "chat-pid-stream")
    token, position = go_to_assisted_item(page, with_passage=True)
    passage = trial_db(chat_server, token, position)["passage"]
    assert passage
    sentence = pick_sentence(passage)
    tgi.clear_requests()

    # Tokens appear progressively while the reply is streaming.
    first_question = "Why did the quartermaster start rationing the water?"
    ask(page, first_question)
    page.wait_for_selector("#chat-log .msg.user", timeout=WAIT_MS)
    page.wait_for_function(
        "() => { const b = document.querySelector('#chat-log .msg.assistant.streaming .body');"
        " return b && b.textContent.length > 0; }",
        timeout=WAIT_MS,
    )
    samples = []
    for _ in range(4):
        samples.append(last_assistant(page))
        time.sleep(0.25)
    page.screenshot(path=str(artifacts / "chat-streaming.png"), full_page=True)
    assert all(s["streaming"] for s in samples), samples
    lengths = [s["length"] for s in samples]
    assert lengths == sorted(lengths) and len(set(lengths)) >= 3, f"the reply did not grow while streaming: {lengths}"
    reply_id = samples[0]["id"]
    assert {s["id"] for s in samples} == {reply_id}

    # A refresh mid-stream re-attaches: the snapshot has the text so far and the stream continues.
    before = last_assistant(page)
    assert before["streaming"], "the reply finished before the refresh; the test cannot observe a re-attach"
    page.reload()
    wait_connected(page)
    after = last_assistant(page)
    assert after is not None and after["id"] == reply_id
    assert after["text"].startswith(before["text"]), "the snapshot after the refresh lost text"
    resumed_streaming = after["streaming"]
    page.wait_for_selector(f"#chat-log .msg.assistant.complete[data-id='{reply_id}']", timeout=WAIT_MS)
    final = last_assistant(page)
    assert resumed_streaming, "the reply was no longer streaming right after the refresh"
    assert final["length"] > after["length"] > 0, "no text arrived after the refresh"
    assert _norm(final["text"]) == _norm(LONG_REPLY)
    assert len(final["text"]) > before["length"]
    print(
        f"lengths while streaming {lengths}; before the refresh {before['length']}, right after it "
        f"{after['length']}, final {final['length']}"
    )
    page.screenshot(path=str(artifacts / "chat-after-refresh.png"), full_page=True)

    # The fake got the story merged into the first user turn.
    first_request = chat_requests(tgi)[-1].json["messages"]
    assert [m["role"] for m in first_request] == ["system", "user"]
    assert first_request[1]["content"].startswith("Here is a story:\n\n")
    assert passage.strip() in first_request[1]["content"]
    assert first_request[1]["content"].endswith(first_question)

    # Reset: a marker, and the next reply's context holds only what came after it.
    page.click("#chat-reset")
    page.wait_for_selector("#chat-log .reset-marker", timeout=WAIT_MS)
    quote_reply = f'The story says so directly: "{sentence}" That line is the evidence for your question.'
    tgi.push_reply(quote_reply)
    second_question = "Which line of the story supports that?"
    ask(page, second_question)
    wait_assistant_count(page, 2, "complete")
    page.wait_for_selector("#chat-log mark.quote.verified", timeout=WAIT_MS)
    page.click("#chat-log mark.quote.verified")
    page.wait_for_selector("#passage mark.hit", timeout=WAIT_MS)
    hit = _norm(page.inner_text("#passage mark.hit"))
    page.screenshot(path=str(artifacts / "chat-quote.png"), full_page=True)
    assert hit and hit in _norm(sentence) and len(hit) >= len(_norm(sentence)) - 1, (hit, sentence)

    second_request = chat_requests(tgi)[-1].json["messages"]
    assert [m["role"] for m in second_request] == ["system", "user"], second_request
    assert second_request[1]["content"].startswith("Here is a story:\n\n")
    assert second_request[1]["content"].endswith(second_question)
    assert first_question not in second_request[1]["content"] and LONG_REPLY not in str(second_request)

    # The answer is recorded; the chat is in the database as the page showed it.
    answer(page, choice=1, confidence=80)
    db = trial_db(chat_server, token, position)
    assert db["status"] == "answered" and db["choice"] == 1 and db["confidence"] == 80, db
    messages = db["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("reset", "complete"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    first_reply, post_user, post_reply = messages[1], messages[3], messages[4]
    assert first_reply["id"] == int(reply_id)
    assert first_reply["content"] == LONG_REPLY  # what the fake sent, all of it
    assert _norm(final["text"]) == _norm(first_reply["content"])
    assert first_reply["context"]["message_ids"] == [messages[0]["id"]]
    assert post_reply["content"] == quote_reply
    assert post_reply["context"]["message_ids"] == [post_user["id"]]
    assert post_reply["context"]["passage_injected"] is True
    assert [q.get("verified") for q in post_reply["quotes"]] == [True], post_reply["quotes"]
    assert_no_script_errors(page)


# --- 2. an in-stream error, the answer form still works, Retry ------------------------------------------------


def test_a_model_error_mid_stream_shows_a_notice_and_retry_brings_a_reply(page, chat_server, tgi, artifacts):
    join(page, chat_server, "chat-pid-error")
    token, position = go_to_assisted_item(page, with_passage=False)
    tgi.configure(stream_error_after=3)  # a 200 stream, three tokens, then TGI's error event

    ask(page, "Can you help me with this question?")
    page.wait_for_selector("#chat-log .msg.assistant.failed .notice", timeout=WAIT_MS)
    notice = _norm(page.inner_text("#chat-log .msg.assistant.failed .notice"))
    assert "ran into a problem" in notice, notice
    assert not TECHNICAL.search(notice), notice
    retry = page.locator("#chat-log .msg.assistant.failed button.retry")
    assert retry.is_visible() and retry.is_enabled()
    page.screenshot(path=str(artifacts / "chat-error.png"), full_page=True)

    # The question can still be answered while the chat is broken.
    page.check("input[name=choice][value='2']")
    page.check("input[name=confidence][value='60']")
    assert page.locator("#submit").is_enabled()

    tgi.configure(reset=True, reply=SHORT_REPLY, tokens_per_s=0)
    retry.click()
    wait_assistant_count(page, 1, "complete")
    reply = last_assistant(page)
    assert reply["complete"] and _norm(reply["text"]) == _norm(SHORT_REPLY)
    assert page.locator("#chat-log .msg.assistant.failed").count() == 1  # the failure stays on the record
    assert not retry.is_visible(), "a Retry button is still offered after the retry succeeded"

    # A refusal shows in #chat-error in plain words.
    page.click("#chat-reset")
    page.wait_for_selector("#chat-log .reset-marker", timeout=WAIT_MS)
    page.click("#chat-reset")
    page.wait_for_selector("#chat-error:not([hidden])", timeout=WAIT_MS)
    error = _norm(page.inner_text("#chat-error"))
    assert error and not TECHNICAL.search(error), error
    page.screenshot(path=str(artifacts / "chat-retry.png"), full_page=True)

    page.click("#submit")
    page.wait_for_url(lambda u: TRIAL_URL.search(u) is None)
    db = trial_db(chat_server, token, position)
    assert db["status"] == "answered" and db["choice"] == 2 and db["confidence"] == 60, db
    roles = [(m["role"], m["status"]) for m in db["messages"]]
    assert roles == [("user", "complete"), ("assistant", "failed"), ("assistant", "complete"), ("reset", "complete")], (
        roles
    )
    failed, retried = db["messages"][1], db["messages"][2]
    assert failed["error_kind"] == "generation"
    assert retried["content"] == SHORT_REPLY
    assert retried["context"]["message_ids"] == [db["messages"][0]["id"]]  # the failed reply is left out
    assert_no_script_errors(page)


# --- 3. markup in a reply is inert ----------------------------------------------------------------------------


def test_script_and_event_handlers_in_a_reply_render_inert(page, chat_server, tgi, artifacts):
    # Record every <script>/<img>/[onerror] element ever inserted into the chat log, even for a moment (while
    # streaming, or during the history re-render after the reload), not just what is left at the end.
    page.context.add_init_script(INSERTION_WATCH_JS)
    join(page, chat_server, "chat-pid-xss")
    go_to_assisted_item(page, with_passage=False)
    tgi.configure(reply=XSS_REPLY)

    ask(page, 'Echo this: <img src=x onerror="window.__pwned=3"><script>window.__pwned=4</script>')
    wait_assistant_count(page, 1, "complete")

    def check_inert() -> None:
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("window.__chatInserted") == [], "markup from a message was inserted as elements"
        assert page.locator("#chat-log script").count() == 0
        assert page.locator("#chat-log img").count() == 0
        assert page.locator("#chat-log [onerror]").count() == 0
        reply = _norm(last_assistant(page)["text"])
        assert "<script>window.__pwned=1</script>" in reply, reply  # shown as text
        assert 'onerror="window.__pwned=2"' in reply, reply
        assert "<script>" in page.inner_text("#chat-log .msg.user .body")

    check_inert()
    page.screenshot(path=str(artifacts / "chat-inert.png"), full_page=True)
    page.reload()  # the history path renders the stored messages too
    wait_connected(page)
    page.wait_for_selector("#chat-log .msg.assistant.complete", timeout=WAIT_MS)
    page.wait_for_timeout(300)  # an onerror would fire as soon as a broken image was inserted
    check_inert()
    # The watcher is not vacuous: an <img> put into the log is recorded.
    page.evaluate("document.getElementById('chat-log').appendChild(document.createElement('img'))")
    page.wait_for_function("() => window.__chatInserted.length === 1", timeout=WAIT_MS)
    assert_no_script_errors(page)


# --- 4. a message typed while a reply streams is sent afterwards --------------------------------------------------


def test_a_message_typed_while_a_reply_streams_is_sent_when_it_ends_even_through_a_refresh(
    page, chat_server, tgi, artifacts
):
    join(page, chat_server, "chat-pid-queue")
    token, position = go_to_assisted_item(page, with_passage=False)
    tgi.push_reply(LONG_REPLY, SHORT_REPLY)

    ask(page, "What is the story about?")
    page.wait_for_selector("#chat-log .msg.assistant.streaming", timeout=WAIT_MS)
    assert page.is_visible("#chat-stop")
    follow_up = "And who is the quartermaster?"
    page.fill("#chat-input", follow_up)
    page.press("#chat-input", "Enter")
    page.wait_for_selector("#chat-log .msg.user.queued", timeout=WAIT_MS)
    assert page.input_value("#chat-input") == ""  # emptied only now that the server has it
    assert _norm(page.inner_text("#chat-log .msg.user.queued .body")) == follow_up
    assert "queued" in page.inner_text("#chat-log .msg.user.queued .speaker")
    assert last_assistant(page)["streaming"], "the first reply ended before the follow-up was queued"
    page.screenshot(path=str(artifacts / "chat-queued.png"), full_page=True)

    page.reload()  # the queued message lives on the server
    wait_connected(page)
    page.wait_for_selector("#chat-log .msg.user.queued", timeout=WAIT_MS)

    wait_assistant_count(page, 2, "complete")
    assert page.locator("#chat-log .msg.user.queued").count() == 0
    assert page.is_hidden("#chat-error"), page.inner_text("#chat-error")
    assert page.is_hidden("#chat-stop")
    speakers = [_norm(t) for t in page.locator("#chat-log .msg .speaker").all_inner_texts()]
    assert speakers == ["You", "Assistant", "You", "Assistant"], speakers
    assert _norm(last_assistant(page)["text"]) == _norm(SHORT_REPLY)
    page.screenshot(path=str(artifacts / "chat-queued-answered.png"), full_page=True)

    db = trial_db(chat_server, token, position)
    assert [(m["role"], m["status"], m["content"]) for m in db["messages"]] == [
        ("user", "complete", "What is the story about?"),
        ("assistant", "complete", LONG_REPLY),
        ("user", "complete", follow_up),
        ("assistant", "complete", SHORT_REPLY),
    ]
    assert_no_script_errors(page)


# --- 5. Stop ----------------------------------------------------------------------------------------------------


def test_stop_ends_the_reply_where_it_is_and_keeps_what_was_shown(page, chat_server, tgi, artifacts):
    join(page, chat_server, "chat-pid-stop")
    token, position = go_to_assisted_item(page, with_passage=False)
    ask(page, "Please explain the whole story in detail.")
    page.wait_for_function(
        "() => { const b = document.querySelector('#chat-log .msg.assistant.streaming .body');"
        " return b && b.textContent.length > 40; }",
        timeout=WAIT_MS,
    )
    page.click("#chat-stop")
    page.wait_for_selector("#chat-log .msg.assistant.stopped", timeout=WAIT_MS)
    stopped = last_assistant(page)
    notice = _norm(page.inner_text("#chat-log .msg.assistant.stopped .notice"))
    assert notice == "You stopped this reply.", notice
    assert page.locator("#chat-log .msg.assistant.stopped button.retry").count() == 0
    assert page.is_hidden("#chat-stop")
    assert 40 <= stopped["length"] < len(LONG_REPLY)
    page.screenshot(path=str(artifacts / "chat-stopped.png"), full_page=True)
    deadline = time.monotonic() + 5
    while tgi.in_flight and time.monotonic() < deadline:  # the model's request was cancelled
        time.sleep(0.1)
    assert tgi.in_flight == 0

    db = trial_db(chat_server, token, position)
    reply = db["messages"][1]
    assert reply["status"] == "stopped" and _norm(reply["content"]) == _norm(stopped["text"])
    assert LONG_REPLY.startswith(reply["content"])

    # The chat goes on after a Stop.
    tgi.push_reply(SHORT_REPLY)
    ask(page, "A short answer then?")
    wait_assistant_count(page, 1, "complete")
    assert _norm(last_assistant(page)["text"]) == _norm(SHORT_REPLY)
    assert_no_script_errors(page)
