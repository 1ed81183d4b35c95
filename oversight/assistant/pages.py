"""Where a trial's chat messages and frames go: straight to the pages open on it in this process, and through
the channel layer only when a page is open on it in another process.

Through channels_redis every frame cost a Lua EVAL to send, and, in the receiving process, a blocking pop, a
clean-up ZREM and a handful of tasks, all in one receive loop per process: at 200 streaming replies (6,600
frames a second) that loop fell seconds behind while the generations kept pace (bench/README.md, "Chat
streaming"). Yet nearly always the only page open on a trial is on the process generating its reply: the page
that sent the message. So each process keeps its own pages (`join`/`leave`, called by the chat consumer) and
delivers to them directly, in order; and with Redis it records which processes have pages open on a trial.

A frame's live text and the question "is a page open elsewhere?" are one Redis round trip (a pipeline of SET
and SMEMBERS). That order keeps the promise that no frame falls between a page's snapshot and its stream: a
page on another process joins the trial's group and registers *before* it reads the live text; if this frame's
SMEMBERS saw it, the frame goes through the group too, and if not, the page registered after this frame's text
was stored, so its snapshot already has it. A process that died without leaving keeps its entry until the key
expires: frames then take the channel layer as well, which costs time, not correctness.
"""

import logging

from channels.layers import get_channel_layer
from django.conf import settings

from oversight.assistant import lease, live
from oversight.core import redisclient

log = logging.getLogger(__name__)

PAGES_TTL_S = 6 * 3600
_local: dict[int, list] = {}  # trial id -> the pages (chat consumers) open on it in this process


def chat_group(trial_id: int) -> str:
    return f"chat.trial.{trial_id}"


def _key(trial_id: int) -> str:
    return f"oversight:chat:pages:{trial_id}"


async def join(trial_id: int, page) -> None:
    """A page opened on the trial in this process (after it joined the trial's group, before its snapshot)."""
    _local.setdefault(trial_id, []).append(page)
    if settings.REDIS_URL:
        async with redisclient.async_client().pipeline(transaction=False) as pipe:
            pipe.sadd(_key(trial_id), lease.PROCESS_ID)
            pipe.expire(_key(trial_id), PAGES_TTL_S)
            await pipe.execute()


async def leave(trial_id: int, page) -> None:
    pages = _local.get(trial_id, [])
    if page in pages:
        pages.remove(page)
    if not pages:
        _local.pop(trial_id, None)
        if settings.REDIS_URL:
            await redisclient.async_client().srem(_key(trial_id), lease.PROCESS_ID)


async def _elsewhere(trial_id: int, live_text: tuple[int, str] | None) -> bool:
    """Whether a page is open on the trial in another process; stores the live text first, in the same trip."""
    if not settings.REDIS_URL:
        if live_text is not None:
            await live.aset(*live_text)
        return False
    async with redisclient.async_client().pipeline(transaction=False) as pipe:
        if live_text is not None:
            pipe.set(live.key(live_text[0]), live_text[1].encode(), ex=live.TTL_S)
        pipe.smembers(_key(trial_id))
        *_, members = await pipe.execute()
    return any(member.decode() != lease.PROCESS_ID for member in members)


async def publish(trial_id: int, event: dict, *, live_text: tuple[int, str] | None = None, skip: object = None) -> None:
    """Send `event` (`chat.message` or `chat.delta`) to every page open on the trial, wherever it is.

    `live_text` (message id, its text so far) is stored for pages that join later, before the event is sent.
    `skip`: a page of this process that has the news already (in the history it is being sent). Raises what
    Redis or the channel layer raised; the pages of this process that were reached stay reached.
    """
    if await _elsewhere(trial_id, live_text):
        await get_channel_layer().group_send(chat_group(trial_id), event)  # reaches this process's pages too
        return
    for page in list(_local.get(trial_id, ())):
        if page is skip:
            continue
        try:
            await page.deliver(event)
        except Exception:  # noqa: BLE001 - a page closing as it is sent to must not keep the others from theirs
            log.warning("could not deliver to a page", exc_info=True, extra={"trial_id": trial_id})
