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


def _group(job: TurnJob) -> str:
    return transcript_group(transcript_id=job.transcript_id, trial_id=job.trial_id)


def _visible(job: TurnJob, text: str) -> str:
    return visible_so_far(text, word_limit=job.word_limit, scratchpad=job.scratchpad)


def _payload(turn) -> dict:
    return turn_payload(turn, turn.transcript.protocol)


async def _after_turn(job: TurnJob, _turn) -> None:
    """A turn is final: take the transcript's next step (the other side, the next round, or the end)."""
    advanced = await chat_db(transcript_advance)(transcript_id=job.transcript_id)
    await publish(_group(job), advanced)


TURNS = Target(
    flush=turn_flush,
    finish=turn_finish,
    payload=_payload,
    group=_group,
    visible=_visible,
    key=lambda job: turn_key(job.message_id),
    after=_after_turn,
)


async def publish(group: str, advanced: Advanced) -> None:
    """Send a step's payloads and state to the pages watching, stop what it stopped and start what it stored."""
    layer = get_channel_layer()
    for payload in advanced.payloads:
        await layer.group_send(group, {"type": "chat.message", "message": payload})
    if advanced.state is not None:
        await layer.group_send(group, {"type": "debate.state", "state": advanced.state})
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
    await publish(transcript_group(transcript_id=trial.transcript_id, trial_id=trial.pk), advanced)
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
    await publish(transcript_group(transcript_id=transcript_id, trial_id=trial_id), advanced)
