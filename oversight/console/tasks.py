"""Console background jobs: importing an uploaded question bank.

The view creates a Job row and enqueues `import_bank_job` after commit; the page polls the row. On the
embedded default Celery runs eagerly, so the import runs inline in the upload request.
"""

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from oversight.banks.importers import BankImportError, import_custom, import_mmlu, import_quality
from oversight.core.models import Job

log = logging.getLogger(__name__)

# A job still "running" after this long belongs to a worker that died (acks_late redelivers its task).
STALE_AFTER = timedelta(hours=1)
PROGRESS_EVERY_S = 0.5
STAGES = {"read": "Reading and checking the file", "write": "Writing to the database"}


class JobProgress:
    """The importers' progress callback: stores done/total/message on the job row, at most every 0.5 s.

    The write stage runs inside the importer's one transaction (which is what keeps a failed import from
    leaving half a bank). A progress row written from inside it would only become visible at commit (and on
    SQLite, writing from a second connection would wait on that transaction's lock), so in there the job
    keeps saying what it is doing instead of counting.
    """

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
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
        Job.objects.filter(pk=self.job_id).update(done=done, total=total, message=message)


def upload_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads"


def _claim(job_id: int) -> bool:
    """Mark the job running; False when another run has it (or it finished): the task is safe to run twice."""
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, kind=Job.Kind.IMPORT)
        .filter(Q(status=Job.Status.QUEUED) | Q(status=Job.Status.RUNNING, started_at__lt=now - STALE_AFTER))
        .update(status=Job.Status.RUNNING, started_at=now, message="Starting")
    )


def _relative(text: str, folder: Path) -> str:
    # Messages name the file by its server path; the researcher knows it by the name they uploaded.
    return text.replace(f"{folder}/", "")


@shared_task(ignore_result=True)
def import_bank_job(job_id: int) -> None:
    """Import the file a job names (params: path under MEDIA_ROOT, format, custom_format, bank_name).

    Expected failures (BankImportError: `file:line: what`) end the job as failed with that message; nothing is
    written, because the importers validate everything before their one write transaction.
    """
    if not _claim(job_id):
        return
    job = Job.objects.get(pk=job_id)
    params = job.params
    path = Path(settings.MEDIA_ROOT) / params["path"]
    progress = JobProgress(job_id)
    try:
        if params["format"] == "mmlu":
            result = import_mmlu(path=path, bank_name=params["bank_name"], progress=progress)
        elif params["format"] == "quality":
            result = import_quality(path=path, bank_name=params["bank_name"], progress=progress)
        else:
            result = import_custom(path=path, bank_name=params["bank_name"], format=params.get("custom_format"),
                                   progress=progress)
    except BankImportError as exc:
        _finish(job_id, Job.Status.FAILED, message=_relative(str(exc), path.parent))
    except Exception as exc:  # the job must not stay "running"; the traceback goes to the log
        log.exception("bank import job %s failed", job_id)
        _finish(job_id, Job.Status.FAILED, message=f"Unexpected error ({type(exc).__name__}); see the server log.")
    else:
        lines = [_relative(line, path.parent) for line in result.summary_lines()]
        _finish(job_id, Job.Status.DONE, message="Imported",
                result={"summary": lines, "bank_id": result.bank.pk, "bank_name": result.bank.name})
    finally:
        # Uploads can be MMLU's 160 MB tar: once imported (or rejected) the copy on the server is not needed.
        if path.parent.parent == upload_dir():
            shutil.rmtree(path.parent, ignore_errors=True)


def _finish(job_id: int, status: str, *, message: str, result: dict | None = None) -> None:
    fields = {"status": status, "message": message, "finished_at": timezone.now()}
    if result is not None:
        fields["result"] = result
    Job.objects.filter(pk=job_id).update(**fields)
