"""Running one reply: stream from the backend, relay coalesced frames, persist as it grows, finalise.

A generation is an asyncio task in the web process that accepted the message. It outlives the socket that
started it, so a refresh re-attaches: every page watching the trial is in the trial's channel-layer group,
and the text so far sits in `live` for a page that joins mid-reply. Frames carry the offset
of their text, so a page that got the snapshot and then overlapping frames drops what it already has.

Frames and messages go to the pages through `pages.publish`: straight to this process's pages, and through
the channel layer only when a page is open on another process.

The same machinery generates a protocol advocate's turns (`judging.TURNS`): a `Target` says where a generation's
text is stored, how it is published and what follows it; `CHAT`, a trial's chat replies, is the default.

All of a web process's synchronous database work shares one executor thread (asgiref's thread-sensitive
mode), so the hot path is shaped around it: a send is one trip to that thread (see services.ReplyJob), the
growing replies of every generation in the process are flushed together in one trip per interval, and
nothing per token touches it.
"""

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from django.utils import timezone

from oversight.assistant import lease, pages
from oversight.assistant.backends import AssistantError, stream_reply
from oversight.assistant.executor import chat_db
from oversight.assistant.models import ChatMessage
from oversight.assistant.services import (
    ReplyJob,
    Sent,
    generation_end,
    generation_flush,
)

log = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.03  # coalesce tokens into ~30 ms frames: cheap to relay, still smooth to read
FLUSH_INTERVAL_S = 0.5  # persist the growing replies (and heartbeat) this often


@dataclass
class _Generation:
    """A reply being generated in this process, and what was asked of it from outside its task."""

    job: ReplyJob
    task: asyncio.Task | None = None
    streaming: bool = True  # still reading the model's stream (a stop cancels it only then)
    stop: bool = False  # the participant pressed Stop
    ended_elsewhere: bool = False  # finalised by someone else (a Stop on another process): just let go


_running: dict[int | str, _Generation] = {}  # live key -> its generation; keeps tasks referenced until they finish
_by_trial: dict[int, int] = {}  # trial id -> the chat message id generating (one reply at a time per trial)


def _same(_job, value):
    return value


@dataclass(frozen=True)
class Target:
    """Where a generation's text goes, and what follows it: a trial's chat replies (`CHAT`) or a protocol
    transcript's turns (`judging.TURNS`). `flush` and `end` touch the database and run on the chat's database
    threads; `publish` and `follow` run on the event loop."""

    flush: Callable[..., Iterable | None]  # (texts={id: text so far | None}) -> ids ended elsewhere
    end: Callable[..., tuple[list[dict], object]]  # (job=, text=, status=, **fields) -> (payloads, what follows)
    publish: Callable[..., Awaitable[None]]  # (job, event, live_text=(key, text) | None)
    follow: Callable[[object, object], Awaitable[None]]  # (job, what `end` said follows), after publishing
    visible: Callable[[object, str], str] = _same  # (job, text so far) -> what pages may see of it
    key: Callable[[object], int | str] = lambda job: job.message_id  # its live-text key and frame id
    chat: bool = False  # a chat reply: Stop and the process lease apply to it


def _chat_end(**fields) -> tuple[list[dict], Sent]:
    payload, queued = generation_end(**fields)
    return ([payload] if payload is not None else []) + queued.payloads, queued


async def _chat_publish(job: ReplyJob, event: dict, live_text: tuple | None = None) -> None:
    await pages.publish(job.trial_id, event, live_text=live_text)


async def _chat_follow(_job: ReplyJob, queued: Sent | None) -> None:
    if queued is not None and queued.job is not None:
        start_generation(queued.job)


CHAT = Target(flush=generation_flush, end=_chat_end, publish=_chat_publish, follow=_chat_follow, chat=True)


class _Flusher:
    """Persists every running reply of one event loop every FLUSH_INTERVAL_S, in one database trip.

    A reply with no new text is still heartbeated, so a slow first token (a long passage being prefilled on a
    busy GPU) is not mistaken for a dead process by the stale-reply sweep. The same trip reports the replies
    that were ended by someone else (a Stop from a page on another process), whose requests are then cancelled.
    """

    def __init__(self, flush: Callable[..., Iterable | None]) -> None:
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
                ended = await chat_db(self.flush)(texts=batch)
            except Exception:  # noqa: BLE001 - the next interval writes the latest text; finish writes the rest
                log.warning("flushing %d replies failed", len(batch), exc_info=True)
                for message_id, text in batch.items():
                    if text is not None and self.texts.get(message_id) is None:
                        self.texts[message_id] = text
                continue
            for message_id in ended or ():
                _let_go(message_id)


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


def start_generation(job, target: Target = CHAT) -> asyncio.Task:
    generation = _Generation(job)
    _running[target.key(job)] = generation
    if target.chat:
        _by_trial[job.trial_id] = job.message_id
        lease.local_replies.add(job.message_id)
    generation.task = asyncio.get_running_loop().create_task(run_generation(job, target, generation))
    generation.task.add_done_callback(lambda _t: _forget(generation, target))
    return generation.task


def _forget(generation: _Generation, target: Target) -> None:
    key = target.key(generation.job)
    _running.pop(key, None)
    if target.chat:
        message_id = generation.job.message_id
        if _by_trial.get(generation.job.trial_id) == message_id:
            del _by_trial[generation.job.trial_id]
        lease.local_replies.discard(message_id)


def generating_here(trial_id: int) -> bool:
    return trial_id in _by_trial


def stop_local(trial_id: int) -> bool:
    """Stop the trial's reply if this process generates it: True if it does (its task finalises it as stopped,
    with every token it relayed, and answers what was queued behind it), False if not generated here."""
    generation = _running.get(_by_trial.get(trial_id, 0))
    if generation is None:
        return False
    generation.stop = True
    if generation.streaming and generation.task is not None:
        generation.task.cancel()  # closes the model's stream: the server stops generating
    return True


def _let_go(message_id: int) -> None:
    """The reply was finalised by someone else: stop asking the model for it, and publish nothing."""
    generation = _running.get(message_id)
    if generation is not None and generation.streaming and generation.task is not None:
        generation.ended_elsewhere = True
        generation.task.cancel()


def cancel_generation(key: int | str) -> bool:
    """Cancel a running generation by its live key (a chat message's id; `debate.turn_key` for a turn)."""
    generation = _running.get(key)
    if generation is None or generation.task is None:
        return False
    generation.task.cancel()
    return True


async def run_generation(job, target: Target = CHAT, generation: _Generation | None = None) -> None:
    generation = generation or _Generation(job)
    message_id, request = job.message_id, job.request
    live_key = target.key(job)
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
                await target.publish(
                    job,
                    {"type": "chat.delta", "id": live_key, "offset": sent, "text": shown[sent:]},
                    live_text=(live_key, shown),
                )
                sent = len(shown)
            except Exception:  # noqa: BLE001 - see docstring
                log.warning("could not relay a frame", exc_info=True, extra={"message_id": message_id})
        last_frame = time.monotonic()

    try:
        deadline = job.deadline_at
        timeout = None if deadline is None else max(0.0, (deadline - timezone.now()).total_seconds())
        stream = contextlib.aclosing(stream_reply(request))  # a Stop closes the model request at once
        async with asyncio.timeout(timeout), _semaphore(job), stream as chunks:
            async for chunk in chunks:
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
        if generation.stop:
            status = ChatMessage.Status.STOPPED
        else:
            status, error_kind, error = ChatMessage.Status.CANCELLED, "cancelled", "generation cancelled"
    except Exception as exc:  # noqa: BLE001 - a bug must still end the reply visibly, not leave it streaming
        log.exception("generation crashed", extra={"message_id": message_id})
        status, error_kind, error = ChatMessage.Status.FAILED, "generation", repr(exc)[:2000]
    generation.streaming = False
    if generation.ended_elsewhere:
        flusher.untrack(message_id)
        return
    if generation.stop and status == ChatMessage.Status.COMPLETE:
        status = ChatMessage.Status.STOPPED  # Stop pressed as the last token arrived: the participant asked for it
    await relay()
    total_ms = (time.monotonic() - started) * 1000
    try:
        payloads, follows = await _finish_with_retries(
            target,
            job=job,
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
    try:
        for final in payloads:
            await target.publish(job, {"type": "chat.message", "message": final})
    except Exception:  # noqa: BLE001 - the reply is final in the database; a page's next hello shows it
        log.warning("could not publish a final reply", exc_info=True, extra={"message_id": message_id})
    try:
        await target.follow(job, follows)
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


async def _finish_with_retries(target: Target, **fields) -> tuple[list[dict], object]:
    """Finalise the reply and answer what was queued behind it, riding out a database blip (a failover, a
    dropped connection): the whole text is only in this task's memory. If the database stays away, the flushed
    text survives and the stale-reply sweep marks the reply interrupted."""
    for delay in (*FINISH_RETRY_DELAYS_S, None):
        try:
            return await chat_db(target.end)(**fields)
        except Exception:
            if delay is None:
                raise
            log.warning(
                "finalising a reply failed; retrying in %.1f s",
                delay,
                exc_info=True,
                extra={"message_id": fields["job"].message_id},
            )
            await asyncio.sleep(delay)
    return [], None
