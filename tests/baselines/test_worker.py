"""With a broker: a real Celery worker executes a run; stopped half way it hands the run on, and a new worker
finishes it with exactly one result per item and nothing sent twice."""

import contextlib
import re
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from oversight.baselines import runner
from oversight.baselines.models import BaselineResult, BaselineRun
from oversight.baselines.runner import create_run
from oversight.baselines.tasks import resume_stale_baselines, run_baseline
from oversight.celery import app
from oversight.core.models import ModelEndpoint
from oversight_dev.faketgi import FakeTGI
from tests.baselines.conftest import SCRIPTED, generation_requests, make_items
from tests.fixtures_worker import _close_worker_connections

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@contextlib.contextmanager
def worker_on(queue):
    """A real worker thread consuming only `queue` (as tests/fixtures_worker.py's fixture, startable twice)."""
    signals.task_postrun.connect(_close_worker_connections, weak=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=30):
            yield
    finally:
        signals.task_postrun.disconnect(_close_worker_connections)


def wait_for(predicate, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def queue():
    if app.conf.task_always_eager:
        pytest.skip("Celery runs tasks eagerly (no REDIS_URL): there is no broker for a worker")
    return f"oversight-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def fast_flush(monkeypatch):
    monkeypatch.setattr(runner, "FLUSH_INTERVAL_S", 0.05)


def results(run):
    return BaselineResult.objects.filter(run=run).count()


def assert_exactly_once(run, items, tgi):
    per_item = Counter(BaselineResult.objects.filter(run=run).values_list("item_id", flat=True))
    assert set(per_item) == {i.pk for i in items} and set(per_item.values()) == {1}
    sent = Counter(re.search(r"Question (q\d+):", r.json["inputs"]).group(1) for r in generation_requests(tgi))
    assert len(sent) == len(items) and set(sent.values()) == {1}, "an item was sent to the model twice"


def test_a_worker_stopped_half_way_hands_the_run_to_the_next_worker(bank, queue):
    items = make_items(bank, 150)
    with FakeTGI(letter_logprobs=SCRIPTED, ttft_ms=20) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, max_concurrency=2)
        run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")

        with worker_on(queue):
            run_baseline.apply_async((run.pk,), queue=queue)
            assert wait_for(lambda: results(run) >= 20, timeout_s=20)
        # The first worker is gone: the run is half done, queued again, its continuation in the broker.
        run.refresh_from_db()
        assert 20 <= run.done < 150 and run.status == "queued" and run.claimed_by == ""

        with worker_on(queue):
            assert wait_for(lambda: BaselineRun.objects.get(pk=run.pk).status == "done", timeout_s=30)

        run.refresh_from_db()
        assert run.done == 150 and run.errors == 0 and run.summary["items"] == 150
        assert_exactly_once(run, items, tgi)


@pytest.fixture
def default_queue(queue):
    # The sweep enqueues on the default queue; point it at this test's private queue.
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous


def test_a_run_whose_worker_was_killed_is_picked_up_again_by_the_stale_run_sweep(bank, default_queue):
    items = make_items(bank, 30)
    with FakeTGI(letter_logprobs=SCRIPTED) as tgi:
        endpoint = ModelEndpoint.objects.create(name="t", kind="tgi", base_url=tgi.url, max_concurrency=4)
        run = create_run(endpoint=endpoint, bank=bank, method="zero-shot")
        # What a kill -9 leaves behind: "running", a heartbeat that stopped, some results, no task in the broker.
        BaselineResult.objects.bulk_create(
            [BaselineResult(run=run, item=item, probabilities=[1, 0, 0, 0], predicted=0) for item in items[:10]]
        )
        BaselineRun.objects.filter(pk=run.pk).update(
            status="running", claimed_by="killed", heartbeat_at=timezone.now() - timedelta(minutes=10)
        )

        with worker_on(default_queue):
            assert resume_stale_baselines() == 1
            assert wait_for(lambda: BaselineRun.objects.get(pk=run.pk).status == "done", timeout_s=30)

        assert results(run) == 30
        assert len(generation_requests(tgi)) == 20
