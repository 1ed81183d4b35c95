"""The chat as a participant's socket drives it (async): find the trial, resume it, act on it.

Each call is exactly one trip to the chat's database thread (executor.chat_db): under a burst of sends that
trip is the platform's time to first token. What it returns is then published and started from here, on the
event loop: the action's messages go to every page watching the trial, and its reply, if any, starts streaming.
"""

from channels.layers import get_channel_layer
from django.utils import timezone

from oversight.assistant.executor import chat_db
from oversight.assistant.generation import start_generation
from oversight.assistant.services import (
    ChatRejected,
    chat_group,
    chat_history,
    chat_open,
    chat_reset,
    chat_retry,
    chat_send,
    interrupt_stale_generations,
)
from oversight.core.models import Condition, Event, Trial


def _assisted_trial(token: str, position: int) -> Trial | None:
    return (
        Trial.objects.select_related("participant__study", "condition")
        .filter(participant__token=token, position=position, condition__kind=Condition.Kind.ASSISTED)
        .first()
    )


def _resume(trial: Trial, reconnect: bool) -> dict:
    interrupt_stale_generations(trial_id=trial.pk)
    trial.refresh_from_db()
    if reconnect:
        Event.objects.create(participant_id=trial.participant_id, trial=trial, kind=Event.Kind.RECONNECT)
    return {"type": "history", "messages": chat_history(trial), "open": chat_open(trial, timezone.now())}


async def chat_trial(*, token: str, position: int) -> Trial | None:
    """The participant's trial at `position` if it has an assistant; None for an unknown token or an unaided trial."""
    return await chat_db(_assisted_trial)(token, position)


async def chat_resume(*, trial: Trial, reconnect: bool) -> dict:
    """The history frame a page opening the chat starts from, with whether the chat is still open.

    A reply whose process died is marked interrupted first, so the page is not left waiting for it; a reconnect
    (the page had the chat open before) is recorded.
    """
    return await chat_db(_resume)(trial, reconnect)


async def chat_act(*, trial_id: int, action: str | None, text: str = "", client_id: str = "") -> None:
    """Send a message, reset the model's context or retry a failed reply, or raise ChatRejected with the reason.

    A refused action publishes nothing; the caller tells the participant why.
    """
    if action == "send":
        sent = await chat_db(chat_send)(trial_id=trial_id, text=text, client_id=client_id)
    elif action == "reset":
        sent = await chat_db(chat_reset)(trial_id=trial_id)
    elif action == "retry":
        sent = await chat_db(chat_retry)(trial_id=trial_id)
    else:
        raise ChatRejected("Unknown request.")
    layer = get_channel_layer()
    group = chat_group(trial_id)
    for payload in sent.payloads:
        await layer.group_send(group, {"type": "chat.message", "message": payload})
    if sent.job is not None:
        start_generation(sent.job)
