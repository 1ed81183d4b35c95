"""Celery tasks: thin, take ids, safe to run twice (the services lock and check state)."""

from celery import shared_task

from oversight.core.services.trials import finalize_expired_trials, trial_finalize_if_expired


@shared_task(ignore_result=True)
def finalize_trial(trial_id: int) -> bool:
    """Runs at a trial's deadline (enqueued with eta when the item is first shown)."""
    return trial_finalize_if_expired(trial_id=trial_id)


@shared_task(ignore_result=True)
def sweep_expired_trials() -> int:
    """Periodic safety net (beat, every second) for deadline tasks lost with a killed worker or broker."""
    return finalize_expired_trials()
