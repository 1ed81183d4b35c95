"""Celery tasks: thin, take ids, safe to run twice (the services lock or claim and check state)."""

from celery import shared_task

from oversight.core.services.bank_imports import bank_import_run
from oversight.core.services.trials import finalize_expired_trials, trial_finalize_if_expired


@shared_task(ignore_result=True)
def finalize_trial(trial_id: int) -> bool:
    """Runs at a trial's deadline (enqueued with eta when the item is first shown)."""
    return trial_finalize_if_expired(trial_id=trial_id)


@shared_task(ignore_result=True)
def sweep_expired_trials() -> int:
    """Periodic safety net (beat, every second) for deadline tasks lost with a killed worker or broker."""
    return finalize_expired_trials()


@shared_task(ignore_result=True, acks_late=True)
def run_bank_import(job_id: int) -> bool:
    """Import the file an import Job names (enqueued by `bank_import_request`); False when already taken."""
    return bank_import_run(job_id=job_id)
