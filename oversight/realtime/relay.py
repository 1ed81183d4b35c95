"""What every websocket consumer shares: they authenticate, join groups and relay. The work happens in services."""

from channels.consumer import get_handler_name


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
