"""The participant's chat socket: it finds the trial, reads each frame, asks the chat service and relays."""

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.testing import WebsocketCommunicator

from oversight.assistant.models import ChatMessage
from tests.assistant.test_chat import APP, connect, messages, send, setup, until_final

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def simulated_trial():
    return await setup("", kind="simulated")  # replies at once, no server


async def test_an_unknown_token_or_an_unaided_trial_gets_no_chat():
    trial = await simulated_trial()
    ws = WebsocketCommunicator(APP, f"/ws/chat/nope/{trial.position}/")
    connected, code = await ws.connect()
    assert not connected and code == 4404
    await ws.disconnect()  # ends the refused consumer here, not by cancelling it when the test's loop closes
    unaided = await sync_to_async(lambda: trial.participant.trials.filter(condition__kind="unaided").first())()
    token = await sync_to_async(lambda: trial.participant.token)()
    ws = WebsocketCommunicator(APP, f"/ws/chat/{token}/{unaided.position}/")
    connected, code = await ws.connect()
    assert not connected and code == 4404
    await ws.disconnect()


@pytest.mark.parametrize("frame", [{"type": "dance"}, {"text": "no type"}, ["not", "an", "object"], "hello"])
async def test_a_frame_it_does_not_understand_is_answered_with_an_error_and_the_chat_goes_on(frame):
    trial = await simulated_trial()
    ws, _ = await connect(trial)
    await ws.send_json_to(frame)
    assert await ws.receive_json_from(timeout=5) == {"type": "error", "message": "Unknown request."}
    await send(ws, "Still there?")
    _, final = await until_final(ws)
    assert final["status"] == "complete"
    await ws.disconnect()


async def test_a_message_sent_from_one_page_reaches_every_page_open_on_the_trial():
    trial = await simulated_trial()
    sender, _ = await connect(trial)
    other, _ = await connect(trial)
    await send(sender, "Which one?", client_id="c1")
    for ws in (sender, other):
        user = await ws.receive_json_from(timeout=5)
        assert user["type"] == "message" and user["message"]["role"] == "user"
        assert user["message"]["text"] == "Which one?"
        _, final = await until_final(ws)
        assert final["status"] == "complete"
    assert [m.role for m in await messages(trial)] == ["user", "assistant"]
    await sender.disconnect()
    await other.disconnect()


async def test_a_refused_action_is_told_to_its_sender_only_and_publishes_nothing():
    trial = await simulated_trial()
    sender, _ = await connect(trial)
    other, _ = await connect(trial)
    await send(sender, "   ")
    assert await sender.receive_json_from(timeout=5) == {"type": "error", "message": "Type a message first."}
    await sender.send_json_to({"type": "retry"})
    assert await sender.receive_json_from(timeout=5) == {"type": "error", "message": "There is nothing to retry."}
    assert await other.receive_nothing(timeout=0.3)
    assert not await sync_to_async(ChatMessage.objects.filter(trial=trial).exists)()
    await sender.disconnect()
    await other.disconnect()


# --- Hostile input: an error frame, never a closed socket, and nothing lost -------------------------------------


async def assert_still_chatting(ws) -> None:
    await send(ws, "Still there?")
    _, final = await until_final(ws)
    assert final["status"] == "complete"


@pytest.mark.parametrize(
    "frame",
    [{"bytes_data": b"\x00\x01binary"}, {"text_data": "not json {"}, {"text_data": "[" * 100_000 + "]" * 100_000}],
    ids=["binary", "not-json", "nested-too-deep"],
)
async def test_a_frame_that_is_not_json_text_gets_an_error_frame_and_the_socket_stays_open(frame):
    trial = await simulated_trial()
    ws, _ = await connect(trial)
    if "bytes_data" in frame:
        await ws.send_to(bytes_data=frame["bytes_data"])
    else:
        await ws.send_to(text_data=frame["text_data"])
    assert await ws.receive_json_from(timeout=5) == {
        "type": "error",
        "message": "The chat could not read that message.",
    }
    await assert_still_chatting(ws)
    await ws.disconnect()


async def test_a_message_with_nul_characters_is_stored_without_them_and_the_sender_is_told():
    trial = await simulated_trial()
    ws, _ = await connect(trial)
    await send(ws, "Which\x00 option\x00?", client_id="nul\x00id")
    frames = []
    while not any(f["type"] == "message" and f["message"].get("html") for f in frames):  # until the reply is final
        frames.append(await ws.receive_json_from(timeout=5))
    notices = [f for f in frames if f["type"] == "notice"]  # to the sender alone
    user = next(f for f in frames if f["type"] == "message" and f["message"]["role"] == "user")
    assert user["message"]["text"] == "Which option?" and user["message"]["status"] == "complete"
    assert notices == [
        {
            "type": "notice",
            "message": "2 invisible NUL characters were removed from your message; the rest was sent as you wrote it.",
        }
    ]
    assert frames[-1]["message"]["status"] == "complete"
    stored = (await messages(trial))[0]
    assert (stored.content, stored.client_id) == ("Which option?", "nulid")
    event = await sync_to_async(lambda: trial.events.get(kind="chat_sent"))()
    assert event.data["nul_removed"] == 2
    await ws.disconnect()


async def test_a_message_with_a_lone_surrogate_is_stored_with_a_replacement_character():
    trial = await simulated_trial()
    ws, _ = await connect(trial)
    await ws.send_to(text_data='{"type": "send", "text": "half an emoji \\ud83d here", "client_id": "s1"}')
    user = await ws.receive_json_from(timeout=5)
    assert user["message"]["text"] == "half an emoji \ufffd here"
    await until_final(ws)
    assert (await messages(trial))[0].content == "half an emoji \ufffd here"
    await ws.disconnect()


async def test_a_megabyte_message_is_refused_with_its_real_length_and_nothing_is_stored():
    trial = await simulated_trial()
    ws, _ = await connect(trial)
    await send(ws, "x" * 1_000_000)
    assert await ws.receive_json_from(timeout=10) == {
        "type": "error",
        "message": "Your message is 1,000,000 characters long; the limit is 2,000. Please shorten it.",
    }
    assert await messages(trial) == []
    await assert_still_chatting(ws)
    await ws.disconnect()


@pytest.mark.parametrize("text", [["a", "list"], {"an": "object"}, 42, None], ids=["list", "object", "number", "null"])
async def test_a_send_whose_text_is_not_a_string_is_refused(text):
    trial = await simulated_trial()
    ws, _ = await connect(trial)
    await ws.send_json_to({"type": "send", "text": text, "client_id": "x"})
    assert await ws.receive_json_from(timeout=5) == {
        "type": "error",
        "message": "The chat could not read that message.",
    }
    assert await messages(trial) == []
    await ws.disconnect()
