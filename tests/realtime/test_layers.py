"""The embedded default's channel layer keeps channels' in-memory semantics while sweeping less often."""

import asyncio

import pytest
from channels.exceptions import ChannelFull

from oversight.realtime.layers import InProcessChannelLayer

pytestmark = pytest.mark.asyncio


async def test_a_group_message_reaches_every_member_as_its_own_copy():
    layer = InProcessChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("trial", a)
    await layer.group_add("trial", b)
    message = {"type": "chat.delta", "text": "hi", "nested": {"n": 1}}
    await layer.group_send("trial", message)
    got_a, got_b = await layer.receive(a), await layer.receive(b)
    assert got_a == got_b == message
    got_a["nested"]["n"] = 2  # one consumer changing its copy changes nobody else's
    assert got_b["nested"]["n"] == 1 and message["nested"]["n"] == 1


async def test_a_message_of_plain_values_is_copied_for_each_member_too():
    layer = InProcessChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("trial", a)
    await layer.group_add("trial", b)
    frame = {"type": "chat.delta", "id": 7, "offset": 0, "text": "hi"}
    await layer.group_send("trial", frame)
    got_a, got_b = await layer.receive(a), await layer.receive(b)
    got_a["text"] = "changed"
    assert got_b == frame == {"type": "chat.delta", "id": 7, "offset": 0, "text": "hi"}


async def test_a_full_member_misses_a_group_message_and_the_others_still_get_it():
    layer = InProcessChannelLayer(capacity=2)
    full, fine = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("trial", full)
    await layer.group_add("trial", fine)
    await layer.send(full, {"type": "x"})
    await layer.send(full, {"type": "x"})
    with pytest.raises(ChannelFull):
        await layer.send(full, {"type": "x"})
    await layer.group_send("trial", {"type": "chat.message"})
    assert (await layer.receive(fine))["type"] == "chat.message"


async def test_expired_messages_are_still_swept_just_not_on_every_call():
    layer = InProcessChannelLayer(expiry=0)
    layer.SWEEP_EVERY_S = 0.0
    channel = await layer.new_channel()
    await layer.group_add("trial", channel)
    await layer.send(channel, {"type": "old"})
    await asyncio.sleep(0.01)
    layer._clean_expired()
    # As in channels: an expired message is dropped and its channel leaves every group.
    assert channel not in layer.channels and channel not in layer.groups.get("trial", {})


async def test_between_sweeps_the_layer_does_not_walk_every_channel():
    layer = InProcessChannelLayer()
    walked = []
    layer._remove_from_groups = walked.append  # called for each expired message found by a sweep
    layer.expiry = 0
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "old"})
    layer._swept_at = float("inf")  # a sweep just happened
    await layer.group_send("nobody", {"type": "x"})
    assert walked == []
