"""The text so far of each reply being generated, for a page that joins mid-reply — maybe on another process.

Written every frame (~30 ms) by the generating task, read when a page says hello, dropped when the reply is
final. With REDIS_URL it lives in Redis, written with redis.asyncio straight from the event loop: through
Django's cache every frame cost a thread hop plus a blocking round trip (18% of a web process's samples at 50
chats, bench/README.md). Without Redis there is one process, so a dict is the whole store.
"""

import asyncio
import weakref

from django.conf import settings

TTL_S = 3600
_local: dict[int, str] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()
_sync_client = None


def _key(message_id: int) -> str:
    return f"oversight:chat:live:{message_id}"


def _redis_url() -> str:
    return getattr(settings, "REDIS_URL", "") or ""


def _sync():
    global _sync_client
    if _sync_client is None:
        import redis
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.retry import Retry

        _sync_client = redis.Redis.from_url(
            _redis_url(), retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3))
    return _sync_client


def _async():
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        import redis.asyncio
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import ExponentialWithJitterBackoff

        # Blocking: with 200 chats streaming, more frames than connections are in flight at once, and redis-py's
        # default pool raises MaxConnectionsError instead of waiting for a free connection.
        # retry: redis-py 8 pools made from a URL retry nothing, so after a Redis restart the first write on each
        # pooled connection failed (4 of 4; tests/faults) and, before relaying became best effort, ended replies.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            _redis_url(), max_connections=64, timeout=10,
            retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3))
        client = _async_clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client


async def aset(message_id: int, text: str) -> None:
    if not _redis_url():
        _local[message_id] = text
        return
    await _async().set(_key(message_id), text.encode(), ex=TTL_S)


def get_many(message_ids: list[int]) -> dict[int, str]:
    if not message_ids:
        return {}
    if not _redis_url():
        return {pk: _local[pk] for pk in message_ids if pk in _local}
    values = _sync().mget([_key(pk) for pk in message_ids])
    return {pk: value.decode() for pk, value in zip(message_ids, values, strict=True) if value is not None}


def get(message_id: int) -> str | None:
    return get_many([message_id]).get(message_id)


def delete(message_id: int) -> None:
    if not _redis_url():
        _local.pop(message_id, None)
        return
    _sync().delete(_key(message_id))
