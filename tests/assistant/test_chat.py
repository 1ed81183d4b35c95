"""The chat end to end (assistant.chat through the participant's socket): a real websocket app, the real
huggingface_hub client, a wire-exact fake TGI."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.utils import timezone

from oversight.assistant import chat, generation, live, pages, services
from oversight.assistant.models import ChatMessage
from oversight.assistant.services import DEAD_AFTER_S, RATE_LIMIT_MESSAGES, RATE_LIMIT_WINDOW_S, STALE_AFTER_S
from oversight.core import counters
from oversight.core.broadcast import bind_event_loop
from oversight.core.models import Condition, Event, ModelEndpoint, Trial
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import Answer, trial_show, trial_submit
from oversight.realtime.routing import websocket_urlpatterns
from oversight_dev.faketgi import AsyncFakeTGI
from tests.factories import make_study

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

PASSAGE = (
    "The survey ship Halcyon carried four crew.\n\nOn the ninth day the quartermaster cut the water ration "
    "to two point four liters. Nobody could say why the machine had done it."
)
APP = bind_event_loop(URLRouter(websocket_urlpatterns))  # as oversight/asgi.py wraps it


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # with Redis this also empties the rate-limit counters and live texts
    counters.reset()  # the in-process rate-limit counters


def _setup(base_url: str, *, kind="tgi", time_limit_s=300, timeout_s=5.0, **condition_fields) -> Trial:
    study = make_study(slug="chat", n_items=1, time_limit_s=time_limit_s, launch=False, passage=PASSAGE)
    endpoint = ModelEndpoint.objects.create(
        name="fake",
        kind=kind,
        base_url=base_url,
        request_timeout_s=timeout_s,
        model_label="tgi",
        simulation={"ttft_ms": 0, "tokens_per_s": 0},
    )
    Condition.objects.filter(study=study, kind="assisted").update(
        endpoint=endpoint, system_prompt="Be helpful.", sampling={"max_tokens": 200}, **condition_fields
    )
    from oversight.core.services.studies import study_launch

    study_launch(study=study)
    participant = participant_join(study=study, params={"pid": "chatter"}, consent=True)
    trial = participant.trials.get(condition__kind="assisted", role="scored")
    return trial_show(trial=trial)


async def setup(base_url, **kw) -> Trial:
    return await sync_to_async(_setup)(base_url, **kw)


async def connect(trial: Trial, reconnect=False) -> tuple[WebsocketCommunicator, dict]:
    token = await sync_to_async(lambda: trial.participant.token)()
    ws = WebsocketCommunicator(APP, f"/ws/chat/{token}/{trial.position}/")
    connected, _ = await ws.connect()
    assert connected
    return ws, await hello(ws, reconnect=reconnect)


async def hello(ws, *, reconnect=False) -> dict:
    """Ask for the history, as the page does on (re)connecting and on a gap in a reply's deltas.

    The socket joins the trial's group before the page asks, so a streaming reply's frames can come before the
    history; the page (chat.js) applies them and then lets the history replace what it shows, and so does this.
    The history may be a little older than the frames before it (the reply's text is read from where it is
    kept, not from the frames): the next delta then starts past its end, and the page asks again."""
    await ws.send_json_to({"type": "hello", "reconnect": reconnect})
    while (history := await ws.receive_json_from(timeout=5))["type"] in {"delta", "message"}:
        pass
    assert history["type"] == "history"
    return history


async def until_final(ws, text="", timeout=10) -> tuple[str, dict]:
    """Collect deltas (applying offsets as the page does) until the reply's final message arrives."""
    while True:
        frame = await ws.receive_json_from(timeout=timeout)
        if frame["type"] == "delta":
            assert frame["offset"] <= len(text), "a gap in the stream"
            text += frame["text"][len(text) - frame["offset"] :]
        elif (
            frame["type"] == "message"
            and frame["message"]["role"] == "assistant"
            and frame["message"]["status"] != "streaming"
        ):
            return text, frame["message"]


async def send(ws, text, client_id="") -> None:
    await ws.send_json_to({"type": "send", "text": text, "client_id": client_id})


async def asked(ws, text, client_id="") -> dict:
    """Send a message that starts a reply: returns the reply's placeholder (after the message itself)."""
    await send(ws, text, client_id)
    assert (await ws.receive_json_from(timeout=5))["message"]["role"] == "user"
    placeholder = (await ws.receive_json_from(timeout=5))["message"]
    assert placeholder["status"] == "streaming"
    return placeholder


async def queued(ws, text, client_id="", streaming="") -> tuple[dict, str]:
    """Send a message while a reply streams: returns it as stored, queued behind that reply, and the streaming
    reply's text so far (`streaming` plus the deltas that came first)."""
    await send(ws, text, client_id)
    frame = await ws.receive_json_from(timeout=5)
    while frame["type"] == "delta":
        assert frame["offset"] <= len(streaming), "a gap in the stream"
        streaming += frame["text"][len(streaming) - frame["offset"] :]
        frame = await ws.receive_json_from(timeout=5)
    assert frame["message"]["role"] == "user" and frame["message"]["status"] == "queued", frame
    return frame["message"], streaming


async def streamed(ws, at_least: int) -> str:
    """Collect deltas (as the page applies them) until the reply's text is `at_least` characters long."""
    text = ""
    while len(text) < at_least:
        frame = await ws.receive_json_from(timeout=5)
        if frame["type"] == "delta":
            assert frame["offset"] <= len(text), "a gap in the stream"
            text += frame["text"][len(text) - frame["offset"] :]
    return text


async def left_streaming(trial, *, content: str, owner: str = "", silent_s: float = 0.0) -> ChatMessage:
    """A participant's message and a reply to it that another web process is (or was) generating: `content` is
    its last flush, `silent_s` the age of its last heartbeat."""

    def store():
        user = ChatMessage.objects.create(trial=trial, seq=1, role="user", content="Hi")
        return ChatMessage.objects.create(
            trial=trial,
            seq=2,
            role="assistant",
            status="streaming",
            content=content,
            reply_to=user,
            owner=owner,
            heartbeat_at=timezone.now() - timedelta(seconds=silent_s),
        )

    return await sync_to_async(store)()


async def messages(trial) -> list[ChatMessage]:
    return await sync_to_async(lambda: list(ChatMessage.objects.filter(trial=trial).order_by("seq")))()


async def test_it_streams_a_reply_progressively_and_persists_it_with_its_metrics():
    async with AsyncFakeTGI(ttft_ms=20, tokens_per_s=200, reply="The ration fell because of a fifth share.") as tgi:
        trial = await setup(tgi.url)
        ws, history = await connect(trial)
        assert history["messages"] == [] and history["open"] is True
        await send(ws, "Why was the ration cut?")
        user = await ws.receive_json_from(timeout=5)
        assert user["message"]["role"] == "user" and user["message"]["text"] == "Why was the ration cut?"
        placeholder = await ws.receive_json_from(timeout=5)
        assert placeholder["message"]["status"] == "streaming"
        first = await ws.receive_json_from(timeout=5)
        assert first["type"] == "delta" and first["offset"] == 0
        # The participant's message was stored before the first token reached the page.
        stored = await messages(trial)
        assert stored[0].role == "user" and stored[0].content == "Why was the ration cut?"
        text, final = await until_final(ws, text=first["text"])
        assert text == "The ration fell because of a fifth share."
        assert final["status"] == "complete"
        assert "fifth share" in final["html"]
        reply = (await messages(trial))[1]
        assert reply.content == "The ration fell because of a fifth share."
        assert reply.finish_reason in {"stop", "length", "eos_token"}
        assert reply.completion_tokens and reply.completion_tokens > 3
        assert reply.prompt_tokens and reply.ttft_ms is not None and reply.total_ms >= reply.ttft_ms
        assert reply.sampling == {"max_tokens": 200}
        await ws.disconnect()


async def test_a_reconnect_mid_stream_shows_the_history_and_the_reply_continues_without_loss():
    reply = " ".join(f"word{i}" for i in range(60))
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=100, reply=reply) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "Tell me a long story.")
        seen = await streamed(ws, 40)
        await ws.disconnect()  # the page is refreshed mid-stream
        await asyncio.sleep(0.2)
        ws2, history = await connect(trial, reconnect=True)
        streaming = history["messages"][-1]
        assert streaming["status"] == "streaming" and streaming["text"].startswith(seen[:40])
        text = streaming["text"]
        while True:
            frame = await ws2.receive_json_from(timeout=10)
            if frame["type"] == "delta" and frame["offset"] > len(text):  # a gap: ask again, as the page does
                last = (await hello(ws2))["messages"][-1]
                text = last["text"]
                if last["status"] == "complete":
                    break
            elif frame["type"] == "delta":
                text += frame["text"][len(text) - frame["offset"] :]
            elif frame["type"] == "message" and frame["message"]["status"] == "complete":
                break
        assert text == reply
        assert (await messages(trial))[1].content == reply
        assert await sync_to_async(Event.objects.filter(trial=trial, kind=Event.Kind.RECONNECT).count)() == 1
        await ws2.disconnect()


async def test_after_a_reset_the_models_context_holds_only_later_turns_plus_the_passage():
    async with AsyncFakeTGI(reply="Noted.") as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "First question about the ship?")
        await until_final(ws)
        await ws.send_json_to({"type": "reset"})
        reset = await ws.receive_json_from(timeout=5)
        assert reset["message"]["role"] == "reset"
        await send(ws, "A fresh question.")
        await until_final(ws)
        first, second = [r.json["messages"] for r in tgi.requests if r.path == "/v1/chat/completions"]
        assert first[0] == {"role": "system", "content": "Be helpful."}
        assert second[0] == {"role": "system", "content": "Be helpful."}
        assert len(second) == 2 and second[1]["role"] == "user"
        assert second[1]["content"].startswith("Here is a story:\n\nThe survey ship Halcyon")
        assert second[1]["content"].endswith("A fresh question.")
        assert "First question" not in str(second)
        # The question itself is not sent unless the condition says so.
        assert "Question number" not in str(second)
        roles = [m.role for m in await messages(trial)]
        assert roles == ["user", "assistant", "reset", "user", "assistant"]
        await ws.disconnect()


FAULTS = [
    ("refused", {"down": True}, "unavailable", "not reachable"),
    ("hang", {"hang": True}, "timeout", "took too long"),
    ("422", {"http_status": 422}, None, None),
    ("424", {"http_status": 424}, "generation", "ran into a problem"),
    ("429", {"http_status": 429}, "busy", "busy"),
    ("500", {"http_status": 500}, "generation", "ran into a problem"),
    ("503", {"http_status": 503}, "unavailable", "not reachable"),
    ("mid-stream", {"stream_error_after": 3}, "generation", "ran into a problem"),
    ("mid-stream-legacy", {"stream_error_after": 3, "chat_error_shape": "legacy"}, "generation", "ran into a problem"),
    ("overloaded-in-stream", {"stream_error_after": 0, "stream_error_type": "overloaded"}, "busy", "busy"),
    ("malformed", {"malformed_json_after": 2}, None, None),
]


@pytest.mark.parametrize("name,fault,kind,human", FAULTS, ids=[f[0] for f in FAULTS])
async def test_a_tgi_fault_shows_a_human_message_with_retry_and_the_answer_can_still_be_submitted(
    name, fault, kind, human
):
    async with AsyncFakeTGI(reply="A perfectly good reply with several words in it.", tokens_per_s=0) as tgi:
        trial = await setup(tgi.url, timeout_s=1.0)
        await tgi.configure(**fault)
        ws, _ = await connect(trial)
        await send(ws, "Help?")
        _, final = await until_final(ws, timeout=10)
        assert final["status"] == "failed"
        assert "try again" in final["notice"]
        if human:
            assert human in final["notice"]
        stored = (await messages(trial))[1]
        assert stored.status == "failed" and stored.error
        if kind:
            assert stored.error_kind == kind
        # Retry after the fault clears gets a reply.
        await tgi.configure(reset=True, reply="Recovered.")
        await ws.send_json_to({"type": "retry"})
        _, again = await until_final(ws)
        assert again["status"] == "complete" and "Recovered." in again["html"]
        # The question can still be answered.
        answered = await sync_to_async(trial_submit)(trial=trial, answer=Answer(choice=1, confidence=60))
        assert answered.status == Trial.Status.ANSWERED
        await ws.disconnect()


async def test_a_reply_with_html_payloads_renders_inert():
    payload = 'Look: <script>alert(1)</script> and <img src=x onerror="alert(2)"> and [x](javascript:alert(3))'
    async with AsyncFakeTGI(reply=payload) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "Show me HTML")
        _, final = await until_final(ws)
        html = final["html"].lower()
        assert "<script" not in html and "<img" not in html and "onerror" not in html and "javascript:" not in html
        assert "&lt;script&gt;" in html  # still visible, as text
        await ws.disconnect()


async def test_a_verified_quote_is_marked_with_its_place_in_the_passage():
    quote = "the quartermaster cut the water ration to two point four liters"
    async with AsyncFakeTGI(reply=f'The story says "{quote}." And also "the moon was made of green cheese".') as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "Quote it")
        _, final = await until_final(ws)
        verified = [q for q in final["quotes"] if q["verified"]]
        unverified = [q for q in final["quotes"] if not q["verified"]]
        assert len(verified) == 1 and len(unverified) == 1
        assert PASSAGE[verified[0]["start"] : verified[0]["end"]].lower().startswith("the quartermaster cut")
        assert 'class="quote verified"' in final["html"] and 'class="quote unverified"' in final["html"]
        await ws.disconnect()


async def test_it_enforces_the_message_cap_and_the_turn_cap_counting_a_queued_message():
    async with AsyncFakeTGI(ttft_ms=800, reply="ok") as tgi:
        trial = await setup(tgi.url, max_message_chars=20, max_turns=2)
        ws, _ = await connect(trial)
        await send(ws, "x" * 21)
        error = await ws.receive_json_from(timeout=5)
        assert error == {
            "type": "error",
            "message": "Your message is 21 characters long; the limit is 20. Please shorten it.",
        }
        await asked(ws, "one")
        assert (await queued(ws, "two"))[0]["text"] == "two"  # while the reply to "one" waits for its first token
        await send(ws, "three")
        capped = await ws.receive_json_from(timeout=5)
        assert capped["message"] == "You have used all 2 messages for this question."
        await until_final(ws)
        await until_final(ws)
        assert [m.content for m in await messages(trial) if m.role == "user"] == ["one", "two"]
        await ws.disconnect()


async def test_a_message_sent_while_a_reply_streams_is_queued_and_answered_once_the_reply_ends():
    first_answer = "First answer, told slowly " + " ".join(["over"] * 40) + " many tokens."
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=60, reply=first_answer) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        first = await asked(ws, "Why?", client_id="c1")
        waiting, so_far = await queued(ws, "And how?", client_id="c2")
        assert waiting["client_id"] == "c2"
        # Stored at once, before the reply it waits for has ended.
        assert [(m.role, m.status) for m in await messages(trial)] == [
            ("user", "complete"),
            ("assistant", "streaming"),
            ("user", "queued"),
        ]
        await tgi.configure(reply="Second answer.")
        text, final = await until_final(ws, text=so_far)
        assert final["id"] == first["id"] and final["status"] == "complete"
        # Then the queued message is sent, and answered.
        sent = await ws.receive_json_from(timeout=5)
        assert sent["message"]["id"] == waiting["id"] and sent["message"]["status"] == "complete"
        second_text, second = await until_final(ws)
        assert second["status"] == "complete" and second_text == "Second answer."
        stored = await messages(trial)
        assert [(m.role, m.status) for m in stored] == [
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert stored[3].reply_to_id == stored[2].pk
        # One reply at a time: the model was asked the second question after its first answer was finished,
        # with the whole conversation so far.
        first_request, second_request = [r for r in tgi.requests if r.path == "/v1/chat/completions"]
        assert second_request.time >= stored[1].finished_at.timestamp() - 0.01
        turns = second_request.json["messages"]
        assert [m["role"] for m in turns] == ["system", "user", "assistant", "user"]
        assert turns[2]["content"] == text and turns[3]["content"] == "And how?"
        await ws.disconnect()


async def test_messages_queued_behind_a_reply_are_answered_together_as_one_turn():
    async with AsyncFakeTGI(ttft_ms=800, reply="ok") as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await asked(ws, "One.")
        for text in ("Two.", "Three."):
            await queued(ws, text)
        await until_final(ws)
        _, final = await until_final(ws)
        assert final["status"] == "complete"
        second_request = [r for r in tgi.requests if r.path == "/v1/chat/completions"][1].json["messages"]
        assert [m["role"] for m in second_request] == ["system", "user", "assistant", "user"]
        assert second_request[3]["content"] == "Two.\n\nThree."
        stored = await messages(trial)
        assert [m.status for m in stored] == ["complete"] * 5
        assert stored[4].context["message_ids"] == [stored[0].pk, stored[1].pk, stored[2].pk, stored[3].pk]
        await ws.disconnect()


async def test_a_queued_message_outlives_the_page_and_is_answered_while_it_is_closed():
    async with AsyncFakeTGI(ttft_ms=800, reply="Answered.") as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await asked(ws, "First?")
        await queued(ws, "Second?")
        await ws.disconnect()  # the participant refreshes (or closes the tab) before the first reply ends
        for _ in range(50):
            stored = await messages(trial)
            if len(stored) == 4 and stored[3].status == "complete":
                break
            await asyncio.sleep(0.1)
        assert [(m.role, m.status, m.content) for m in stored] == [
            ("user", "complete", "First?"),
            ("assistant", "complete", "Answered."),
            ("user", "complete", "Second?"),
            ("assistant", "complete", "Answered."),
        ]
        ws2, history = await connect(trial, reconnect=True)
        assert [m["status"] for m in history["messages"]] == ["complete"] * 4
        await ws2.disconnect()


async def test_a_resent_message_with_the_same_client_id_is_stored_once():
    async with AsyncFakeTGI(reply="ok") as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "hello", client_id="abc")
        await until_final(ws)
        await send(ws, "hello", client_id="abc")
        await ws.receive_json_from(timeout=5)
        await ws.receive_nothing(0.3)
        assert [m.role for m in await messages(trial)] == ["user", "assistant"]
        await ws.disconnect()


async def test_the_deadline_cancels_a_running_generation_and_closes_the_chat():
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=5, reply=" ".join(["slow"] * 50)) as tgi:
        trial = await setup(tgi.url, time_limit_s=300)
        await sync_to_async(Trial.objects.filter(pk=trial.pk).update)(deadline_at=timezone.now() + timedelta(seconds=1))
        ws, _ = await connect(trial)
        await send(ws, "Take your time")
        _, final = await until_final(ws, timeout=10)
        assert final["status"] == "cancelled" and "time ran out" in final["notice"]
        stored = (await messages(trial))[1]
        assert stored.error_kind == "deadline" and stored.content.startswith("slow")
        await send(ws, "Anyone there?")
        closed = await ws.receive_json_from(timeout=5)
        assert closed["message"] == "Time is up for this question: the chat is now read-only."
        await ws.disconnect()


async def test_a_reply_whose_process_died_is_marked_interrupted_keeping_its_partial_text():
    async with AsyncFakeTGI(reply="Fresh answer.") as tgi:
        trial = await setup(tgi.url)
        orphan = await left_streaming(trial, content="Half an ans")  # from before owners: the long rule
        watching, history = await connect(trial)
        assert history["messages"][-1]["status"] == "streaming"
        silent_since = timezone.now() - timedelta(seconds=STALE_AFTER_S + 5)
        await sync_to_async(ChatMessage.objects.filter(pk=orphan.pk).update)(heartbeat_at=silent_since)
        ws, history = await connect(trial, reconnect=True)
        last = history["messages"][-1]
        assert last["status"] == "interrupted" and "interrupted" in last["notice"]
        assert (await messages(trial))[1].content == "Half an ans"
        # Pages already watching the trial are told too.
        announced = await watching.receive_json_from(timeout=5)
        assert announced["type"] == "message" and announced["message"]["status"] == "interrupted"
        await ws.send_json_to({"type": "retry"})
        _, final = await until_final(ws)
        assert final["status"] == "complete"
        await ws.disconnect()
        await watching.disconnect()


async def test_the_simulated_assistant_answers_without_a_server():
    trial = await setup("", kind="simulated")
    ws, _ = await connect(trial)
    await send(ws, "Which answer is right?")
    text, final = await until_final(ws)
    assert final["status"] == "complete" and len(text) > 10
    stored = (await messages(trial))[1]
    assert stored.model_id and stored.completion_tokens
    await ws.disconnect()


async def test_a_participant_over_the_rate_limit_is_told_to_wait_and_nothing_is_stored():
    async with AsyncFakeTGI(reply="ok") as tgi:
        trial = await setup(tgi.url)
        participant_id = await sync_to_async(lambda: trial.participant_id)()
        for _ in range(RATE_LIMIT_MESSAGES):  # a minute's allowance already used (on other items, say)
            counters.hit(f"chat:rate:{participant_id}", RATE_LIMIT_WINDOW_S)
        ws, _ = await connect(trial)
        await send(ws, "One more?")
        refused = await ws.receive_json_from(timeout=5)
        assert refused == {
            "type": "error",
            "message": "You are sending messages very quickly. Please wait a moment and try again.",
        }
        assert await messages(trial) == []
        await ws.disconnect()


async def test_a_slow_first_token_keeps_the_reply_heartbeating_so_it_is_not_taken_for_dead(monkeypatch):
    monkeypatch.setattr(generation, "FLUSH_INTERVAL_S", 0.05)
    async with AsyncFakeTGI(ttft_ms=700, tokens_per_s=200, reply="Late but fine.") as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        placeholder = await asked(ws, "Think hard.")
        await asyncio.sleep(0.5)  # no token yet
        stored = await sync_to_async(ChatMessage.objects.get)(pk=placeholder["id"])
        assert stored.status == "streaming" and stored.content == ""
        assert stored.heartbeat_at > stored.created_at
        text, final = await until_final(ws)
        assert text == "Late but fine." and final["status"] == "complete"
        await ws.disconnect()


async def test_a_growing_reply_is_persisted_while_it_streams(monkeypatch):
    monkeypatch.setattr(generation, "FLUSH_INTERVAL_S", 0.05)
    reply = " ".join(f"w{i}" for i in range(40))
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=40, reply=reply) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "Go on.")
        await ws.receive_json_from(timeout=5)
        placeholder = (await ws.receive_json_from(timeout=5))["message"]
        await asyncio.sleep(0.4)
        stored = await sync_to_async(ChatMessage.objects.get)(pk=placeholder["id"])
        assert stored.status == "streaming" and stored.content and reply.startswith(stored.content)
        assert len(stored.content) < len(reply)
        text, _ = await until_final(ws)
        assert text == reply
        await ws.disconnect()


async def test_a_frame_that_cannot_be_relayed_does_not_end_the_reply(monkeypatch):
    # Every frame's relay starts with one Redis trip (its live text, and whether pages are open elsewhere), or
    # with storing the live text in-process: that is what fails while Redis restarts.
    real_elsewhere = pages._elsewhere
    failures = {"left": 3}

    async def flaky_elsewhere(trial_id, live_text):
        if live_text is not None and failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("Redis is restarting")
        return await real_elsewhere(trial_id, live_text)

    monkeypatch.setattr(pages, "_elsewhere", flaky_elsewhere)
    reply = " ".join(f"t{i}" for i in range(30))
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=150, reply=reply) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "Tell me.")
        while True:  # the page may see a gap where frames were refused; the final message carries it all
            frame = await ws.receive_json_from(timeout=10)
            if (
                frame["type"] == "message"
                and frame["message"]["role"] == "assistant"
                and frame["message"]["status"] != "streaming"
            ):
                break
        assert frame["message"]["status"] == "complete"
        assert failures["left"] == 0
        assert (await messages(trial))[1].content == reply
        await ws.disconnect()


async def test_stop_ends_the_reply_keeping_what_was_shown_and_cancels_the_model_request():
    reply = " ".join(f"word{i}" for i in range(200))
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=40, reply=reply) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "Tell me everything.")
        text = await streamed(ws, 30)
        assert tgi.in_flight == 1
        await ws.send_json_to({"type": "stop"})
        text, final = await until_final(ws, text=text)
        assert final["status"] == "stopped" and final["notice"] == "You stopped this reply."
        assert "retry" not in final
        stored = (await messages(trial))[1]
        assert stored.status == "stopped" and stored.content == text and reply.startswith(text)
        assert len(text) < len(reply) and stored.ttft_ms is not None and stored.finished_at
        # The model's stream was closed: the server stops generating.
        for _ in range(20):
            if tgi.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert tgi.in_flight == 0
        sent_then = tgi.tokens_sent
        await asyncio.sleep(0.3)
        assert tgi.tokens_sent == sent_then
        # The conversation goes on, and the model sees the part of its reply the participant saw.
        await tgi.configure(reply="Short now.")
        await send(ws, "Shorter, please.")
        _, again = await until_final(ws)
        assert again["status"] == "complete"
        turns = [r for r in tgi.requests if r.path == "/v1/chat/completions"][-1].json["messages"]
        assert [m["role"] for m in turns] == ["system", "user", "assistant", "user"] and turns[2]["content"] == text
        await ws.disconnect()


async def test_stop_with_a_message_queued_sends_that_message_next():
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=20, reply=" ".join(["slow"] * 100)) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await asked(ws, "Go on.")
        _, so_far = await queued(ws, "Actually, a different question.")  # the reply may have begun to stream
        await tgi.configure(reply="The different answer.", tokens_per_s=0)
        await ws.send_json_to({"type": "stop"})
        _, stopped = await until_final(ws, so_far)
        assert stopped["status"] == "stopped"
        text, answered = await until_final(ws)
        assert answered["status"] == "complete" and text == "The different answer."
        assert [m.status for m in await messages(trial)] == ["complete", "stopped", "complete", "complete"]
        await ws.disconnect()


async def test_stop_when_no_reply_is_streaming_changes_nothing():
    trial = await setup("", kind="simulated")
    ws, _ = await connect(trial)
    await ws.send_json_to({"type": "stop"})
    assert await ws.receive_nothing(timeout=0.3)
    assert await messages(trial) == []
    await ws.disconnect()


async def test_a_reply_generated_by_another_process_is_stopped_with_the_text_its_pages_were_shown():
    async with AsyncFakeTGI(reply="ok") as tgi:
        trial = await setup(tgi.url)
        reply = await left_streaming(trial, content="Half", owner="another-web-process")
        await live.aset(reply.pk, "Half an answer")  # the last frame its pages were sent
        ws, history = await connect(trial)
        assert history["messages"][-1]["status"] == "streaming"
        await ws.send_json_to({"type": "stop"})
        stopped = await ws.receive_json_from(timeout=5)
        assert stopped["message"]["status"] == "stopped" and "Half an answer" in stopped["message"]["html"]
        stored = (await messages(trial))[1]
        assert (stored.status, stored.content) == ("stopped", "Half an answer")
        await ws.disconnect()


async def test_a_reply_stopped_from_another_process_stops_generating_here_and_publishes_nothing_more(monkeypatch):
    monkeypatch.setattr(generation, "FLUSH_INTERVAL_S", 0.05)
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=30, reply=" ".join(["more"] * 200)) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        reply = await asked(ws, "Go.")
        await ws.receive_json_from(timeout=5)  # a first frame
        # What a Stop on a page served by another process does: the database side of it.
        await sync_to_async(services.chat_stop)(trial_id=trial.pk)
        stored = await sync_to_async(ChatMessage.objects.get)(pk=reply["id"])
        assert stored.status == "stopped"
        for _ in range(40):
            if tgi.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert tgi.in_flight == 0, "the generating process did not notice the stop"
        await asyncio.sleep(0.2)
        assert reply["id"] not in generation._running
        again = await sync_to_async(ChatMessage.objects.get)(pk=reply["id"])
        assert (again.status, again.content) == ("stopped", stored.content)
        await ws.disconnect()


async def test_a_send_after_the_generating_process_died_is_answered_once_its_reply_has_been_silent_two_seconds():
    async with AsyncFakeTGI(reply="Here now.") as tgi:
        trial = await setup(tgi.url)
        dead = await left_streaming(trial, content="Cut sh", owner="a-killed-web-process")
        ws, history = await connect(trial)
        assert history["messages"][-1]["status"] == "streaming"
        # Its process is killed: no more heartbeats (and no lease). Two seconds later the participant asks again.
        silent_since = timezone.now() - timedelta(seconds=DEAD_AFTER_S + 0.1)
        await sync_to_async(ChatMessage.objects.filter(pk=dead.pk).update)(heartbeat_at=silent_since)
        await send(ws, "Are you there?")
        frames = [(await ws.receive_json_from(timeout=5))["message"] for _ in range(3)]
        assert [(m["role"], m["status"]) for m in frames] == [
            ("assistant", "interrupted"),
            ("user", "complete"),
            ("assistant", "streaming"),
        ]
        text, final = await until_final(ws)
        assert final["status"] == "complete" and text == "Here now."
        stored = await messages(trial)
        assert stored[1].pk == dead.pk and (stored[1].status, stored[1].content) == ("interrupted", "Cut sh")
        await ws.disconnect()


async def test_a_send_behind_a_reply_that_just_went_silent_is_queued_then_answered_when_it_is_found_dead(
    monkeypatch,
):
    monkeypatch.setattr(chat, "WATCH_EVERY_S", 0.2)
    async with AsyncFakeTGI(reply="Back.") as tgi:
        trial = await setup(tgi.url)
        await left_streaming(trial, content="Cut", owner="a-killed-web-process", silent_s=0.5)
        ws, history = await connect(trial)
        assert history["messages"][-1]["status"] == "streaming"  # not silent long enough to call it dead
        waiting, _ = await queued(ws, "Hello?")
        # Nobody else will answer it: the process that owed the reply is gone. This one checks, and ~2 s after
        # the reply's last heartbeat ends it and sends the message.
        interrupted = await ws.receive_json_from(timeout=5)
        assert interrupted["message"]["status"] == "interrupted"
        sent = await ws.receive_json_from(timeout=5)
        assert sent["message"]["id"] == waiting["id"] and sent["message"]["status"] == "complete"
        text, final = await until_final(ws)
        assert final["status"] == "complete" and text == "Back."
        await ws.disconnect()
