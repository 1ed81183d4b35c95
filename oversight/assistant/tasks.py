from celery import shared_task

from oversight.assistant.selfplay import selfplay_run
from oversight.assistant.services import interrupt_stale_generations


@shared_task(ignore_result=True)
def sweep_stale_generations() -> int:
    """Mark replies whose web process died mid-stream as interrupted (their partial text is kept)."""
    return interrupt_stale_generations()


@shared_task(ignore_result=True, acks_late=True)
def run_selfplay(job_id: int) -> bool:
    """Write the transcripts a self-play Job names (enqueued by `selfplay_request`); False when already taken."""
    return selfplay_run(job_id=job_id)
