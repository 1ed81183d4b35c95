"""The bank import job: `bank_import_request` keeps the upload and creates a Job → the task after commit → the
importer → done with the counts, or failed with `file:line: what`; the upload is removed either way. (The upload
page that calls it: tests/console/test_banks.py.)"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from oversight.banks.models import Bank, Item
from oversight.core import tasks
from oversight.core.models import Job
from oversight.core.services import bank_imports
from oversight.core.services.bank_imports import JobProgress, bank_import_request, bank_import_run, upload_dir
from tests.banks.helpers import CUSTOM_BAD, CUSTOM_OK
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _uploads_in_a_temporary_media_root_and_tasks_inline(settings, tmp_path, tasks_inline):
    """Uploads go to this test's MEDIA_ROOT; the import task runs inline (these tests are about the job)."""
    settings.MEDIA_ROOT = tmp_path / "media"


def request_import(user, content: str, capture, *, name="mine.csv") -> Job:
    with capture(execute=True) as callbacks:
        job = bank_import_request(
            upload=SimpleUploadedFile(name, content.encode()),
            format="custom",
            custom_format="csv",
            bank_name="Mine",
            by=user,
        )
    assert len(callbacks) == 1
    job.refresh_from_db()
    return job


def test_a_requested_import_runs_after_commit_and_ends_done_with_the_counts(alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = bank_import_request(
            upload=SimpleUploadedFile("mine.csv", CUSTOM_OK.encode()),
            format="custom",
            custom_format="csv",
            bank_name="Mine",
            by=alice,
        )
    assert (job.kind, job.status, job.created_by, job.params["filename"]) == ("import", "queued", alice, "mine.csv")
    upload = upload_dir().parent / job.params["path"]
    assert upload.is_file() and len(callbacks) == 1

    callbacks[0]()  # the commit: the task runs (eagerly here)
    job.refresh_from_db()
    assert job.status == Job.Status.DONE, job.message
    assert job.result["bank_name"] == "Mine" and Bank.objects.get(pk=job.result["bank_id"]).items.count() == 2
    assert job.started_at and job.finished_at and any("2 new" in line for line in job.result["summary"])
    assert not upload.exists() and not any(upload_dir().iterdir())


def test_a_bad_file_fails_the_job_with_file_and_line_and_writes_nothing(alice, django_capture_on_commit_callbacks):
    job = request_import(alice, CUSTOM_BAD, django_capture_on_commit_callbacks, name="bad.csv")
    assert job.status == Job.Status.FAILED
    assert job.message.startswith("bad.csv:3: answer 'Z' is not one of A, B")  # not the server's path
    assert not Item.objects.exists() and not any(upload_dir().iterdir())


def test_an_unexpected_error_fails_the_job_without_its_text(alice, monkeypatch, django_capture_on_commit_callbacks):
    def broken(**kwargs):
        raise RuntimeError("/srv/media/uploads exploded")

    monkeypatch.setattr(bank_imports, "import_custom", broken)
    job = request_import(alice, CUSTOM_OK, django_capture_on_commit_callbacks)
    assert job.status == Job.Status.FAILED and "RuntimeError" in job.message and "/srv" not in job.message
    assert not any(upload_dir().iterdir())


def test_the_task_is_safe_to_run_twice(alice, django_capture_on_commit_callbacks):
    job = request_import(alice, CUSTOM_OK, django_capture_on_commit_callbacks)
    assert tasks.run_bank_import.delay(job.pk) is not None  # the upload is gone and the job finished
    assert bank_import_run(job_id=job.pk) is False
    job.refresh_from_db()
    assert job.status == Job.Status.DONE and Item.objects.count() == 2


def test_the_task_leaves_other_kinds_of_job_alone():
    export = Job.objects.create(kind=Job.Kind.EXPORT, study=make_study())
    assert bank_import_run(job_id=export.pk) is False
    export.refresh_from_db()
    assert export.status == Job.Status.QUEUED


def test_an_unreachable_broker_fails_the_job_and_drops_the_upload(
    alice, broker_unreachable, django_capture_on_commit_callbacks
):
    broker_unreachable(tasks.run_bank_import)
    job = request_import(alice, CUSTOM_OK, django_capture_on_commit_callbacks)
    assert job.status == Job.Status.FAILED and job.message == bank_imports.NOT_QUEUED
    assert not any(upload_dir().iterdir()) and not Bank.objects.exists()


def test_progress_is_stored_at_most_every_half_second(monkeypatch):
    job = Job.objects.create(kind=Job.Kind.IMPORT, status=Job.Status.RUNNING)
    clock = iter([10.0, 10.1, 10.7, 10.8])
    monkeypatch.setattr(bank_imports.time, "monotonic", lambda: next(clock))
    progress = JobProgress(job)
    progress("read", 1, 10)
    progress("read", 2, 10)  # 0.1 s later: skipped
    job.refresh_from_db()
    assert (job.done, job.total) == (1, 10)
    progress("read", 3, 10)
    progress("read", 10, 10)  # the end of a stage is always stored
    job.refresh_from_db()
    assert (job.done, job.total, job.message) == (10, 10, "Read and checked; writing to the database")
