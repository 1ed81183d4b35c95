"""Running one reply: stream from the backend, relay coalesced frames, persist as it grows, finalise.

A generation is an asyncio task in the web process that accepted the message. It outlives the socket that
started it, so a refresh re-attaches: every page watching the trial is in the trial's channel-layer group,
and the text so far sits in the cache (`live_key`) for a page that joins mid-reply. Frames carry the offset
of their text, so a page that got the snapshot and then overlapping frames drops what it already has.
"""

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.utils import timezone

from oversight.assistant.backends import AssistantError, request_for_endpoint, stream_reply
from oversight.assistant.models import ChatMessage
from oversight.assistant.services import (
    chat_group,
    generation_finish,
    generation_flush,
    live_key,
    message_payload,
    model_context,
)
from oversight.assistant.simulated import SimulatedItem

log = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.03  # coalesce tokens into ~30 ms frames: cheap to relay, still smooth to read
FLUSH_INTERVAL_S = 0.5  # persist the growing reply (and heartbeat) this often
LIVE_TTL_S = 3600

_cache_set = sync_to_async(cache.set, thread_sensitive=False)
_running: dict[int, asyncio.Task] = {}  # message id -> task; keeps tasks referenced until they finish
_semaphores: dict[int, asyncio.Semaphore] = {}


def _load(message_id: int):
    message = ChatMessage.objects.select_related(
        "trial__condition__endpoint", "trial__item__passage", "trial__participant"
    ).get(pk=message_id)
    trial = message.trial
    endpoint = trial.condition.endpoint
    messages, context = model_context(message)
    ChatMessage.objects.filter(pk=message_id).update(context=context)
    item = trial.item
    request = request_for_endpoint(
        endpoint,
        messages=messages,
        sampling=dict(trial.condition.sampling or {}),
        item=SimulatedItem(item_key=f"{item.bank_id}:{item.external_id}", question=item.text, options=item.options,
                           gold_index=item.gold_index, passage=item.passage.text if item.passage_id else None),
    )
    return trial, endpoint, request


def start_generation(message_id: int) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(run_generation(message_id))
    _running[message_id] = task
    task.add_done_callback(lambda _t: _running.pop(message_id, None))
    return task


def cancel_generation(message_id: int) -> bool:
    task = _running.get(message_id)
    if task is None:
        return False
    task.cancel()
    return True


async def run_generation(message_id: int) -> None:
    layer = get_channel_layer()
    trial, endpoint, request = await database_sync_to_async(_load)(message_id)
    group = chat_group(trial.pk)
    text = ""
    sent = 0  # characters already relayed
    started = time.monotonic()
    last_frame = last_flush = started
    ttft_ms = None
    final = {"finish_reason": "", "prompt_tokens": None, "completion_tokens": None}
    status, error_kind, error = ChatMessage.Status.COMPLETE, "", ""

    async def relay() -> None:
        nonlocal sent, last_frame
        if len(text) > sent:
            # Not cache.aset: that queues behind all DB work on the one thread-sensitive executor thread.
            await _cache_set(live_key(message_id), text, LIVE_TTL_S)
            await layer.group_send(group, {"type": "chat.delta", "id": message_id, "offset": sent, "text": text[sent:]})
            sent = len(text)
        last_frame = time.monotonic()

    deadline = trial.deadline_at
    semaphore = _semaphores.setdefault(endpoint.pk, asyncio.Semaphore(max(1, endpoint.max_concurrency)))
    try:
        timeout = None if deadline is None else max(0.0, (deadline - timezone.now()).total_seconds())
        async with asyncio.timeout(timeout), semaphore:
            async for chunk in stream_reply(request):
                if chunk.text:
                    if ttft_ms is None:
                        ttft_ms = (time.monotonic() - started) * 1000
                    text += chunk.text
                for key in final:
                    if getattr(chunk, key, None):
                        final[key] = getattr(chunk, key)
                if chunk.model_id:
                    request.model_label = chunk.model_id
                now = time.monotonic()
                if now - last_frame >= FRAME_INTERVAL_S:
                    await relay()
                if now - last_flush >= FLUSH_INTERVAL_S:
                    await database_sync_to_async(generation_flush)(message_id=message_id, text=text)
                    # Measured from when the flush *ended*: under load the flush itself waits, and timing from
                    # its start made every later token trigger another flush (one per token instead of ~2/s).
                    last_flush = time.monotonic()
    except TimeoutError:
        status, error_kind, error = ChatMessage.Status.CANCELLED, "deadline", "the trial's deadline passed"
    except AssistantError as exc:
        status, error_kind, error = ChatMessage.Status.FAILED, exc.kind, exc.detail
        log.warning("generation failed", extra={"message_id": message_id, "trial_id": trial.pk, "kind": exc.kind,
                                                "detail": exc.detail[:300]})
    except asyncio.CancelledError:
        status, error_kind, error = ChatMessage.Status.CANCELLED, "cancelled", "generation cancelled"
    except Exception as exc:  # noqa: BLE001 - a bug must still end the reply visibly, not leave it streaming
        log.exception("generation crashed", extra={"message_id": message_id})
        status, error_kind, error = ChatMessage.Status.FAILED, "generation", repr(exc)[:2000]
    await relay()
    total_ms = (time.monotonic() - started) * 1000
    message = await database_sync_to_async(generation_finish)(
        message_id=message_id, text=text, status=status, error_kind=error_kind, error=error, ttft_ms=ttft_ms,
        total_ms=total_ms, model_id=request.model_label or endpoint.name, **final,
    )
    if message is not None:
        payload = await database_sync_to_async(message_payload)(message)
        await layer.group_send(group, {"type": "chat.message", "message": payload})
    log.info("generation finished", extra={"message_id": message_id, "trial_id": trial.pk, "status": status,
                                           "ttft_ms": ttft_ms, "total_ms": round(total_ms, 1), "chars": len(text)})
