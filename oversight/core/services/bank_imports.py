"""Importing an uploaded question bank as a background job, the way exports run.

`bank_import_request` keeps the upload and creates the Job → `core.tasks.run_bank_import`, enqueued after
commit → `bank_import_run` runs the banks importer → the console's job page polls the row. On the embedded
default (no worker) the job runs in the web process's long-jobs thread, never in the upload's request.

This lives in core rather than banks: the Job row is core's, and banks imports no other app.
"""

import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import connection

from oversight.banks.importers import BankImportError, import_custom, import_mmlu, import_quality
from oversight.core.enqueue import enqueue_on_commit
from oversight.core.models import Job

# A job still "running" after this long belongs to a worker that died (acks_late redelivers its task).
STALE_AFTER = timedelta(hours=1)
PROGRESS_EVERY_S = 0.5
STAGES = {"read": "Reading and checking the file", "write": "Writing to the database"}
NOT_QUEUED = "Could not reach the task queue; nothing was imported. Upload the file again."


class JobProgress:
    """The importers' progress callback: stores done/total/message on the job row, at most every 0.5 s.

    The write stage runs inside the importer's one transaction (which is what keeps a failed import from
    leaving half a bank). A progress row written from inside it would only become visible at commit (and on
    SQLite, writing from a second connection would wait on that transaction's lock), so in there the job
    keeps saying what it is doing instead of counting.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.last = 0.0
        self.stage = None
        self.depth = len(connection.atomic_blocks)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if len(connection.atomic_blocks) > self.depth:
            return
        now = time.monotonic()
        if stage == self.stage and done < total and now - self.last < PROGRESS_EVERY_S:
            return
        self.stage, self.last = stage, now
        message = STAGES.get(stage, stage)
        if stage == "read" and total and done >= total:
            message = "Read and checked; writing to the database"
        self.job.set_progress(done=done, total=total, message=message)


def upload_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads"


def bank_import_request(*, upload, format: str, custom_format: str | None, bank_name: str, by) -> Job:
    """Keep the uploaded file and create its import job, enqueued once this transaction commits.

    `format` is an importer ("mmlu", "quality", "custom"; `custom_format` "csv" or "jsonl" for the last) and
    `bank_name` the bank to import into (created if new), as the upload form detected, defaulted or was told.
    """
    # A folder per upload: two uploads of "data.tar" must not overwrite each other.
    storage = FileSystemStorage(location=settings.MEDIA_ROOT)
    path = storage.save(f"uploads/{uuid.uuid4().hex}/{storage.get_valid_name(upload.name)}", upload)
    job = Job.objects.create(
        kind=Job.Kind.IMPORT,
        created_by=by,
        message="Queued",
        params={
            "path": path,
            "filename": upload.name,
            "format": format,
            "custom_format": custom_format,
            "bank_name": bank_name,
        },
    )
    from oversight.core.tasks import run_bank_import

    enqueue_on_commit(run_bank_import, job.pk, on_failure=lambda: _not_queued(job), background=True)
    return job


def _not_queued(job: Job) -> None:
    job.fail(NOT_QUEUED)
    _remove_upload(Path(settings.MEDIA_ROOT) / job.params["path"])


def _relative(text: str, folder: Path) -> str:
    # Messages name the file by its server path; the researcher knows it by the name they uploaded.
    return text.replace(f"{folder}/", "")


def _remove_upload(path: Path) -> None:
    # Uploads can be MMLU's 160 MB tar: once imported (or rejected) the copy on the server is not needed.
    if path.parent.parent == upload_dir():
        shutil.rmtree(path.parent, ignore_errors=True)


def bank_import_run(*, job_id: int) -> bool:
    """Import the file an import job names; False when the job was not ours to run (taken, or finished).

    Expected failures (BankImportError: `file:line: what`) end the job as failed with that message; nothing is
    written, because the importers validate everything before their one write transaction.
    """
    job = Job.objects.filter(pk=job_id, kind=Job.Kind.IMPORT).first()
    if job is None or not job.claim(stale_after=STALE_AFTER):
        return False
    params = job.params
    path = Path(settings.MEDIA_ROOT) / params["path"]
    progress = JobProgress(job)
    try:
        if params["format"] == "mmlu":
            result = import_mmlu(path=path, bank_name=params["bank_name"], progress=progress)
        elif params["format"] == "quality":
            result = import_quality(path=path, bank_name=params["bank_name"], progress=progress)
        else:
            result = import_custom(
                path=path, bank_name=params["bank_name"], format=params.get("custom_format"), progress=progress
            )
    except BankImportError as exc:
        job.fail(_relative(str(exc), path.parent))
    except Exception as exc:  # the job must not stay "running"
        job.fail_unexpectedly(exc)
    else:
        lines = [_relative(line, path.parent) for line in result.summary_lines()]
        job.finish(
            Job.Status.DONE,
            message="Imported",
            result={"summary": lines, "bank_id": result.bank.pk, "bank_name": result.bank.name},
        )
    finally:
        _remove_upload(path)
    return True
