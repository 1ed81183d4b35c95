"""The one way this project enqueues a Celery task from a request or a service: after the transaction commits.

A worker that received the task before the rows it names were committed would not find them, so every task is
sent from `transaction.on_commit` (at once when no transaction is open). Tasks re-enqueued by a task or a beat
sweep, where no transaction is open, call `apply_async` themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.db import connections, transaction

log = logging.getLogger(__name__)

# Long jobs (bank imports, exports) on the embedded default: without a worker they would run eagerly inside the
# upload's request for as long as they take (issue 15: a 22 MB bank, 26-52 s) and hold one of the web process's
# threads. They run here instead, one after another, and their job page shows the progress as with a worker.
_jobs: ThreadPoolExecutor | None = None
_jobs_guard = threading.Lock()


def _jobs_thread() -> ThreadPoolExecutor:
    global _jobs
    with _jobs_guard:  # two requests' threads may enqueue at once: still one thread, so one job at a time
        if _jobs is None:
            _jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="long-jobs")
        return _jobs


def _run_in_background(task, args: tuple) -> None:
    try:
        task.apply_async(args)
    except Exception:  # noqa: BLE001 - the job row records its own failure; this is the thread's last resort
        log.exception("background job %s failed", task.name, extra={"task": task.name, "task_args": list(args)})
    finally:
        connections.close_all()


def enqueue_on_commit(
    task,
    *args,
    eta: datetime | None = None,
    on_failure: Callable[[], object] | None = None,
    background: bool = False,
) -> None:
    """Send `task(*args)` (at `eta`, if given) once the current transaction commits.

    A broker that cannot be reached is logged, then `on_failure()` is called, rather than raised: by then the
    request's own work is committed, and a participant must never get an error page because Redis restarted
    (docs/topology.md, finding 4). What was not enqueued has a way back: the deadline sweep, the stale-baseline
    sweep, or `on_failure` saying so on the job's page. Eager (the embedded default) the task runs right here,
    and its own errors propagate as they would in a worker — except a `background` job (long work: imports,
    exports), which then runs in the process's long-jobs thread (`JOBS_IN_THREAD`), never in the request.
    """

    def send() -> None:
        if task.app.conf.task_always_eager and background and settings.JOBS_IN_THREAD:
            _jobs_thread().submit(_run_in_background, task, args)
            return
        if task.app.conf.task_always_eager:
            task.apply_async(args, eta=eta)
            return
        try:
            task.apply_async(args, eta=eta)
        except Exception:  # noqa: BLE001 - kombu's OperationalError after its publish retries, or worse
            log.warning(
                "could not enqueue %s", task.name, exc_info=True, extra={"task": task.name, "task_args": list(args)}
            )
            if on_failure is not None:
                on_failure()

    transaction.on_commit(send)
