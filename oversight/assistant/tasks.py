from celery import shared_task

from oversight.assistant.services import interrupt_stale_generations


@shared_task(ignore_result=True)
def sweep_stale_generations() -> int:
    """Mark replies whose web process died mid-stream as interrupted (their partial text is kept)."""
    return interrupt_stale_generations()
