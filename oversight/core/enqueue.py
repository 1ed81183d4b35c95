"""The one way this project enqueues a Celery task from a request or a service: after the transaction commits.

A worker that received the task before the rows it names were committed would not find them, so every task is
sent from `transaction.on_commit` (at once when no transaction is open). Tasks re-enqueued by a task or a beat
sweep, where no transaction is open, call `apply_async` themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction

log = logging.getLogger(__name__)


def enqueue_on_commit(task, *args, eta: datetime | None = None, on_failure: Callable[[], object] | None = None) -> None:
    """Send `task(*args)` (at `eta`, if given) once the current transaction commits.

    A broker that cannot be reached is logged, then `on_failure()` is called, rather than raised: by then the
    request's own work is committed, and a participant must never get an error page because Redis restarted
    (docs/topology.md, finding 4). What was not enqueued has a way back: the deadline sweep, the stale-baseline
    sweep, or `on_failure` saying so on the job's page. Eager (the embedded default) the task runs right here,
    and its own errors propagate as they would in a worker.
    """

    def send() -> None:
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
