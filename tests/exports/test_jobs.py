"""The export job: a Job row → the task after commit → done with the file's path, progress in rows; expiry and
cleanup of the files."""

import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from oversight.core.models import Job
from oversight.exports import services, tasks
from oversight.exports.services import (
    ExportNotAllowed,
    export_dir,
    export_file,
    export_job_run,
    export_request,
    exports_cleanup,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")


def request_and_run(study, user, django_capture_on_commit_callbacks, **options):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = export_request(study=study, by=user, **options)
    assert len(callbacks) == 1
    job.refresh_from_db()
    return job


def test_a_requested_export_runs_after_commit_and_ends_done_with_its_file(
    study, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = export_request(study=study, by=alice, formats=["csv", "parquet"])
    assert job.kind == Job.Kind.EXPORT and job.status == Job.Status.QUEUED and len(callbacks) == 1
    assert job.params == {"formats": ["csv", "parquet"], "include_external_ids": False, "include_pilots": False}

    callbacks[0]()  # the commit: the task runs (eagerly on the embedded default)
    job.refresh_from_db()
    assert job.status == Job.Status.DONE, job.message
    path = export_dir() / job.result["path"]
    assert path.is_file() and path.name == job.result["filename"] and path.stat().st_size == job.result["size"]
    assert job.result["formats"] == ["csv", "parquet"]
    assert job.result["manifest_hash"] == study.manifest_hash
    assert job.done == job.total == sum(job.result["row_counts"].values()) > 0
    assert job.started_at and job.finished_at and job.message.startswith("Exported")
    assert export_file(job) == path
    with zipfile.ZipFile(path) as zf:
        assert any(n.endswith("/parquet/trials.parquet") for n in zf.namelist())


def test_the_file_expires_after_EXPORT_TTL_HOURS(study, alice, settings, django_capture_on_commit_callbacks):
    settings.EXPORT_TTL_HOURS = 5
    job = request_and_run(study, alice, django_capture_on_commit_callbacks)
    assert timedelta(hours=4, minutes=59) < job.expires_at - job.finished_at <= timedelta(hours=5, seconds=1)


def test_the_expiry_defaults_to_72_hours(study, alice, django_capture_on_commit_callbacks):
    job = request_and_run(study, alice, django_capture_on_commit_callbacks)
    assert abs((job.expires_at - job.finished_at) - timedelta(hours=72)) < timedelta(seconds=1)


def test_running_the_task_again_leaves_a_finished_job_alone(study, alice, django_capture_on_commit_callbacks):
    job = request_and_run(study, alice, django_capture_on_commit_callbacks)
    before = (job.result, job.finished_at)
    assert tasks.run_export.delay(job.pk) is not None
    assert export_job_run(job_id=job.pk) is False
    job.refresh_from_db()
    assert (job.result, job.finished_at) == before


def test_a_job_left_running_by_a_dead_worker_is_run_again_once_stale(study, alice):
    job = Job.objects.create(
        kind=Job.Kind.EXPORT,
        study=study,
        created_by=alice,
        params={"formats": ["csv"]},
        status=Job.Status.RUNNING,
        started_at=timezone.now() - timedelta(minutes=5),
    )
    assert export_job_run(job_id=job.pk) is False  # still someone else's
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - services.STALE_AFTER - timedelta(minutes=1))
    assert export_job_run(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.status == Job.Status.DONE and export_file(job) is not None


def test_an_unreachable_broker_fails_the_job_instead_of_leaving_it_queued(
    study, alice, broker_unreachable, django_capture_on_commit_callbacks
):
    broker_unreachable(tasks.run_export)
    job = request_and_run(study, alice, django_capture_on_commit_callbacks)
    assert job.status == Job.Status.FAILED and job.message == services.NOT_QUEUED
    assert export_file(job) is None


def test_external_ids_on_a_study_that_forbids_them_are_refused_before_any_job(study, alice):
    study.allow_external_id_export = False
    study.save(update_fields=["allow_external_id_export"])
    with pytest.raises(ExportNotAllowed):
        export_request(study=study, by=alice, include_external_ids=True)
    assert not Job.objects.filter(kind=Job.Kind.EXPORT).exists()


def test_a_job_whose_study_stopped_allowing_external_ids_fails_with_the_reason(study, alice):
    job = Job.objects.create(
        kind=Job.Kind.EXPORT, study=study, created_by=alice, params={"formats": ["csv"], "include_external_ids": True}
    )
    study.allow_external_id_export = False
    study.save(update_fields=["allow_external_id_export"])
    export_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "does not allow exporting recruitment ids" in job.message
    assert export_file(job) is None


def test_an_unexpected_error_fails_the_job_and_leaves_no_file(study, alice, monkeypatch):
    job = Job.objects.create(kind=Job.Kind.EXPORT, study=study, created_by=alice, params={"formats": ["csv"]})

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services, "write_documents", broken)
    export_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "RuntimeError" in job.message and "disk on fire" not in job.message
    assert not services.job_folder(job.pk).exists()


def test_cleanup_deletes_expired_files_and_marks_their_jobs(study, alice, django_capture_on_commit_callbacks):
    old = request_and_run(study, alice, django_capture_on_commit_callbacks)
    fresh = request_and_run(study, alice, django_capture_on_commit_callbacks)
    Job.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    old_path = export_dir() / old.result["path"]

    assert tasks.delete_expired_exports.delay() is not None
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert not old_path.exists() and not services.job_folder(old.pk).exists()
    assert old.result["expired"] is True and old.message.startswith("Expired")
    assert export_file(old) is None
    assert export_file(fresh) is not None
    assert exports_cleanup() == 0  # nothing left to do: safe to run again


def test_cleanup_removes_old_leftovers_of_jobs_that_no_longer_exist(study, alice, settings):
    stray = Path(settings.EXPORT_DIR) / "job-999999"
    stray.mkdir(parents=True)
    (stray / "half.zip.part").write_bytes(b"x")
    assert exports_cleanup() == 0  # young: maybe a job being created right now
    assert exports_cleanup(now=timezone.now() + timedelta(hours=73)) == 1
    assert not stray.exists()


def test_beat_runs_the_cleanup_task_hourly():
    # The task itself is tested above (test_cleanup_deletes_expired_files_and_marks_their_jobs); this checks that
    # the schedule names it under its registered name.
    from django.conf import settings

    from oversight.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["delete-expired-exports"]
    assert entry["task"] in app.tasks and app.tasks[entry["task"]].name == tasks.delete_expired_exports.name
    assert entry["schedule"] == 3600.0
