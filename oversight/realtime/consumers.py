"""Websocket consumers: they authenticate, join groups and relay. The work happens in services."""

import asyncio

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from oversight.assistant.executor import chat_db
from oversight.assistant.generation import start_generation
from oversight.assistant.services import (
    ChatRejected,
    Sent,
    chat_group,
    chat_history,
    chat_open,
    chat_reset,
    chat_retry,
    chat_send,
    interrupt_stale_generations,
)
from oversight.core.models import Condition, Event, Trial


def _trial_for(token: str, position: int) -> Trial | None:
    return (
        Trial.objects.select_related("participant__study", "condition")
        .filter(participant__token=token, position=position, condition__kind=Condition.Kind.ASSISTED)
        .first()
    )


def _history(trial: Trial, reconnect: bool) -> dict:
    interrupt_stale_generations(trial_id=trial.pk)
    trial.refresh_from_db()
    if reconnect:
        Event.objects.create(participant_id=trial.participant_id, trial=trial, kind=Event.Kind.RECONNECT)
    return {"type": "history", "messages": chat_history(trial), "open": chat_open(trial, timezone.now())}


class RelayMixin:
    """Skip channels' per-message database cleanup, which these consumers do not need.

    channels runs `aclose_old_connections()` before every handler, through the one thread-sensitive executor
    thread that all database work shares: for a token frame or a monitor note that queueing is pure latency
    (measured: monitor updates seconds late at 500 participants), and for a chat send it was a second trip
    through that thread. Every handler here that touches the database does so through
    `database_sync_to_async`, which closes old connections itself, in the same trip.
    """

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)  # which refuses "_private" types
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class ChatConsumer(RelayMixin, AsyncJsonWebsocketConsumer):
    """One participant's chat for one trial, at /ws/chat/<token>/<position>/."""

    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        self.trial = await chat_db(_trial_for)(kwargs["token"], int(kwargs["position"]))
        if self.trial is None:
            await self.close(code=4404)
            return
        self.group = chat_group(self.trial.pk)
        # Join before reading the history, so no frame falls between the snapshot and the live stream.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "trial", None) is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "hello":
                await self.send_json(await chat_db(_history)(self.trial, bool(content.get("reconnect"))))
            elif kind == "send":
                await self._publish(await chat_db(chat_send)(
                    trial_id=self.trial.pk, text=str(content.get("text", ""))[:100_000],
                    client_id=str(content.get("client_id", ""))[:64]))
            elif kind == "reset":
                await self._publish(await chat_db(chat_reset)(trial_id=self.trial.pk))
            elif kind == "retry":
                await self._publish(await chat_db(chat_retry)(trial_id=self.trial.pk))
            else:
                await self.send_json({"type": "error", "message": "Unknown request."})
        except ChatRejected as exc:
            await self.send_json({"type": "error", "message": str(exc)})

    async def _publish(self, sent: Sent) -> None:
        for payload in sent.payloads:
            await self.channel_layer.group_send(self.group, {"type": "chat.message", "message": payload})
        if sent.job is not None:
            start_generation(sent.job)

    async def chat_message(self, event):
        await self.send_json({"type": "message", "message": event["message"]})

    async def chat_delta(self, event):
        await self.send_json({"type": "delta", "id": event["id"], "offset": event["offset"], "text": event["text"]})


def _monitor_access(user, slug: str):
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    from oversight.console.access import get_study_for_user
    from oversight.core.services.monitor import viewer_is_blind

    if not getattr(user, "is_authenticated", False):
        return None, False
    try:
        study = get_study_for_user(user, slug)
    except (Http404, PermissionDenied):
        return None, False
    return study, viewer_is_blind(user, study)


def _monitor_snapshot(study, blind: bool, participant_ids=None) -> dict:
    from oversight.core.services.monitor import monitor_rows, monitor_summary

    return {"rows": monitor_rows(study, participant_ids=participant_ids, blind=blind),
            "summary": monitor_summary(study, blind=blind)}


class MonitorConsumer(RelayMixin, AsyncJsonWebsocketConsumer):
    """A researcher's live view of a study, at /ws/monitor/<slug>/.

    Services announce which participant changed; this connection collects those ids and sends at most one
    batched update per FLUSH_S, however many events arrive — so 500 busy participants cost each viewer one
    message a second, not one per event.
    """

    FLUSH_S = 1.0
    FULL_REFRESH_S = 30.0  # idle flags and clocks drift without events: refresh everything now and then
    async def connect(self):
        from oversight.core.services.monitor import monitor_group

        self.study, self.blind = await database_sync_to_async(_monitor_access)(
            self.scope.get("user"), self.scope["url_route"]["kwargs"]["slug"])
        if self.study is None:
            await self.close(code=4403)
            return
        self.group = monitor_group(self.study.pk)
        self.dirty: set[int] = set()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", **await database_sync_to_async(_monitor_snapshot)(
            self.study, self.blind)})
        self.flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def disconnect(self, code):
        if getattr(self, "study", None) is None:
            return
        self.flusher.cancel()
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def monitor_changed(self, event):
        self.dirty.add(event["participant_id"])

    async def _flush_loop(self):
        since_full = 0.0
        while True:
            await asyncio.sleep(self.FLUSH_S)
            since_full += self.FLUSH_S
            if since_full >= self.FULL_REFRESH_S:
                since_full = 0.0
                self.dirty.clear()
                await self.send_json({"type": "snapshot", **await database_sync_to_async(_monitor_snapshot)(
                    self.study, self.blind)})
            elif self.dirty:
                ids, self.dirty = self.dirty, set()
                await self.send_json({"type": "rows", **await database_sync_to_async(_monitor_snapshot)(
                    self.study, self.blind, ids)})
