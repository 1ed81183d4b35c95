"""The text so far of each reply being generated, for a page that joins mid-reply — maybe on another process.

Written every frame (~30 ms) by the generating task, read when a page says hello, dropped when the reply is
final. With REDIS_URL it lives in Redis, written with redis.asyncio straight from the event loop (in the same
round trip as pages.publish's look for pages elsewhere): through Django's cache every frame cost a thread hop
plus a blocking round trip (18% of a web process's samples at 50 chats, bench/README.md). Without Redis there
is one process, so a dict is the whole store.
"""

from django.conf import settings

from oversight.core import redisclient

TTL_S = 3600
_local: dict[int, str] = {}


def key(message_id: int) -> str:
    return f"oversight:chat:live:{message_id}"


def _redis_url() -> str:
    return settings.REDIS_URL


async def aset(message_id: int, text: str) -> None:
    if not _redis_url():
        _local[message_id] = text
        return
    await redisclient.async_client().set(key(message_id), text.encode(), ex=TTL_S)


def get_many(message_ids: list[int]) -> dict[int, str]:
    if not message_ids:
        return {}
    if not _redis_url():
        return {pk: _local[pk] for pk in message_ids if pk in _local}
    values = redisclient.sync_client().mget([key(pk) for pk in message_ids])
    return {pk: value.decode() for pk, value in zip(message_ids, values, strict=True) if value is not None}


def get(message_id: int) -> str | None:
    return get_many([message_id]).get(message_id)


def delete(message_id: int) -> None:
    if not _redis_url():
        _local.pop(message_id, None)
        return
    redisclient.sync_client().delete(key(message_id))
