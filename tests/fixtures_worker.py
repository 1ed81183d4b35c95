"""A real Celery worker for tests, in this process, consuming a queue of its own.

Use with `@pytest.mark.worker` and `@pytest.mark.django_db(transaction=True)`: the worker runs in a thread
with its own database connection, so it sees only committed rows (STACK-NOTES trap 6). The queue is private
to the test so a development worker on the same Redis cannot steal its tasks; enqueue with
`task.apply_async(args, queue=celery_worker.queue)`.
"""

import uuid
from dataclasses import dataclass

import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from django.db import connections

from oversight.celery import app


@dataclass(frozen=True)
class RunningWorker:
    queue: str
    worker: object


def _close_worker_connections(**_kwargs) -> None:
    # Runs in the worker thread after each task, as Celery's Django fixup does in a real worker: a connection
    # left open there would keep the test database from being flushed or dropped.
    connections.close_all()


@pytest.fixture
def celery_worker():
    if app.conf.task_always_eager:
        pytest.skip("Celery runs tasks eagerly (no REDIS_URL): there is no broker for a worker")
    queue = f"oversight-test-{uuid.uuid4().hex[:12]}"
    signals.task_postrun.connect(_close_worker_connections, weak=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]) as worker:
            yield RunningWorker(queue=queue, worker=worker)
    finally:
        signals.task_postrun.disconnect(_close_worker_connections)
