"""Running one reply: stream from the backend, relay coalesced frames, persist as it grows, finalise.

A generation is an asyncio task in the web process that accepted the message. It outlives the socket that
started it, so a refresh re-attaches: every page watching the trial is in the trial's channel-layer group,
and the text so far sits in `live` for a page that joins mid-reply. Frames carry the offset
of their text, so a page that got the snapshot and then overlapping frames drops what it already has.

All of a web process's synchronous database work shares one executor thread (asgiref's thread-sensitive
mode), so the hot path is shaped around it: a send is one trip to that thread (see services.ReplyJob), the
growing replies of every generation in the process are flushed together in one trip per interval, and
nothing per token touches it.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from oversight.assistant import live
from oversight.assistant.backends import AssistantError, stream_reply
from oversight.assistant.executor import chat_db
from oversight.assistant.models import ChatMessage
from oversight.assistant.services import (
    ReplyJob,
    chat_group,
    generation_finish,
    generation_flush,
    message_payload,
)

log = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.03  # coalesce tokens into ~30 ms frames: cheap to relay, still smooth to read
FLUSH_INTERVAL_S = 0.5  # persist the growing replies (and heartbeat) this often

_running: dict[int | str, asyncio.Task] = {}  # live key -> task; keeps tasks referenced until they finish


def _same(_job, value):
    return value


@dataclass(frozen=True)
class Target:
    """Where a generation's text goes: the chat's messages (`CHAT`), or a protocol transcript's turns
    (`assistant.debate.TURNS`). Every function but `after` is sync; `flush` and `finish` touch the database and
    run on the chat's database threads, `payload` only renders."""

    flush: Callable[..., None]  # (texts={id: text so far | None}): persist the growing texts, heartbeat the rest
    finish: Callable[..., object]  # (message_id, text, status, **fields) -> the final row, or None if already final
    payload: Callable[[object], dict]  # the final row as the page's `message`
    group: Callable[[object], str]  # the job -> the channel-layer group of the pages watching
    visible: Callable[[object, str], str] = _same  # (job, text so far) -> what pages may see of it
    key: Callable[[object], int | str] = lambda job: job.message_id  # its live-text key and frame id
    after: Callable[[object, object], Awaitable[None]] | None = None  # (job, final row), once it is published


CHAT = Target(
    flush=generation_flush,
    finish=generation_finish,
    payload=message_payload,
    group=lambda job: chat_group(job.trial_id),
)


class _Flusher:
    """Persists every running reply of one event loop every FLUSH_INTERVAL_S, in one database trip.

    A reply with no new text is still heartbeated, so a slow first token (a long passage being prefilled on a
    busy GPU) is not mistaken for a dead process by the stale-reply sweep.
    """

    def __init__(self, flush: Callable[..., None]) -> None:
        self.flush = flush
        self.texts: dict[int, str | None] = {}
        self.task: asyncio.Task | None = None

    def track(self, message_id: int) -> None:
        self.texts.setdefault(message_id, None)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def grew(self, message_id: int, text: str) -> None:
        self.texts[message_id] = text

    def untrack(self, message_id: int) -> None:
        self.texts.pop(message_id, None)

    async def _run(self) -> None:
        while self.texts:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            batch = dict(self.texts)
            if not batch:  # every reply finished during the sleep
                continue
            for message_id, text in batch.items():
                if text is not None:
                    self.texts[message_id] = None  # written; heartbeat only until it grows again
            try:
                await chat_db(self.flush)(texts=batch)
            except Exception:  # noqa: BLE001 - the next interval writes the latest text; finish writes the rest
                log.warning("flushing %d replies failed", len(batch), exc_info=True)
                for message_id, text in batch.items():
                    if text is not None and self.texts.get(message_id) is None:
                        self.texts[message_id] = text


_flushers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()
_semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]]" = (
    weakref.WeakKeyDictionary()
)


def _flusher(target: Target) -> _Flusher:
    """The loop's flusher for a target's table: one database trip per interval for all of its generations."""
    per_loop = _flushers.setdefault(asyncio.get_running_loop(), {})
    if target.flush not in per_loop:
        per_loop[target.flush] = _Flusher(target.flush)
    return per_loop[target.flush]


def _semaphore(job: ReplyJob) -> asyncio.Semaphore:
    per_loop = _semaphores.setdefault(asyncio.get_running_loop(), {})
    if job.endpoint_id not in per_loop:
        per_loop[job.endpoint_id] = asyncio.Semaphore(max(1, job.max_concurrency))
    return per_loop[job.endpoint_id]


def start_generation(job: ReplyJob, target: Target = CHAT) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(run_generation(job, target))
    key = target.key(job)
    _running[key] = task
    task.add_done_callback(lambda _t: _running.pop(key, None))
    return task


def cancel_generation(message_id: int | str) -> bool:
    """Cancel a running generation by its live key (a chat message's id; `debate.turn_key` for a turn)."""
    task = _running.get(message_id)
    if task is None:
        return False
    task.cancel()
    return True


async def run_generation(job: ReplyJob, target: Target = CHAT) -> None:
    layer = get_channel_layer()
    message_id, request = job.message_id, job.request
    live_key = target.key(job)  # (not `key`: the loop over the final fields below reuses that name)
    group = target.group(job)
    flusher = _flusher(target)
    flusher.track(message_id)
    text = ""
    sent = 0  # characters of the visible text already relayed
    started = time.monotonic()
    last_frame = started
    ttft_ms = None
    final = {"finish_reason": "", "prompt_tokens": None, "completion_tokens": None}
    status, error_kind, error = ChatMessage.Status.COMPLETE, "", ""

    async def relay() -> None:
        """Best effort: a frame that cannot be relayed (Redis restarting) must not end a reply that is still
        being generated and persisted; pages resync from the stored text on their next hello."""
        nonlocal sent, last_frame
        shown = target.visible(job, text)
        if len(shown) > sent:
            try:
                await live.aset(live_key, shown)
                await layer.group_send(
                    group, {"type": "chat.delta", "id": live_key, "offset": sent, "text": shown[sent:]}
                )
                sent = len(shown)
            except Exception:  # noqa: BLE001 - see docstring
                log.warning("could not relay a frame", exc_info=True, extra={"message_id": message_id})
        last_frame = time.monotonic()

    try:
        deadline = job.deadline_at
        timeout = None if deadline is None else max(0.0, (deadline - timezone.now()).total_seconds())
        async with asyncio.timeout(timeout), _semaphore(job):
            async for chunk in stream_reply(request):
                if chunk.text:
                    if ttft_ms is None:
                        ttft_ms = (time.monotonic() - started) * 1000
                    text += chunk.text
                    flusher.grew(message_id, text)
                for key in final:
                    if getattr(chunk, key, None):
                        final[key] = getattr(chunk, key)
                if chunk.model_id:
                    request.model_label = chunk.model_id
                if time.monotonic() - last_frame >= FRAME_INTERVAL_S:
                    await relay()
    except TimeoutError:
        status, error_kind, error = ChatMessage.Status.CANCELLED, "deadline", "the trial's deadline passed"
    except AssistantError as exc:
        status, error_kind, error = ChatMessage.Status.FAILED, exc.kind, exc.detail
        log.warning(
            "generation failed",
            extra={"message_id": message_id, "trial_id": job.trial_id, "kind": exc.kind, "detail": exc.detail[:300]},
        )
    except asyncio.CancelledError:
        status, error_kind, error = ChatMessage.Status.CANCELLED, "cancelled", "generation cancelled"
    except Exception as exc:  # noqa: BLE001 - a bug must still end the reply visibly, not leave it streaming
        log.exception("generation crashed", extra={"message_id": message_id})
        status, error_kind, error = ChatMessage.Status.FAILED, "generation", repr(exc)[:2000]
    await relay()
    total_ms = (time.monotonic() - started) * 1000
    try:
        message = await _finish_with_retries(
            target,
            message_id=message_id,
            text=text,
            status=status,
            error_kind=error_kind,
            error=error,
            ttft_ms=ttft_ms,
            total_ms=total_ms,
            model_id=request.model_label or job.endpoint_name,
            **final,
        )
    finally:
        flusher.untrack(message_id)
    if message is not None:
        try:
            payload = await sync_to_async(target.payload, thread_sensitive=False)(message)  # CPU, no database
            await layer.group_send(group, {"type": "chat.message", "message": payload})
        except Exception:  # noqa: BLE001 - the reply is final in the database; a page's next hello shows it
            log.warning("could not publish a final reply", exc_info=True, extra={"message_id": message_id})
        if target.after is not None:
            try:
                await target.after(job, message)
            except Exception:  # noqa: BLE001 - the reply is final; what follows it (a next turn) resumes on hello
                log.exception("after a finished generation", extra={"message_id": message_id})
    log.info(
        "generation finished",
        extra={
            "message_id": message_id,
            "trial_id": job.trial_id,
            "status": status,
            "ttft_ms": ttft_ms,
            "total_ms": round(total_ms, 1),
            "chars": len(text),
        },
    )


FINISH_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)


async def _finish_with_retries(target: Target, **fields) -> ChatMessage | None:
    """Finalise the reply, riding out a database blip (a failover, a dropped connection): the whole text is
    only in this task's memory. If the database stays away, the flushed text survives and the stale-reply
    sweep marks the reply interrupted."""
    for delay in (*FINISH_RETRY_DELAYS_S, None):
        try:
            return await chat_db(target.finish)(**fields)
        except Exception:
            if delay is None:
                raise
            log.warning(
                "finalising a reply failed; retrying in %.1f s",
                delay,
                exc_info=True,
                extra={"message_id": fields["message_id"]},
            )
            await asyncio.sleep(delay)
    return None
