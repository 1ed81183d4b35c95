"""Celery tasks: execute a judge run, and pick up runs whose executor died."""

from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from oversight.core.enqueue import enqueue_on_commit

from .models import STALE_AFTER_S, JudgeRun
from .runner import execute


@shared_task(ignore_result=True, acks_late=True)
def run_judge(run_id: int) -> str:
    """Execute run `run_id`. Idempotent: a run that is done, cancelled or executed elsewhere is left alone, and
    answers already written are never asked again."""
    return execute(run_id).outcome


@shared_task(ignore_result=True)
def resume_stale_judge_runs() -> int:
    """Re-enqueue runs whose executor died (a stale heartbeat) or whose task was lost. Claiming is atomic, so a
    duplicate finds the run taken."""
    stale = timezone.now() - timedelta(seconds=STALE_AFTER_S)
    ids = list(
        JudgeRun.objects.filter(
            Q(status=JudgeRun.Status.RUNNING, heartbeat_at__lt=stale)
            | Q(status=JudgeRun.Status.QUEUED, cancel_requested=False, created_at__lt=stale)
        ).values_list("pk", flat=True)
    )
    for run_id in ids:
        run_judge.delay(run_id)
    return len(ids)


def start_run(run: JudgeRun) -> None:
    """Enqueue a run once the transaction that created it commits (without a worker: in the long-jobs thread,
    never in the request that asked for it)."""
    enqueue_on_commit(run_judge, run.pk, background=True)
