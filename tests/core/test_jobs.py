"""A job's row rules: claimed by one task run, progress while running, finished once, cancelled before it starts.

Each rule is a conditional UPDATE, so running it twice, or from two workers, changes nothing the second time.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.core.models import Job

pytestmark = pytest.mark.django_db

STALE = timedelta(hours=1)


def stored(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def running_job(**fields) -> Job:
    job = Job.objects.create(kind=Job.Kind.IMPORT)
    assert job.claim(stale_after=STALE)
    if fields:
        Job.objects.filter(pk=job.pk).update(**fields)
        job.refresh_from_db()
    return job


# --- Claiming ------------------------------------------------------------------------------------------------


def test_a_queued_job_is_claimed_once():
    job = Job.objects.create(kind=Job.Kind.EXPORT, done=3, total=9)
    second_worker = Job.objects.get(pk=job.pk)

    assert job.claim(stale_after=STALE) is True
    assert second_worker.claim(stale_after=STALE) is False  # the same task delivered twice
    row = stored(job)
    assert row.status == Job.Status.RUNNING and row.started_at is not None and row.message == "Starting"
    assert (row.done, row.total) == (0, 0)
    assert job.status == Job.Status.RUNNING and job.started_at == row.started_at  # the instance follows the row


def test_a_running_job_is_claimed_again_only_once_it_is_stale():
    job = running_job(started_at=timezone.now() - timedelta(minutes=59))
    assert Job.objects.get(pk=job.pk).claim(stale_after=STALE) is False  # its worker may well be alive

    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(minutes=61))
    again = Job.objects.get(pk=job.pk)
    assert again.claim(stale_after=STALE) is True
    assert timezone.now() - stored(job).started_at < timedelta(minutes=1)  # the new run's clock
    assert Job.objects.get(pk=job.pk).claim(stale_after=STALE) is False


@pytest.mark.parametrize("status", [Job.Status.DONE, Job.Status.FAILED, Job.Status.CANCELLED])
def test_a_finished_job_is_never_claimed_even_long_after(status):
    job = Job.objects.create(kind=Job.Kind.IMPORT, status=status, started_at=timezone.now() - timedelta(days=9))
    assert job.claim(stale_after=STALE) is False
    assert stored(job).status == status


# --- Progress and finishing ----------------------------------------------------------------------------------


def test_progress_is_stored_while_running_and_dropped_after_the_end():
    job = running_job()
    assert job.set_progress(done=4, total=10, message="Writing trials") is True
    assert (stored(job).done, stored(job).total, stored(job).message) == (4, 10, "Writing trials")

    job.finish(Job.Status.DONE, message="Exported 10 rows", done=10, total=10)
    late = Job.objects.get(pk=job.pk)
    assert late.set_progress(done=5, total=10, message="Writing events") is False  # a worker that lost the race
    assert (stored(job).done, stored(job).message) == (10, "Exported 10 rows")


def test_a_job_finishes_once():
    job = running_job()
    assert job.finish(Job.Status.DONE, message="Imported", result={"bank_id": 1}) is True
    first = stored(job)
    assert first.is_finished and first.finished_at is not None and first.result == {"bank_id": 1}

    assert Job.objects.get(pk=job.pk).finish(Job.Status.FAILED, message="late") is False
    assert Job.objects.get(pk=job.pk).fail("late") is False
    row = stored(job)
    assert (row.status, row.message, row.finished_at, row.result) == (
        "done",
        "Imported",
        first.finished_at,
        {"bank_id": 1},
    )


def test_only_a_running_job_can_be_finished_and_only_as_done_failed_or_cancelled():
    queued = Job.objects.create(kind=Job.Kind.IMPORT)
    assert queued.finish(Job.Status.DONE, message="never ran") is False
    assert stored(queued).status == Job.Status.QUEUED
    with pytest.raises(ValueError):
        running_job().finish(Job.Status.QUEUED)


def test_a_queued_job_that_could_not_be_handed_to_a_worker_fails():
    job = Job.objects.create(kind=Job.Kind.EXPORT)
    assert job.fail("Could not reach the task queue") is True
    row = stored(job)
    assert row.status == Job.Status.FAILED and row.is_finished and row.finished_at is not None
    assert Job.objects.get(pk=job.pk).claim(stale_after=STALE) is False


def test_an_unexpected_error_fails_the_job_with_its_type_and_logs_the_traceback(caplog):
    job = running_job()
    with caplog.at_level(logging.ERROR, logger="oversight.core.models"):
        try:
            raise RuntimeError("/srv/secret/path exploded")
        except RuntimeError as exc:
            assert job.fail_unexpectedly(exc) is True
    row = stored(job)
    assert row.status == Job.Status.FAILED and row.message == "Unexpected error (RuntimeError); see the server log."
    assert "secret" not in row.message
    record = next(r for r in caplog.records if r.name == "oversight.core.models")
    assert f"job {job.pk}" in record.getMessage() and record.exc_info[0] is RuntimeError


# --- Cancelling ----------------------------------------------------------------------------------------------


def test_a_queued_job_is_cancelled_at_once_and_then_never_claimed():
    job = Job.objects.create(kind=Job.Kind.EXPORT)
    assert job.cancel() is True
    row = stored(job)
    assert row.status == Job.Status.CANCELLED and row.is_finished and row.finished_at is not None
    assert Job.objects.get(pk=job.pk).claim(stale_after=STALE) is False
    assert Job.objects.get(pk=job.pk).cancel() is False  # again: nothing changes
    assert stored(job).finished_at == row.finished_at


def test_a_running_job_is_not_cancelled_under_its_worker():
    job = running_job()
    assert Job.objects.get(pk=job.pk).cancel() is False
    assert stored(job).status == Job.Status.RUNNING
    assert job.finish(Job.Status.DONE, message="Imported") is True
