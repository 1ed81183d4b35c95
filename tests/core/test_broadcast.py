"""Channel-layer notes from sync service code: handed to the caller's loop, never holding the database thread."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from oversight.core import broadcast


@pytest.mark.asyncio
async def test_sync_code_under_a_bound_loop_returns_before_the_send_and_the_note_still_arrives(monkeypatch):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("notes", channel)
    release = asyncio.Event()
    real_group_send = layer.group_send

    async def slow_group_send(group, message):
        await release.wait()  # a Redis round trip that takes its time
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", slow_group_send)
    send_pending_when_service_returned = []

    def service():  # runs on an executor thread, as database work does
        broadcast.group_send("notes", {"type": "monitor.changed", "participant_id": 7})
        send_pending_when_service_returned.append(not release.is_set())

    async def app(scope, receive, send):
        await sync_to_async(service)()

    asyncio.get_running_loop().call_later(0.3, release.set)  # a blocking publish would wait for this
    await broadcast.bind_event_loop(app)({"type": "websocket"}, None, None)
    assert send_pending_when_service_returned == [True]
    assert await asyncio.wait_for(layer.receive(channel), 2) == {"type": "monitor.changed", "participant_id": 7}


@pytest.mark.asyncio
async def test_a_failed_send_is_logged_not_raised(monkeypatch):
    layer = get_channel_layer()

    async def broken(group, message):
        raise ConnectionError("Redis is down")

    class Log:  # the module's logger, observed directly: other tests may reconfigure logging (Celery does)
        warnings: list[str] = []

        def warning(self, msg, *args, **kwargs):
            self.warnings.append(msg % args)

    monkeypatch.setattr(layer, "group_send", broken)
    monkeypatch.setattr(broadcast, "log", Log())

    async def app(scope, receive, send):
        await sync_to_async(broadcast.group_send)("notes", {"type": "x"}, what="monitor note")

    await broadcast.bind_event_loop(app)({"type": "websocket"}, None, None)  # returns: nothing was raised
    for _ in range(200):
        if Log.warnings:
            break
        await asyncio.sleep(0.01)
    assert Log.warnings == ["could not publish a monitor note"]


def test_without_a_bound_loop_it_sends_synchronously(monkeypatch):
    sent = []

    class Layer:
        async def group_send(self, group, message):
            sent.append((group, message))

    monkeypatch.setattr(broadcast, "get_channel_layer", Layer)
    monkeypatch.setattr(broadcast, "_process_loop", None)  # a Celery worker or a management command
    broadcast.group_send("notes", {"type": "x"})
    assert sent == [("notes", {"type": "x"})]


@pytest.mark.asyncio
async def test_a_thread_without_the_context_sends_through_the_web_process_loop(monkeypatch):
    """The in-process deadline sweeper is a plain thread: its notes must go through the loop that owns the
    in-memory layer's queues, not a loop of its own."""
    import threading

    layer = get_channel_layer()
    sent_on = []
    real_group_send = layer.group_send

    async def recording_group_send(group, message):
        sent_on.append(threading.current_thread() is threading.main_thread())
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", recording_group_send)
    monkeypatch.setattr(broadcast, "_process_loop", None)

    async def app(scope, receive, send):
        pass

    await broadcast.bind_event_loop(app)({"type": "http"}, None, None)  # the first request binds the loop
    sweeper = threading.Thread(target=broadcast.group_send, args=("notes", {"type": "x"}))
    sweeper.start()
    await asyncio.to_thread(sweeper.join)
    for _ in range(100):
        if sent_on:
            break
        await asyncio.sleep(0.01)
    assert sent_on == [True]
