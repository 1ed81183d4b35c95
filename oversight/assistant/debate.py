"""Protocol transcripts as they are written (sync, transactional): advance a transcript turn by turn, take the
judge's questions, persist, finalise and describe the advocates' turns. docs/protocols.md, "Generation".

A transcript moves one step per `transcript_advance`, which locks it and stores what comes next *before* any
model is asked: an open protocol's model first states its choice of answer (a private `choice` turn); then each
round's arguments, both placeholders at once in a simultaneous round (generated in parallel) or one after the
other in a sequential one; between rounds of an interactive condition the transcript waits for the judge to ask
a question or go on. The turns are generated and streamed the way chat replies are
(`generation.run_generation` with `judging.TURNS`: flushed every half second, relayed to the trial's chat group,
finalised with the model's record) or, before launch, by the self-play job (`selfplay.py`).

A turn whose generation failed, was interrupted (its process died) or cancelled is kept and asked again, at
most `MAX_ATTEMPTS` times per turn; after that the transcript is marked failed and the judge still answers.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from oversight.assistant import live
from oversight.assistant.advocates import (
    Brief,
    PublicTurn,
    advocate_messages,
    parse_choice,
    prompt_hash,
    speaker_label,
    split_output,
    visible_so_far,
)
from oversight.assistant.backends import GenerationRequest, request_for_endpoint
from oversight.assistant.marked_quotes import checked_text, display_text, find_marked_quotes
from oversight.assistant.models import TranscriptTurn
from oversight.assistant.render import render_markdown
from oversight.assistant.services import STALE_AFTER_S, ChatRejected, chat_group
from oversight.assistant.simulated import SimulatedItem
from oversight.assistant.simulated_advocate import ARGUE, CHOOSE, EVIDENCE
from oversight.core import protocols
from oversight.core.models import Advocate, Event, Transcript, Trial
from oversight.core.protocols import ProtocolSettings
from oversight.core.services.monitor import monitor_changed

MAX_ATTEMPTS = 3
Status = TranscriptTurn.Status
Role = TranscriptTurn.Role
NOT_RETRIED = frozenset({Status.COMPLETE})


def transcript_group(*, transcript_id: int, trial_id: int | None) -> str:
    """Where a transcript's frames go: the judge's trial's chat group (a per-trial transcript), or its own."""
    return chat_group(trial_id) if trial_id else f"transcript.{transcript_id}"


def turn_key(turn_id: int) -> str:
    """A turn's live-text key and frame id: apart from chat message ids, which are plain numbers."""
    return f"turn-{turn_id}"


@dataclass(frozen=True)
class TurnJob:
    """A turn ready to generate: its placeholder and the exact request, read in the transaction that made it
    (as `services.ReplyJob`; `generation.run_generation` runs either)."""

    message_id: int
    transcript_id: int
    trial_id: int | None
    deadline_at: datetime | None
    endpoint_id: int
    endpoint_name: str
    max_concurrency: int
    request: GenerationRequest
    word_limit: int
    scratchpad: bool


@dataclass(frozen=True)
class Advanced:
    """What a transcript step stored: payloads to publish, turns to generate, and the transcript's state."""

    payloads: list[dict]
    jobs: list[TurnJob]
    state: dict | None = None
    cancel: tuple[str, ...] = ()  # live keys of generations to stop (the judge ended the debate)


NOTHING = Advanced([], [])


def _locked(transcript_id: int) -> Transcript:
    return (
        Transcript.objects.select_for_update(of=("self",))
        .select_related("condition", "item__passage", "study")
        .get(pk=transcript_id)
    )


def _own_trial(transcript: Transcript) -> Trial | None:
    if transcript.shared:
        return None
    return transcript.trials.select_related("participant__study").first()


def _visible_turns(turns: list[TranscriptTurn], *, round_: int, position: int, sequential: bool) -> list[PublicTurn]:
    """The public turns an advocate at `position` may see when writing round `round_`."""
    seen = []
    for turn in turns:
        if turn.status != Status.COMPLETE or turn.role == Role.CHOICE:
            continue
        if turn.role == Role.JUDGE:
            ok = turn.round <= round_
        else:
            ok = turn.round < round_ or (sequential and turn.round == round_ and turn.position < position)
        if ok:
            seen.append(public_turn(turn))
    return seen


def public_turn(turn: TranscriptTurn) -> PublicTurn:
    text = checked_text(turn.content, turn.quotes) if turn.role == Role.ADVOCATE else turn.content
    return PublicTurn(id=turn.pk, round=turn.round, role=turn.role, position=turn.position, text=text)


def _answers(transcript: Transcript) -> tuple[str, str]:
    options = transcript.item.options
    return tuple(options[i] for i in transcript.options)  # type: ignore[return-value]


def _sampling(advocate: Advocate, settings: ProtocolSettings) -> dict:
    sampling = dict(advocate.sampling or {})
    # Room for a scratchpad and the argument; the judge never sees more than the word limit anyway.
    sampling.setdefault("max_tokens", 4 * settings.word_limit + (400 if settings.scratchpad else 0))
    return sampling


def _placeholder(
    transcript: Transcript,
    *,
    settings: ProtocolSettings,
    advocate: Advocate,
    turns: list[TranscriptTurn],
    role: str,
    round_: int,
    position: int | None,
    trial: Trial | None,
    now,
    seq: int,
) -> tuple[TranscriptTurn, TurnJob]:
    """Store a turn's placeholder with the record of its context, and build the request for it."""
    item = transcript.item
    story = item.passage.text if item.passage_id else None
    speaking = position if position is not None else 0
    choosing = role == Role.CHOICE
    assignment = None if choosing or not transcript.argues else transcript.argues[speaking]
    visible = (
        [] if choosing else _visible_turns(turns, round_=round_, position=speaking, sequential=_sequential(settings))
    )
    brief = Brief(
        kind=transcript.protocol,
        settings=settings,
        position=speaking,
        question=item.text,
        answers=_answers(transcript),
        assignment=assignment,
        story=story,
        round=round_,
        transcript=tuple(visible),
        system_prompt=advocate.system_prompt,
        choosing=choosing,
    )
    messages = advocate_messages(brief)
    sampling = _sampling(advocate, settings)
    endpoint = advocate.endpoint
    turn = TranscriptTurn.objects.create(
        transcript=transcript,
        seq=seq,
        round=round_,
        role=role,
        position=position,
        status=Status.STREAMING,
        endpoint=endpoint,
        model_id=endpoint.model_label or endpoint.name,
        sampling=sampling,
        prompt_hash=prompt_hash(messages),
        context={
            "advocate": advocate.position,
            "turn_ids": [t.id for t in visible],
            "story": story is not None,
            "assignment": None if assignment is None else "AB"[assignment],
        },
        created_at=now,
        heartbeat_at=now,
    )
    gold = item.gold_index
    judge_question = next((t.text for t in reversed(visible) if t.role == Role.JUDGE and t.round == round_), "")
    request = request_for_endpoint(
        endpoint,
        messages=messages,
        sampling=sampling,
        # The simulated advocate's oracle (for an open protocol's choice); a served model gets `messages` only.
        item=SimulatedItem(
            item_key=f"{item.bank_id}:{item.external_id}:{transcript.pk}",
            question=item.text,
            options=list(brief.answers),
            gold_index=transcript.options.index(gold) if gold in transcript.options else None,
            passage=story,
        ),
        advocate={
            "role": CHOOSE if choosing else (EVIDENCE if transcript.protocol == protocols.EVIDENCE_ONLY else ARGUE),
            "assignment": assignment,
            "round": round_,
            "position": speaking,
            "debate": transcript.protocol in protocols.DEBATE_KINDS,
            "quote_form": settings.quote_form,
            "scratchpad": settings.scratchpad,
            "judge_question": judge_question,
        },
    )
    job = TurnJob(
        message_id=turn.pk,
        transcript_id=transcript.pk,
        trial_id=trial.pk if trial else None,
        deadline_at=trial.deadline_at if trial else None,
        endpoint_id=endpoint.pk,
        endpoint_name=endpoint.name,
        max_concurrency=endpoint.max_concurrency,
        request=request,
        word_limit=settings.word_limit,
        scratchpad=settings.scratchpad,
    )
    return turn, job


def _sequential(settings: ProtocolSettings) -> bool:
    return settings.turn_order == protocols.SEQUENTIAL


def _end(transcript: Transcript, *, status: str, ended_by: str, now) -> None:
    transcript.status = status
    transcript.ended_by = ended_by
    transcript.finished_at = now
    fields = ["status", "ended_by", "finished_at", "rounds_done"]
    if transcript.shared and status == Transcript.Status.COMPLETE:
        transcript.content_hash = content_hash(transcript)
        fields.append("content_hash")
    transcript.save(update_fields=fields)


def content_hash(transcript: Transcript) -> str:
    """A hash of a transcript's public turns: what the manifest records of a shared one."""
    turns = transcript.turns.filter(status=Status.COMPLETE).exclude(role=Role.CHOICE).order_by("seq")
    blob = json.dumps(
        [[t.round, t.role, t.position, t.content, [q.get("verified") for q in t.quotes]] for t in turns],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def waiting_for_judge(transcript: Transcript, settings: ProtocolSettings, turns: list[TranscriptTurn]) -> bool:
    """Between rounds of an interactive condition, before the judge has asked or passed."""
    done = transcript.rounds_done
    return (
        not transcript.is_finished
        and done >= 1
        and settings.question_after(done)
        and not any(t.role == Role.JUDGE and t.round == done + 1 for t in turns)
    )


def transcript_advance(*, transcript_id: int, now=None) -> Advanced:
    """Store the transcript's next turns (placeholders) and return them to generate; nothing while a turn is still
    being generated, before a live transcript's trial is shown, while it waits for the judge, or once finished."""
    now = now or timezone.now()
    with transaction.atomic():
        transcript = _locked(transcript_id)
        trial = _own_trial(transcript)
        if transcript.is_finished:
            return NOTHING
        if trial is not None:
            if trial.is_expired(now) or trial.is_final:
                _end(transcript, status=Transcript.Status.COMPLETE, ended_by=_ended_by(transcript, trial), now=now)
                return Advanced([], [], state=transcript_state(transcript))
            if trial.status != Trial.Status.SHOWN or not trial.participant.study.is_live:
                return NOTHING
        turns = list(transcript.turns.order_by("seq"))
        if any(t.status == Status.STREAMING for t in turns):
            return NOTHING
        settings = transcript.condition.protocol_settings()
        advocates = {a.position: a for a in transcript.condition.advocates.select_related("endpoint")}
        seq = (turns[-1].seq if turns else 0) + 1
        make = dict(transcript=transcript, settings=settings, turns=turns, trial=trial, now=now)

        if transcript.protocol in protocols.OPEN_KINDS and not transcript.argues:
            attempts = sum(t.role == Role.CHOICE for t in turns)
            if attempts >= MAX_ATTEMPTS:
                _end(transcript, status=Transcript.Status.FAILED, ended_by="", now=now)
                return Advanced([], [], state=transcript_state(transcript))
            turn, job = _placeholder(advocate=advocates[0], role=Role.CHOICE, round_=1, position=None, seq=seq, **make)
            _running(transcript)
            return Advanced([], [job])

        if _settle(transcript, turns) and transcript.rounds_done >= settings.rounds:
            _end(transcript, status=Transcript.Status.COMPLETE, ended_by=Transcript.EndedBy.ROUNDS, now=now)
            return Advanced([], [], state=transcript_state(transcript))
        # Asked whether or not this step settled the round: two turns finishing at once each take a step.
        if waiting_for_judge(transcript, settings, turns):
            return Advanced([], [], state=transcript_state(transcript, turns))
        round_ = transcript.rounds_done + 1
        positions = range(len(transcript.speakers))
        done = {
            t.position for t in turns if t.role == Role.ADVOCATE and t.round == round_ and t.status == Status.COMPLETE
        }
        tries = Counter(t.position for t in turns if t.role == Role.ADVOCATE and t.round == round_)
        todo = [p for p in positions if p not in done]
        if any(tries[p] >= MAX_ATTEMPTS for p in todo):
            _end(transcript, status=Transcript.Status.FAILED, ended_by="", now=now)
            return Advanced([], [], state=transcript_state(transcript))
        if _sequential(settings):
            todo = todo[:1]
        payloads, jobs = [], []
        for k, position in enumerate(todo):
            speaker = transcript.speakers[position]
            turn, job = _placeholder(
                advocate=advocates[speaker], role=Role.ADVOCATE, round_=round_, position=position, seq=seq + k, **make
            )
            payloads.append(turn_payload(turn, transcript.protocol))
            jobs.append(job)
        _running(transcript)
        return Advanced(payloads, jobs, state=transcript_state(transcript))


def _ended_by(transcript: Transcript, trial: Trial) -> str:
    """Why a trial's transcript ends with the trial: every round was written after all; the judge answered before
    the last round (an early end, as "End the debate" is: the judge's page lets them answer at any time); or the
    clock ran out (the page's submission at zero, or the server's)."""
    turns = list(transcript.turns.order_by("seq"))
    if not any(t.status == Status.STREAMING for t in turns):
        _settle(transcript, turns)
    if transcript.rounds_done >= transcript.condition.protocol_settings().rounds:
        return Transcript.EndedBy.ROUNDS
    if trial.status == Trial.Status.ANSWERED:
        return Transcript.EndedBy.JUDGE
    return Transcript.EndedBy.DEADLINE


def _settle(transcript: Transcript, turns: list[TranscriptTurn]) -> bool:
    """Count the current round as done once every speaking position has a finished turn in it; True if it was."""
    round_ = transcript.rounds_done + 1
    done = {t.position for t in turns if t.role == Role.ADVOCATE and t.round == round_ and t.status == Status.COMPLETE}
    if not transcript.speakers or len(done) < len(transcript.speakers):
        return False
    transcript.rounds_done = round_
    transcript.save(update_fields=["rounds_done"])
    return True


def _running(transcript: Transcript) -> None:
    if transcript.status != Transcript.Status.RUNNING:
        transcript.status = Transcript.Status.RUNNING
        transcript.save(update_fields=["status"])


# --- The judge's actions ------------------------------------------------------------------------------------


def _judge_transcript(trial_id: int, now) -> tuple[Trial, Transcript]:
    trial = (
        Trial.objects.select_for_update(of=("self",)).select_related("participant__study", "condition").get(pk=trial_id)
    )
    if trial.transcript_id is None:
        raise ChatRejected("There is no debate for this question.")
    transcript = _locked(trial.transcript_id)
    if transcript.shared:
        raise ChatRejected("This transcript was written before the study started: it cannot take questions.")
    if trial.status != Trial.Status.SHOWN or trial.is_expired(now) or not trial.participant.study.is_live:
        raise ChatRejected("Time is up for this question.")
    if transcript.is_finished:
        raise ChatRejected("The debate is over.")
    return trial, transcript


def transcript_question(*, trial_id: int, text: str, client_id: str = "", now=None) -> Advanced:
    """The judge's question between rounds (empty text: go on without one): stored as a turn of the transcript,
    then the next round starts with it in both advocates' context."""
    now = now or timezone.now()
    text = (text or "").strip()
    with transaction.atomic():
        trial, transcript = _judge_transcript(trial_id, now)
        turns = list(transcript.turns.order_by("seq"))
        if client_id and (known := next((t for t in turns if t.client_id == client_id), None)):
            return Advanced([turn_payload(known, transcript.protocol)], [])
        settings = transcript.condition.protocol_settings()
        if not any(t.status == Status.STREAMING for t in turns):
            _settle(transcript, turns)
        if not settings.judge_questions:
            raise ChatRejected("In this condition the judge does not question the advocates.")
        if not waiting_for_judge(transcript, settings, turns):
            raise ChatRejected("You can ask a question when the current round is over.")
        limit = trial.condition.max_message_chars
        if len(text) > limit:
            raise ChatRejected(f"Your question is {len(text):,} characters long; the limit is {limit:,}.")
        judge = TranscriptTurn.objects.create(
            transcript=transcript,
            seq=(turns[-1].seq if turns else 0) + 1,
            round=transcript.rounds_done + 1,
            role=Role.JUDGE,
            raw=text,
            content=text,
            words=len(text.split()),
            client_id=client_id[:64],
            created_at=now,
            finished_at=now,
        )
        Event.objects.create(
            participant_id=trial.participant_id,
            trial=trial,
            kind=Event.Kind.JUDGE_QUESTION,
            at=now,
            data={"turn_id": judge.pk, "round": judge.round, "chars": len(text), "continue": not text},
        )
        advanced = transcript_advance(transcript_id=transcript.pk, now=now)
        payloads = ([turn_payload(judge, transcript.protocol)] if text else []) + advanced.payloads
        return Advanced(payloads, advanced.jobs, state=advanced.state)


def transcript_end(*, trial_id: int, now=None) -> Advanced:
    """The judge ends the debate early (Michael et al. 2023): recorded; running turns are stopped and kept."""
    now = now or timezone.now()
    with transaction.atomic():
        trial, transcript = _judge_transcript(trial_id, now)
        if not transcript.condition.protocol_settings().judge_may_end:
            raise ChatRejected("In this condition the debate runs all its rounds.")
        running = tuple(
            turn_key(pk) for pk in transcript.turns.filter(status=Status.STREAMING).values_list("pk", flat=True)
        )
        _end(transcript, status=Transcript.Status.COMPLETE, ended_by=Transcript.EndedBy.JUDGE, now=now)
        Event.objects.create(
            participant_id=trial.participant_id,
            trial=trial,
            kind=Event.Kind.DEBATE_ENDED,
            at=now,
            data={"rounds_done": transcript.rounds_done, "running_turns": len(running)},
        )
        monitor_changed(study_id=trial.participant.study_id, participant_id=trial.participant_id)
        return Advanced([], [], state=transcript_state(transcript), cancel=running)


# --- Persisting and finalising turns ------------------------------------------------------------------------


def turn_flush(*, texts: dict[int, str | None], now=None) -> None:
    """Persist growing turns (their whole output so far) and heartbeat the rest, in one transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        for pk, text in texts.items():
            fields = {"heartbeat_at": now} if text is None else {"heartbeat_at": now, "raw": text}
            TranscriptTurn.objects.filter(pk=pk, status=Status.STREAMING).update(**fields)


def turn_finish(*, message_id: int, text: str, status: str, now=None, **fields) -> TranscriptTurn | None:
    """Finalise a turn: its public and private parts, its quotes checked and counted, its model record. A choice
    turn sets whom the open protocol's advocates argue for. A turn already final is left alone."""
    now = now or timezone.now()
    with transaction.atomic():
        transcript_id = TranscriptTurn.objects.filter(pk=message_id).values_list("transcript_id", flat=True).first()
        if transcript_id is None:
            return None
        transcript = _locked(transcript_id)  # the transcript first, then its turn: the order every step locks in
        turn = TranscriptTurn.objects.select_for_update().filter(pk=message_id).first()
        if turn is None or turn.status != Status.STREAMING:
            return None
        settings = transcript.condition.protocol_settings()
        out = split_output(text, word_limit=settings.word_limit, scratchpad=settings.scratchpad)
        turn.raw = text
        turn.status = status
        turn.finished_at = now
        if turn.role == Role.CHOICE:
            turn.private = text  # the choice itself is shown to nobody; the arguments that follow show it
            choice = parse_choice(text) if status == Status.COMPLETE else None
            if status == Status.COMPLETE and choice is None:
                turn.status, fields["error_kind"] = Status.FAILED, "bad_choice"
                fields["error"] = "the reply named neither answer, or both"
            elif choice is not None:
                _take_choice(transcript, choice)
        else:
            item = transcript.item
            turn.content, turn.private, turn.words, turn.truncated = out.public, out.private, out.words, out.truncated
            turn.quotes = find_marked_quotes(
                out.public,
                item.passage.text if item.passage_id else None,
                budget=settings.quote_budget,
                exclude=[item.text, *_answers(transcript)],
            )
        for key, value in fields.items():
            setattr(turn, key, value)
        turn.save()
        if fields.get("error_kind") == "deadline" and not transcript.is_finished:
            _end(transcript, status=Transcript.Status.COMPLETE, ended_by=Transcript.EndedBy.DEADLINE, now=now)
        trial = _own_trial(transcript)
        if trial is not None:
            monitor_changed(study_id=trial.participant.study_id, participant_id=trial.participant_id)
    live.delete(turn_key(message_id))
    return turn


def _take_choice(transcript: Transcript, choice: int) -> None:
    """An open protocol's model chose answer `choice` (0 or 1): it argues for it. In an open debate the
    protagonist (advocate 0) speaks in its answer's position, so Debater A still argues the first answer."""
    if transcript.protocol == protocols.OPEN_DEBATE:
        transcript.argues, transcript.speakers = [0, 1], ([0, 1] if choice == 0 else [1, 0])
    else:
        transcript.argues = [choice]
    transcript.chosen_by_model = True
    transcript.save(update_fields=["argues", "speakers", "chosen_by_model"])


def interrupt_stale_turns(*, now=None, transcript_id: int | None = None) -> int:
    """Turns of per-trial transcripts whose process died mid-stream: keep the partial output, mark them
    interrupted (the next step asks again). Shared transcripts are the self-play job's to resume."""
    now = now or timezone.now()
    stale = TranscriptTurn.objects.filter(
        status=Status.STREAMING, transcript__shared=False, heartbeat_at__lt=now - timedelta(seconds=STALE_AFTER_S)
    )
    if transcript_id is not None:
        stale = stale.filter(transcript_id=transcript_id)
    count = 0
    for turn in stale:
        final = turn_finish(
            message_id=turn.pk,
            text=turn.raw,
            status=Status.INTERRUPTED,
            now=now,
            error_kind="interrupted",
            error="no heartbeat from the generating process",
        )
        count += final is not None
    return count


# --- What the judge's page gets -----------------------------------------------------------------------------


def turn_payload(turn: TranscriptTurn, kind: str, live_text: str | None = None) -> dict:
    """A turn as the judge's page renders it: labelled by position, the advocate's public part only (as
    sanitised HTML once final, as plain text while it streams); never its scratchpad or raw output."""
    payload = {
        "id": turn_key(turn.pk),
        "seq": turn.seq,
        "round": turn.round,
        "role": turn.role,
        "speaker": speaker_label(kind, turn.position),
        "position": turn.position,
        "status": turn.status,
    }
    if turn.role == Role.JUDGE:
        payload["text"] = turn.content
        return payload
    if turn.status == Status.STREAMING:
        settings = ProtocolSettings.for_kind(kind, turn.transcript.condition.protocol) if live_text is None else None
        so_far = (
            live_text
            if live_text is not None
            else visible_so_far(turn.raw, word_limit=settings.word_limit, scratchpad=settings.scratchpad)
        )
        payload["text"] = so_far
        return payload
    payload["html"] = render_markdown(display_text(turn.content, turn.quotes), quotes=turn.quotes)
    payload["quotes"] = [
        {k: q.get(k) for k in ("text", "verified", "over_budget", "words", "start", "end", "form")} for q in turn.quotes
    ]
    payload["words"] = turn.words
    payload["truncated"] = turn.truncated
    if turn.status in {Status.FAILED, Status.INTERRUPTED, Status.CANCELLED}:
        payload["notice"] = _notice(turn)
    return payload


def _notice(turn: TranscriptTurn) -> str:
    if turn.status == Status.CANCELLED:
        return "This turn was stopped when the debate ended."
    return "This turn could not be finished; it is written again."


def transcript_state(transcript: Transcript, turns: list[TranscriptTurn] | None = None) -> dict:
    """Where the transcript is, for the judge's page: rounds, whose turn, whether the judge may act."""
    settings = transcript.condition.protocol_settings()
    turns = list(transcript.turns.order_by("seq")) if turns is None else turns
    waiting = waiting_for_judge(transcript, settings, turns)
    return {
        "protocol": transcript.protocol,
        "rounds": settings.rounds,
        "rounds_done": transcript.rounds_done,
        "status": transcript.status,
        "ended_by": transcript.ended_by,
        "waiting_for_judge": waiting,
        "may_question": waiting and not transcript.shared,
        "may_end": settings.judge_may_end and not transcript.shared and not transcript.is_finished,
    }


def public_turns(transcript: Transcript) -> list[TranscriptTurn]:
    """The turns anyone may see, in order: every advocate turn (failed ones with their notice) and the judge's
    questions; never choice turns."""
    return list(transcript.turns.exclude(role=Role.CHOICE).order_by("seq"))


def live_texts(turns: list[TranscriptTurn]) -> dict[int, str]:
    keys = {turn_key(t.pk): t.pk for t in turns if t.status == Status.STREAMING}
    return {keys[k]: text for k, text in live.get_many(list(keys)).items()}
