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
    unaided = await sync_to_async(lambda: trial.participant.trials.filter(condition__kind="unaided").first())()
    token = await sync_to_async(lambda: trial.participant.token)()
    ws = WebsocketCommunicator(APP, f"/ws/chat/{token}/{unaided.position}/")
    connected, code = await ws.connect()
    assert not connected and code == 4404


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
