"""A protocol trial as its judge's socket drives it (async), and the advocates' turns generated the way chat
replies are: `generation.run_generation` with the `TURNS` target — flushed every half second, the public part
relayed to the trial's chat group as `chat.delta` frames (offsets into the public text), finalised with the
model's record, and then the transcript's next step started from here.

Each call is one trip to the chat's database thread (executor.chat_db). Frames published to the trial's group:
`chat.message` (a turn's payload: new, or final), `chat.delta` (a turn's public text as it grows) and
`debate.state` (`debate.transcript_state`: rounds, whether the judge may ask or end). A judge's consumer
relays them as the chat consumer does; it needs a `debate_state` handler beside `chat_message`/`chat_delta`.
"""

from __future__ import annotations

from channels.layers import get_channel_layer

from oversight.assistant import live
from oversight.assistant.advocates import visible_so_far
from oversight.assistant.debate import (
    Advanced,
    TurnJob,
    interrupt_stale_turns,
    transcript_advance,
    transcript_end,
    transcript_group,
    transcript_question,
    turn_finish,
    turn_flush,
    turn_key,
    turn_payload,
)
from oversight.assistant.executor import chat_db
from oversight.assistant.generation import Target, cancel_generation, start_generation
from oversight.assistant.services import ChatRejected
from oversight.assistant.transcripts import judge_view
from oversight.core.models import Event, Trial
from oversight.core.protocols import PROTOCOL_KINDS


def _visible(job: TurnJob, text: str) -> str:
    return visible_so_far(text, word_limit=job.word_limit, scratchpad=job.scratchpad)


def _end(*, job: TurnJob, **fields) -> tuple[list[dict], object]:
    """Finalise the turn (a turn already final is left alone: nothing to publish, nothing follows)."""
    turn = turn_finish(message_id=job.message_id, **fields)
    return ([turn_payload(turn, turn.transcript.protocol)] if turn is not None else []), turn


async def _send(*, transcript_id: int, trial_id: int | None, event: dict, live_text: tuple | None = None) -> None:
    """To every page watching the transcript, through its channel-layer group (the trial's chat group for a
    judge's own transcript). The chat's direct delivery to this process's pages (`pages.publish`) is not used
    here: a judge's page is one page per trial, and its frames are few next to a chat's."""
    if live_text is not None:
        await live.aset(*live_text)
    await get_channel_layer().group_send(transcript_group(transcript_id=transcript_id, trial_id=trial_id), event)


async def _publish(job: TurnJob, event: dict, live_text: tuple | None = None) -> None:
    await _send(transcript_id=job.transcript_id, trial_id=job.trial_id, event=event, live_text=live_text)


async def _after_turn(job: TurnJob, turn) -> None:
    """A turn is final: take the transcript's next step (the other side, the next round, or the end)."""
    if turn is None:
        return
    advanced = await chat_db(transcript_advance)(transcript_id=job.transcript_id)
    await publish(transcript_id=job.transcript_id, trial_id=job.trial_id, advanced=advanced)


TURNS = Target(
    flush=turn_flush,
    end=_end,
    publish=_publish,
    follow=_after_turn,
    visible=_visible,
    key=lambda job: turn_key(job.message_id),
)


async def publish(*, transcript_id: int, trial_id: int | None, advanced: Advanced) -> None:
    """Send a step's payloads and state to the pages watching, stop what it stopped and start what it stored."""
    events = [{"type": "chat.message", "message": payload} for payload in advanced.payloads]
    if advanced.state is not None:
        events.append({"type": "debate.state", "state": advanced.state})
    for event in events:
        await _send(transcript_id=transcript_id, trial_id=trial_id, event=event)
    for key in advanced.cancel:
        cancel_generation(key)
    for job in advanced.jobs:
        start_generation(job, TURNS)


def _judged_trial(token: str, position: int) -> Trial | None:
    return (
        Trial.objects.select_related("participant__study", "condition", "transcript")
        .filter(
            participant__token=token,
            position=position,
            condition__kind__in=PROTOCOL_KINDS,
            transcript__isnull=False,
        )
        .first()
    )


async def judge_trial(*, token: str, position: int) -> Trial | None:
    """The participant's trial at `position` if it shows a protocol transcript; None otherwise."""
    return await chat_db(_judged_trial)(token, position)


def _resume(trial: Trial, reconnect: bool) -> dict:
    interrupt_stale_turns(transcript_id=trial.transcript_id)
    if reconnect:
        Event.objects.create(participant_id=trial.participant_id, trial=trial, kind=Event.Kind.RECONNECT)
    return {"type": "history", "transcript": judge_view(trial.transcript).as_dict()}


async def judge_resume(*, trial: Trial, reconnect: bool) -> dict:
    """The history frame a judge's page starts from; then the transcript's next step starts (its first round,
    when the judge has just opened the trial; a turn again, when its process died)."""
    history = await chat_db(_resume)(trial, reconnect)
    # A consumer's own group frames reach its page after this handler returns: after the history, as they should.
    advanced = await chat_db(transcript_advance)(transcript_id=trial.transcript_id)
    await publish(transcript_id=trial.transcript_id, trial_id=trial.pk, advanced=advanced)
    return history


async def judge_act(
    *, trial_id: int, transcript_id: int, action: str | None, text: str = "", client_id: str = ""
) -> None:
    """Ask a question, go on without one, or end the debate; or raise ChatRejected with the reason."""
    if action == "question":
        advanced = await chat_db(transcript_question)(trial_id=trial_id, text=text, client_id=client_id)
    elif action == "continue":
        advanced = await chat_db(transcript_question)(trial_id=trial_id, text="", client_id=client_id)
    elif action == "end":
        advanced = await chat_db(transcript_end)(trial_id=trial_id)
    else:
        raise ChatRejected("Unknown request.")
    await publish(transcript_id=transcript_id, trial_id=trial_id, advanced=advanced)
