"""A researcher's live view of a study, at /ws/monitor/<slug>/: it authenticates, joins the study's group and
relays batched updates rendered by the monitor page's own partials (console.monitor)."""

import asyncio

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from oversight.console.access import get_study_for_user, viewer_is_blind
from oversight.console.monitor import monitor_data, monitor_html
from oversight.core.services.monitor import monitor_group
from oversight.realtime.relay import RelayMixin

# Rendering is CPU work without database access: it need not queue on, nor hold, the shared database thread.
_render = sync_to_async(monitor_html, thread_sensitive=False)


def _viewer(user, slug: str):
    """(the study, whether this viewer is blind to accuracy), or (None, False) for anyone the page would refuse."""
    if not getattr(user, "is_authenticated", False):
        return None, False
    try:
        study = get_study_for_user(user, slug)
    except (Http404, PermissionDenied):
        return None, False
    return study, viewer_is_blind(user, study)


class MonitorConsumer(RelayMixin, AsyncJsonWebsocketConsumer):
    """Services announce which participant changed; this connection collects those ids and sends at most one
    batched update per FLUSH_S, however many events arrive — so 500 busy participants cost each viewer one
    message a second, not one per event.
    """

    FLUSH_S = 1.0
    FULL_REFRESH_S = 30.0  # idle flags and clocks drift without events: refresh everything now and then

    async def connect(self):
        self.study, self.blind = await database_sync_to_async(_viewer)(
            self.scope.get("user"), self.scope["url_route"]["kwargs"]["slug"]
        )
        if self.study is None:
            await self.close(code=4403)
            return
        self.group = monitor_group(self.study.pk)
        self.dirty: set[int] = set()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", **await self._rendered()})
        self.flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def disconnect(self, code):
        if getattr(self, "study", None) is None:
            return
        self.flusher.cancel()
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def monitor_changed(self, event):
        self.dirty.add(event["participant_id"])

    async def _rendered(self, participant_ids=None) -> dict:
        data = await database_sync_to_async(monitor_data)(self.study, blind=self.blind, participant_ids=participant_ids)
        return await _render(data)

    async def _flush_loop(self):
        since_full = 0.0
        while True:
            await asyncio.sleep(self.FLUSH_S)
            since_full += self.FLUSH_S
            if since_full >= self.FULL_REFRESH_S:
                since_full = 0.0
                self.dirty.clear()
                await self.send_json({"type": "snapshot", **await self._rendered()})
            elif self.dirty:
                ids, self.dirty = self.dirty, set()
                await self.send_json({"type": "rows", **await self._rendered(ids)})
