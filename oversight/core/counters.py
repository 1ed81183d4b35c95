"""Fixed-window counters shared by every process (Redis) or kept in this one (no REDIS_URL): rate limits.

Not Django's cache (6% of a web process's samples at 50 chats went to its per-context connections): the
process's one pool, oversight.core.redisclient.
"""

import threading
import time

from django.conf import settings

from oversight.core import redisclient

_lock = threading.Lock()
_local: dict[str, tuple[float, int]] = {}  # key -> (window ends at, count)


def hit(key: str, window_s: int) -> int:
    """Count one event under `key`; returns how many there have been in the current window, this one included."""
    if settings.REDIS_URL:
        name = f"oversight:count:{key}"
        pipe = redisclient.sync_client().pipeline(transaction=True)
        pipe.set(name, 0, ex=window_s, nx=True)
        pipe.incr(name)
        return int(pipe.execute()[1])
    now = time.monotonic()
    with _lock:
        ends, count = _local.get(key, (0.0, 0))
        if now >= ends:
            ends, count = now + window_s, 0
        _local[key] = (ends, count + 1)
        return count + 1


def reset() -> None:
    """Forget every in-process count (tests; Redis counters expire on their own)."""
    with _lock:
        _local.clear()
