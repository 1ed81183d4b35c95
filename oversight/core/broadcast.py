"""Publishing to channel-layer groups from synchronous service code, without holding the database thread.

Service functions run on the web process's one thread-sensitive executor thread. `async_to_sync(group_send)`
from there parks that thread until the event loop has run the send (and, with Redis, until Redis answers), so
every other request's database work queued behind a monitor note. When the sync code was called from an event
loop that `bind_event_loop` marked, the send is handed to that loop and the thread goes on at once; elsewhere
(Celery workers, management commands) it is sent synchronously as before.
"""

import asyncio
import contextvars
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# Copied into sync_to_async threads with the rest of the caller's context, so sync code can find its loop.
_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar("broadcast_loop", default=None)
_pending: set[asyncio.Task] = set()  # fire-and-forget sends stay referenced until they finish
# The web process's loop, for threads that did not inherit a context (the in-process deadline sweeper): the
# in-memory channel layer's queues belong to that loop and must not be touched from another thread's loop.
_process_loop: asyncio.AbstractEventLoop | None = None


def bind_event_loop(app):
    """ASGI middleware: code running on behalf of this app's connections may publish without waiting."""

    async def middleware(scope, receive, send):
        global _process_loop
        _process_loop = asyncio.get_running_loop()
        _loop.set(_process_loop)
        return await app(scope, receive, send)

    return middleware


def group_send(group: str, message: dict, *, what: str = "channel-layer note") -> None:
    """Send `message` to `group`; never raises (a note to a live view must not fail the write behind it)."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _loop.get() or _process_loop
    if loop is not None and not loop.is_closed() and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _spawn(layer, group, message, what)
        else:
            loop.call_soon_threadsafe(_spawn, layer, group, message, what)
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # noqa: BLE001 - see docstring
        log.warning("could not publish a %s", what, exc_info=True, extra={"group": group})


def _spawn(layer, group: str, message: dict, what: str) -> None:
    task = asyncio.get_running_loop().create_task(layer.group_send(group, message))
    _pending.add(task)
    task.add_done_callback(lambda t: _done(t, group, what))


def _done(task: asyncio.Task, group: str, what: str) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not publish a %s", what, exc_info=task.exception(), extra={"group": group})
