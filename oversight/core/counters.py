"""Fixed-window counters shared by every process (Redis) or kept in this one (no REDIS_URL): rate limits.

Not Django's cache: its instances are context-local under ASGI, so each websocket and each trip through
sync_to_async built a new Redis client, pool and TCP connection (6% of a web process's samples at 50 chats).
This module keeps one pool per process.
"""

import threading
import time

from django.conf import settings

_lock = threading.Lock()
_local: dict[str, tuple[float, int]] = {}  # key -> (window ends at, count)
_client = None


def _redis():
    global _client
    if _client is None:
        import redis
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.retry import Retry

        # retry: redis-py 8 clients made from a URL retry nothing; the first command after a Redis restart failed.
        _client = redis.Redis.from_url(
            settings.REDIS_URL, retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3))
    return _client


def hit(key: str, window_s: int) -> int:
    """Count one event under `key`; returns how many there have been in the current window, this one included."""
    if getattr(settings, "REDIS_URL", ""):
        name = f"oversight:count:{key}"
        pipe = _redis().pipeline(transaction=True)
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
