"""Running one reply: stream from the backend, relay coalesced frames, persist as it grows, finalise.

A generation is an asyncio task in the web process that accepted the message. It outlives the socket that
started it, so a refresh re-attaches: every page watching the trial is in the trial's channel-layer group,
and the text so far sits in `live` for a page that joins mid-reply. Frames carry the offset
of their text, so a page that got the snapshot and then overlapping frames drops what it already has.

Frames and messages go to the pages through `pages.publish`: straight to this process's pages, and through
the channel layer only when a page is open on another process.

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


_running: dict[int, _Generation] = {}  # message id -> its generation; keeps tasks referenced until they finish
_by_trial: dict[int, int] = {}  # trial id -> the message id generating (one reply at a time per trial)


class _Flusher:
    """Persists every running reply of one event loop every FLUSH_INTERVAL_S, in one database trip.

    A reply with no new text is still heartbeated, so a slow first token (a long passage being prefilled on a
    busy GPU) is not mistaken for a dead process by the stale-reply sweep. The same trip reports the replies
    that were ended by someone else (a Stop from a page on another process), whose requests are then cancelled.
    """

    def __init__(self) -> None:
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
                ended = await chat_db(generation_flush)(texts=batch)
            except Exception:  # noqa: BLE001 - the next interval writes the latest text; finish writes the rest
                log.warning("flushing %d replies failed", len(batch), exc_info=True)
                for message_id, text in batch.items():
                    if text is not None and self.texts.get(message_id) is None:
                        self.texts[message_id] = text
                continue
            for message_id in ended:
                _let_go(message_id)


_flushers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher]" = weakref.WeakKeyDictionary()
_semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]]" = (
    weakref.WeakKeyDictionary()
)


def _flusher() -> _Flusher:
    loop = asyncio.get_running_loop()
    if loop not in _flushers:
        _flushers[loop] = _Flusher()
    return _flushers[loop]


def _semaphore(job: ReplyJob) -> asyncio.Semaphore:
    per_loop = _semaphores.setdefault(asyncio.get_running_loop(), {})
    if job.endpoint_id not in per_loop:
        per_loop[job.endpoint_id] = asyncio.Semaphore(max(1, job.max_concurrency))
    return per_loop[job.endpoint_id]


def start_generation(job: ReplyJob) -> asyncio.Task:
    generation = _Generation(job)
    _running[job.message_id] = generation
    _by_trial[job.trial_id] = job.message_id
    lease.local_replies.add(job.message_id)
    generation.task = asyncio.get_running_loop().create_task(run_generation(job, generation))
    generation.task.add_done_callback(lambda _t: _forget(generation))
    return generation.task


def _forget(generation: _Generation) -> None:
    message_id = generation.job.message_id
    _running.pop(message_id, None)
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


def cancel_generation(message_id: int) -> bool:
    generation = _running.get(message_id)
    if generation is None or generation.task is None:
        return False
    generation.task.cancel()
    return True


async def run_generation(job: ReplyJob, generation: _Generation | None = None) -> None:
    generation = generation or _Generation(job)
    message_id, request = job.message_id, job.request
    flusher = _flusher()
    flusher.track(message_id)
    text = ""
    sent = 0  # characters already relayed
    started = time.monotonic()
    last_frame = started
    ttft_ms = None
    final = {"finish_reason": "", "prompt_tokens": None, "completion_tokens": None}
    status, error_kind, error = ChatMessage.Status.COMPLETE, "", ""

    async def relay() -> None:
        """Best effort: a frame that cannot be relayed (Redis restarting) must not end a reply that is still
        being generated and persisted; pages resync from the stored text on their next hello."""
        nonlocal sent, last_frame
        if len(text) > sent:
            try:
                await pages.publish(
                    job.trial_id,
                    {"type": "chat.delta", "id": message_id, "offset": sent, "text": text[sent:]},
                    live_text=(message_id, text),
                )
                sent = len(text)
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
        payload, queued = await _finish_with_retries(
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
        for final in ([payload] if payload is not None else []) + queued.payloads:
            await pages.publish(job.trial_id, {"type": "chat.message", "message": final})
    except Exception:  # noqa: BLE001 - the reply is final in the database; a page's next hello shows it
        log.warning("could not publish a final reply", exc_info=True, extra={"message_id": message_id})
    if queued.job is not None:
        start_generation(queued.job)
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
NOTHING_SENT = Sent([], None)


async def _finish_with_retries(**fields) -> tuple[dict | None, Sent]:
    """Finalise the reply and answer what was queued behind it, riding out a database blip (a failover, a
    dropped connection): the whole text is only in this task's memory. If the database stays away, the flushed
    text survives and the stale-reply sweep marks the reply interrupted."""
    for delay in (*FINISH_RETRY_DELAYS_S, None):
        try:
            return await chat_db(generation_end)(**fields)
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
    return None, NOTHING_SENT
