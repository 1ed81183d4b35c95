"""Which web processes are alive, so that a reply whose process died is known dead within ~2 s, not 15.

Every streaming reply records the process generating it (`ChatMessage.owner = PROCESS_ID`). With Redis (the
production topology, several web processes) each process holds a lease, a key that expires LEASE_TTL_S after
its last renewal, renewed every RENEW_EVERY_S by a thread of its own: not by the event loop or the database
thread, which a burst of chats can hold up for seconds, so a busy process is not taken for a dead one. Without
Redis there is one web process, so a reply owned by any other process id is dead (its process was restarted).

A lease alone is not trusted to call a reply dead (Redis restarting empty loses every lease for a moment), nor
is a late heartbeat alone (the flush can lag under load): services.reply_is_dead asks for both.
"""

import logging
import os
import threading
import time
import uuid

from django.conf import settings

from oversight.core import redisclient

log = logging.getLogger(__name__)

LEASE_TTL_S = 2.0
RENEW_EVERY_S = 0.5
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

# Replies this process is generating right now (message ids), kept by assistant.generation.
local_replies: set[int] = set()

_hosting = threading.Event()  # this process serves chats (its consumers called start())
_lock = threading.Lock()


def _key(process_id: str) -> str:
    return f"oversight:chat:process:{process_id}"


def start() -> None:
    """Mark this process as a chat host and, with Redis, start renewing its lease. Idempotent."""
    with _lock:
        if _hosting.is_set():
            return
        _hosting.set()
    if settings.REDIS_URL:
        _renew_once()  # before the first reply is owned, so no reader ever sees an owner without a lease
        threading.Thread(target=_renew_forever, name="chat-lease", daemon=True).start()


def _renew_once() -> None:
    redisclient.sync_client().set(_key(PROCESS_ID), b"1", px=int(LEASE_TTL_S * 1000))


def _renew_forever() -> None:
    failing = False
    while True:
        time.sleep(RENEW_EVERY_S)
        try:
            _renew_once()
            failing = False
        except Exception:  # noqa: BLE001 - Redis restarting: keep trying; the heartbeat rule guards meanwhile
            if not failing:
                log.warning("could not renew the chat lease", exc_info=True)
            failing = True


def alive(owners: set[str]) -> set[str] | None:
    """The processes among `owners` that hold a lease; None if this process cannot tell.

    Without Redis only a chat host can tell (it knows it is the one web process); a Celery worker or a shell
    cannot, and leaves such replies to the heartbeat's longer rule.
    """
    owners = {o for o in owners if o}
    if settings.REDIS_URL:
        if not owners:
            return set()
        ordered = sorted(owners)
        values = redisclient.sync_client().mget([_key(o) for o in ordered])
        return {o for o, value in zip(ordered, values, strict=True) if value is not None}
    if not _hosting.is_set():
        return None
    return owners & {PROCESS_ID}
