"""Celery tasks: execute a baseline run (in slices, so a stopping worker hands it on), and pick up runs whose
executor died."""

from datetime import timedelta

from celery import shared_task
from celery.worker import state as worker_state
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from oversight.core.enqueue import enqueue_on_commit

from .models import STALE_AFTER_S, BaselineRun
from .runner import execute


def _worker_stopping() -> bool:
    # Set by a warm or cold shutdown of this worker (0 is a valid value: compare with None).
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


@shared_task(bind=True, ignore_result=True, acks_late=True)
def run_baseline(self, run_id: int) -> str:
    """Execute run `run_id`. Idempotent: a run that is done, cancelled or executed elsewhere is left alone;
    results already written are never redone. Unless eager, it yields after a slice (or when the worker
    stops) and re-enqueues itself on the queue it came from."""
    eager = bool(self.request.is_eager)
    slice_s = None if eager else float(settings.BASELINE_SLICE_S)
    result = execute(run_id, slice_s=slice_s, should_yield=None if eager else _worker_stopping)
    if result.outcome == "yielded":
        queue = (self.request.delivery_info or {}).get("routing_key") or None
        run_baseline.apply_async((run_id,), queue=queue)
    return result.outcome


@shared_task(ignore_result=True)
def resume_stale_baselines() -> int:
    """Re-enqueue runs whose executor died (a stale heartbeat) or whose continuation was lost. Safe to run
    often: claiming is atomic, so a duplicate task just finds the run taken. Schedule it with beat
    (CELERY_BEAT_SCHEDULE) every minute or so."""
    stale = timezone.now() - timedelta(seconds=STALE_AFTER_S)
    runs = BaselineRun.objects.filter(
        Q(status=BaselineRun.Status.RUNNING, heartbeat_at__lt=stale)
        | Q(status=BaselineRun.Status.QUEUED, cancel_requested=False)
        & (Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale))
    ).values_list("pk", flat=True)
    ids = list(runs)
    for run_id in ids:
        run_baseline.delay(run_id)
    return len(ids)


def start_run(run: BaselineRun) -> None:
    """Enqueue a run once the transaction that created it commits. Should the broker be down, the run stays
    queued and `resume_stale_baselines` sends it later."""
    enqueue_on_commit(run_baseline, run.pk)
