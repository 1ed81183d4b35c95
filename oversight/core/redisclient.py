"""The web process's own Redis clients (live reply text, rate-limit counters): one pool per process.

Not Django's cache: its instances are context-local under ASGI, so each websocket and each trip through
sync_to_async built a new client, pool and TCP connection. Both clients retry: redis-py 8 clients made from a
URL retry nothing, so the first command on each pooled connection after a Redis restart failed (tests/faults).
"""

import asyncio
import weakref

from django.conf import settings

_sync = None
_async: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()


def _backoff():
    from redis.backoff import ExponentialWithJitterBackoff

    return ExponentialWithJitterBackoff(base=0.05, cap=0.5)


def sync_client():
    global _sync
    if _sync is None:
        import redis
        from redis.retry import Retry

        _sync = redis.Redis.from_url(settings.REDIS_URL, retry=Retry(_backoff(), 3))
    return _sync


def async_client():
    """A client for the running event loop (redis.asyncio connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    client = _async.get(loop)
    if client is None:
        import redis.asyncio
        from redis.asyncio.retry import Retry

        # Blocking: with 200 chats streaming, more frames than connections are in flight at once, and redis-py's
        # default pool raises MaxConnectionsError instead of waiting for a free connection.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=64, timeout=10, retry=Retry(_backoff(), 3)
        )
        client = _async[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client
