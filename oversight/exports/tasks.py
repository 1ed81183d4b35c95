"""Celery tasks for exports: thin, take ids, safe to run twice (the service claims the job with a conditional
UPDATE). `run_export` is enqueued by `services.export_request` after commit; on the embedded default (no worker)
it runs in the web process's long-jobs thread, not in the request. Schedule `delete_expired_exports` with beat
(e.g. hourly) to enforce EXPORT_TTL_HOURS."""

from celery import shared_task

from oversight.exports.services import export_job_run, exports_cleanup


@shared_task(ignore_result=True, acks_late=True)
def run_export(job_id: int) -> bool:
    """Write the export a Job describes; returns False when the job was already taken or finished."""
    return export_job_run(job_id=job_id)


@shared_task(ignore_result=True)
def delete_expired_exports() -> int:
    """Delete export files past their expiry (and leftovers of vanished jobs); returns the folders removed."""
    return exports_cleanup()
