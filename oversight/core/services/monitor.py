"""The live monitor's write side: services announce *which* participant changed, after commit.

Publishing only an id keeps every write path cheap whatever the number of researchers watching; each monitor
connection (console.consumers) collects the ids that changed and sends one batched update per second at most.
"""

from django.db import transaction

from oversight.core import broadcast


def monitor_group(study_id: int) -> str:
    return f"monitor.study.{study_id}"


def monitor_changed(*, study_id: int, participant_id: int) -> None:
    """Announce, after commit, that a participant's row on the monitor is out of date."""
    transaction.on_commit(
        lambda: broadcast.group_send(
            monitor_group(study_id), {"type": "monitor.changed", "participant_id": participant_id}, what="monitor note"
        )
    )
