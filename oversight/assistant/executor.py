"""Where the chat's database work runs: `chat_db(func)` is `database_sync_to_async(func)` on the right threads.

By default (SQLite) that is asgiref's one thread-sensitive thread, like all other sync work in the process:
SQLite takes one writer at a time anyway, and the in-memory test database cannot be shared between threads
safely. On PostgreSQL every commit waits for the WAL to reach disk (4 to 11 ms on the development VM), and on
one thread 200 simultaneous chat sends, their flushes and their finishes queue behind each other's fsyncs:
CHAT_DB_THREADS (default 8 with PostgreSQL) gives the chat its own pool of threads, each with its own
connection (pair it with DB_POOL=1 so a thread does not reconnect per call).
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connections

_executor: ThreadPoolExecutor | None = None
_threads = 0


def chat_db(func):
    threads = settings.CHAT_DB_THREADS
    if threads <= 0:
        return database_sync_to_async(func)
    global _executor, _threads
    if _executor is None:
        _executor, _threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chat-db"), threads
    return database_sync_to_async(func, thread_sensitive=False, executor=_executor)


def shutdown() -> None:
    """Close each chat thread's database connection and stop the threads.

    Tests need it: channels' test communicator disables closing old connections, so without this every chat
    thread kept a session open on the test database and it could not be dropped.
    """
    global _executor
    executor, _executor = _executor, None
    if executor is None:
        return
    everyone = threading.Barrier(_threads)

    def close_mine() -> None:
        connections.close_all()
        everyone.wait(timeout=10)  # holds this thread, so each of the others runs one close_mine too

    for future in [executor.submit(close_mine) for _ in range(_threads)]:
        future.result()
    executor.shutdown(wait=True)
