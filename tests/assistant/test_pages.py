"""Frames go straight to the pages of the process generating the reply, and through the channel layer only
when a page is open on the trial in another process (assistant.pages)."""

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.layers import get_channel_layer

from oversight.assistant import pages
from oversight.core import redisclient
from oversight_dev.faketgi import AsyncFakeTGI
from tests.assistant.test_chat import connect, messages, send, setup, until_final

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

REPLY = " ".join(["token"] * 40)


@pytest.fixture
def layer_sends(monkeypatch):
    """The channel layer's group_sends, by message type."""
    layer = get_channel_layer()
    real = layer.group_send
    sent: list[str] = []

    async def counted(group, message):
        sent.append(message["type"])
        return await real(group, message)

    monkeypatch.setattr(layer, "group_send", counted)
    return sent


async def test_a_page_on_the_generating_process_gets_every_frame_without_the_channel_layer(layer_sends):
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=200, reply=REPLY) as tgi:
        trial = await setup(tgi.url)
        ws, _ = await connect(trial)
        await send(ws, "Go on.")
        text, final = await until_final(ws)
        await ws.disconnect()
    assert text == REPLY and final["status"] == "complete"
    assert (await messages(trial))[1].content == REPLY
    assert [kind for kind in layer_sends if kind.startswith("chat.")] == []  # (monitor notes still go by it)


@pytest.mark.redis
async def test_with_a_page_open_on_another_process_frames_go_through_the_channel_layer_once(layer_sends):
    async with AsyncFakeTGI(ttft_ms=0, tokens_per_s=200, reply=REPLY) as tgi:
        trial = await setup(tgi.url)
        # What the other process's consumer recorded when its page opened on the trial.
        await redisclient.async_client().sadd(pages._key(trial.pk), "another-web-process")
        try:
            ws, _ = await connect(trial)
            await send(ws, "Go on.")
            offsets, text = [], ""
            while True:
                frame = await ws.receive_json_from(timeout=10)
                if frame["type"] == "delta":
                    offsets.append(frame["offset"])
                    text += frame["text"][len(text) - frame["offset"] :]
                elif frame["type"] == "message" and frame["message"].get("html"):
                    break
            await ws.disconnect()
        finally:
            await redisclient.async_client().delete(pages._key(trial.pk))
    assert text == REPLY
    assert offsets == sorted(set(offsets))  # each frame once: not also delivered directly
    assert layer_sends.count("chat.delta") == len(offsets) and "chat.message" in layer_sends


async def test_a_page_that_closed_is_forgotten_by_its_process():
    trial = await setup("", kind="simulated")
    ws, _ = await connect(trial)
    assert len(pages._local[trial.pk]) == 1
    await ws.disconnect()
    assert trial.pk not in pages._local
    if pages.settings.REDIS_URL:
        assert not await redisclient.async_client().smembers(pages._key(trial.pk))
    assert await sync_to_async(lambda: trial.messages.count())() == 0
