"""The embedded default's channel layer: channels' in-memory layer, without its per-message full sweep.

`InMemoryChannelLayer` walks every channel and every group membership to expire old entries on *each*
`group_send` and `receive`. With 200 chats streaming that is ~10,000 sweeps a second over ~400 entries, the
largest CPU cost per streamed token in the benchmark (bench/README.md, "Chat streaming"). This layer sweeps
at most once a second and delivers a group message without a task per member; semantics (expiry, capacity,
ChannelFull dropped for groups, messages copied) are unchanged. A message of plain values (a chat frame: ids,
an offset, text) is copied shallowly: `deepcopy` was the largest cost of relaying a frame.
"""

import asyncio
import contextlib
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

_PLAIN = (str, int, float, bool, type(None))


class InProcessChannelLayer(InMemoryChannelLayer):
    SWEEP_EVERY_S = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._swept_at = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now - self._swept_at < self.SWEEP_EVERY_S:
            return
        self._swept_at = now
        super()._clean_expired()

    async def group_send(self, group, message):
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            # As channels does for groups: a full member misses the message, the others still get it.
            with contextlib.suppress(ChannelFull):
                self._put(channel, message)

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        self._put(channel, message)

    def _put(self, channel, message):
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            queue.put_nowait((time.time() + self.expiry, _copy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None


def _copy(message: dict) -> dict:
    if all(type(value) in _PLAIN for value in message.values()):
        return dict(message)  # its values cannot be changed in place: a shallow copy is a full one
    return deepcopy(message)
