"""The chat as a participant's socket drives it (async): find the trial, resume it, act on it.

Each call is exactly one trip to the chat's database thread (executor.chat_db): under a burst of sends that
trip is the platform's time to first token. What it returns is then published and started from here, on the
event loop: the action's messages go to every page watching the trial, and its reply, if any, starts streaming.
"""

import asyncio
import logging

from django.utils import timezone

from oversight.assistant import lease, pages
from oversight.assistant.executor import chat_db
from oversight.assistant.generation import generating_here, start_generation, stop_local
from oversight.assistant.services import (
    ChatRejected,
    Sent,
    chat_dequeue,
    chat_history,
    chat_open,
    chat_reset,
    chat_retry,
    chat_send,
    chat_stop,
)
from oversight.core.models import Condition, Event, Trial

log = logging.getLogger(__name__)

WATCH_EVERY_S = 1.0
_watching: dict[int, asyncio.Task] = {}  # trial id -> its watch; keeps the tasks referenced


def _assisted_trial(token: str, position: int) -> Trial | None:
    return (
        Trial.objects.select_related("participant__study", "condition")
        .filter(participant__token=token, position=position, condition__kind=Condition.Kind.ASSISTED)
        .first()
    )


def _resume(trial: Trial, reconnect: bool) -> tuple[dict, Sent]:
    sent = chat_dequeue(trial_id=trial.pk)
    trial.refresh_from_db()
    if reconnect:
        Event.objects.create(participant_id=trial.participant_id, trial=trial, kind=Event.Kind.RECONNECT)
    history = {"type": "history", "messages": chat_history(trial), "open": chat_open(trial, timezone.now())}
    return history, sent


async def chat_trial(*, token: str, position: int) -> Trial | None:
    """The participant's trial at `position` if it has an assistant; None for an unknown token or an unaided trial."""
    lease.start()  # this process hosts chats: from now on it can tell its own replies from a dead process's
    return await chat_db(_assisted_trial)(token, position)


async def chat_resume(*, trial: Trial, reconnect: bool, page=None) -> dict:
    """The history frame a page opening the chat starts from, with whether the chat is still open.

    A reply whose process died is marked interrupted first, and the messages queued behind a reply that has
    ended are answered, so the page is not left waiting; the other pages are told (`page`, the one asking, has
    it all in its history); a reconnect (the page had the chat open before) is recorded.
    """
    history, sent = await chat_db(_resume)(trial, reconnect)
    await publish(trial.pk, sent, skip=page)
    return history


async def chat_act(*, trial_id: int, action: str | None, text: str = "", client_id: str = "") -> str:
    """Send a message, reset the model's context, retry a failed reply or stop the streaming one, or raise
    ChatRejected with the reason. Returns a note for the sender alone ('' if none).

    A refused action publishes nothing; the caller tells the participant why.
    """
    if action == "send":
        sent = await chat_db(chat_send)(trial_id=trial_id, text=text, client_id=client_id)
    elif action == "reset":
        sent = await chat_db(chat_reset)(trial_id=trial_id)
    elif action == "retry":
        sent = await chat_db(chat_retry)(trial_id=trial_id)
    elif action == "stop":
        if stop_local(trial_id):  # generated here: its task ends it, keeping every token it relayed
            return ""
        sent = await chat_db(chat_stop)(trial_id=trial_id)
    else:
        raise ChatRejected("Unknown request.")
    await publish(trial_id, sent)
    return sent.notice


async def publish(trial_id: int, sent: Sent, skip=None) -> None:
    """Send what an action stored to every page watching the trial, and start its reply if it has one."""
    for payload in sent.payloads:
        await pages.publish(trial_id, {"type": "chat.message", "message": payload}, skip=skip)
    if sent.job is not None:
        start_generation(sent.job)
    if sent.waiting and not generating_here(trial_id) and trial_id not in _watching:
        task = asyncio.get_running_loop().create_task(_watch(trial_id))
        _watching[trial_id] = task
        task.add_done_callback(lambda _t: _watching.pop(trial_id, None))


async def _watch(trial_id: int) -> None:
    """Messages are queued behind a reply another process generates: that process answers them when its reply
    ends, but if it dies it never will, so check every WATCH_EVERY_S until they are answered (services'
    dead-reply rule ends its reply ~2 s after its last sign of life, and the queued messages are then sent)."""
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        try:
            sent = await chat_db(chat_dequeue)(trial_id=trial_id)
        except Exception:  # noqa: BLE001 - a database blip: look again next time
            log.warning("checking a queued chat failed", exc_info=True, extra={"trial_id": trial_id})
            continue
        await publish(trial_id, sent)  # not a second watch: this one is in _watching until it returns
        if not sent.waiting or generating_here(trial_id):
            return
