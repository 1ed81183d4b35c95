"""A transcript's steps (sync services): each turn stored before it is generated, rounds in order, choices,
retries, the judge's questions and early end, deadlines, and a dead process's turn asked again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.assistant.debate import (
    MAX_ATTEMPTS,
    interrupt_stale_turns,
    transcript_advance,
    transcript_end,
    transcript_question,
    turn_finish,
    turn_flush,
    turn_payload,
)
from oversight.assistant.models import TranscriptTurn
from oversight.assistant.selfplay import generate_transcript
from oversight.assistant.services import ChatRejected
from oversight.core.models import Event, Transcript
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.factories import make_protocol_study

pytestmark = pytest.mark.django_db
Status = TranscriptTurn.Status


def shown_trial(kind="debate", pid="judge", time_limit_s=None, simulation=None, **protocol):
    study = make_protocol_study(
        slug=pid, conditions=((kind, protocol),), n_items=1, time_limit_s=time_limit_s, simulation=simulation
    )
    trial = participant_join(study=study, params={"pid": pid}, consent=True).trials.get(transcript__isnull=False)
    return trial_show(trial=trial)


def finish(job, text="An argument.", status=Status.COMPLETE, **fields):
    return turn_finish(message_id=job.message_id, text=text, status=status, **fields)


def turns(trial):
    return list(TranscriptTurn.objects.filter(transcript_id=trial.transcript_id).order_by("seq"))


def test_a_live_transcript_waits_until_its_judge_opens_the_trial():
    study = make_protocol_study(conditions=(("debate", {}),), n_items=1)
    trial = participant_join(study=study, params={"pid": "j"}, consent=True).trials.get(transcript__isnull=False)
    assert transcript_advance(transcript_id=trial.transcript_id).jobs == []
    assert transcript_advance(transcript_id=trial_show(trial=trial).transcript_id).jobs != []


def test_both_sides_of_a_simultaneous_round_are_stored_before_either_is_generated_and_nothing_more_starts():
    trial = shown_trial()
    step = transcript_advance(transcript_id=trial.transcript_id)
    assert [(t.role, t.round, t.position, t.status) for t in turns(trial)] == [
        ("advocate", 1, 0, "streaming"),
        ("advocate", 1, 1, "streaming"),
    ]
    assert [p["speaker"] for p in step.payloads] == ["Debater A", "Debater B"]
    assert transcript_advance(transcript_id=trial.transcript_id).jobs == []  # one step at a time
    assert Transcript.objects.get(pk=trial.transcript_id).status == "running"


def test_each_turn_carries_its_model_record():
    trial = shown_trial()
    job = transcript_advance(transcript_id=trial.transcript_id).jobs[0]
    finish(job, ttft_ms=12.5, total_ms=40.0, prompt_tokens=900, completion_tokens=60, finish_reason="stop")
    turn = TranscriptTurn.objects.get(pk=job.message_id)
    assert turn.endpoint.name == "judge advocate" and turn.model_id == "judge advocate"
    assert turn.sampling == {"max_tokens": 1000} and len(turn.prompt_hash) == 64
    assert (turn.ttft_ms, turn.total_ms, turn.prompt_tokens, turn.completion_tokens) == (12.5, 40.0, 900, 60)
    assert turn.context == {"advocate": 0, "turn_ids": [], "story": True, "assignment": "A"}


def test_a_debate_runs_its_rounds_and_ends():
    trial = shown_trial(rounds=2)
    transcript = generate_transcript(trial.transcript_id)
    assert (transcript.status, transcript.rounds_done, transcript.ended_by) == ("complete", 2, "rounds")
    assert [(t.round, t.position) for t in turns(trial)] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert all(t.status == "complete" and t.private.startswith("<thinking>") for t in turns(trial))
    assert all("<thinking" not in t.content for t in turns(trial))


def test_a_turn_past_the_word_limit_is_cut_for_everyone_and_kept_whole():
    trial = shown_trial(word_limit=10)
    job = transcript_advance(transcript_id=trial.transcript_id).jobs[0]
    raw = " ".join(f"word{i}" for i in range(25))
    turn = finish(job, raw)
    assert turn.raw == raw and turn.truncated and turn.words == 10
    assert turn.content == " ".join(f"word{i}" for i in range(10))
    assert "word10" not in turn_payload(turn, "debate")["html"]


def test_a_failed_turn_is_asked_again_and_after_three_failures_the_transcript_fails():
    trial = shown_trial()
    for attempt in range(MAX_ATTEMPTS):
        jobs = transcript_advance(transcript_id=trial.transcript_id).jobs
        failing = next(j for j in jobs if j.request.advocate["position"] == 1) if attempt == 0 else jobs[0]
        if attempt == 0:
            finish(next(j for j in jobs if j is not failing))
        finish(failing, "", status=Status.FAILED, error_kind="unavailable", error="connection refused")
    assert transcript_advance(transcript_id=trial.transcript_id).jobs == []
    assert Transcript.objects.get(pk=trial.transcript_id).status == "failed"
    assert [t.position for t in turns(trial) if t.status == "failed"] == [1, 1, 1]
    assert "could not be finished" in turn_payload(turns(trial)[-1], "debate")["notice"]


def test_an_open_consultant_first_chooses_its_answer_in_private_then_argues_for_it():
    trial = shown_trial("open_consultancy", simulation={"accuracy": 1.0})
    transcript = generate_transcript(trial.transcript_id)
    choice, *arguments = turns(trial)
    assert choice.role == "choice" and choice.content == "" and choice.private in {"A", "B"}
    assert transcript.chosen_by_model and transcript.options[transcript.argues[0]] == trial.item.gold_index
    assert [a.round for a in arguments] == [1, 2, 3]
    assert all(a["role"] != "choice" for a in [turn_payload(t, "open_consultancy") for t in arguments])


def test_in_an_open_debate_the_protagonist_speaks_for_the_answer_it_chose():
    trial = shown_trial("open_debate", simulation={"accuracy": 0.0})  # it always chooses the wrong answer
    transcript = generate_transcript(trial.transcript_id)
    wrong = 1 - transcript.options.index(trial.item.gold_index)
    assert transcript.argues == [0, 1] and transcript.speakers[wrong] == 0


def test_a_choice_naming_neither_answer_is_asked_again():
    trial = shown_trial("open_consultancy")
    (job,) = transcript_advance(transcript_id=trial.transcript_id).jobs
    turn = finish(job, "I cannot decide.")
    assert (turn.status, turn.error_kind) == ("failed", "bad_choice")
    (again,) = transcript_advance(transcript_id=trial.transcript_id).jobs
    assert TranscriptTurn.objects.get(pk=again.message_id).role == "choice"


def test_an_interactive_debate_waits_for_the_judge_between_rounds():
    trial = shown_trial("interactive_debate", rounds=2)
    for job in transcript_advance(transcript_id=trial.transcript_id).jobs:
        finish(job)
    waiting = transcript_advance(transcript_id=trial.transcript_id)
    assert waiting.jobs == [] and waiting.state["waiting_for_judge"] and waiting.state["may_question"]
    asked = transcript_question(trial_id=trial.pk, text="Who found the stowaway?", client_id="q1")
    assert [p["speaker"] for p in asked.payloads] == ["Judge", "Debater A", "Debater B"]
    judge = TranscriptTurn.objects.get(transcript_id=trial.transcript_id, role="judge")
    assert (judge.round, judge.content) == (2, "Who found the stowaway?")
    event = Event.objects.get(trial=trial, kind=Event.Kind.JUDGE_QUESTION)
    assert event.data == {"turn_id": judge.pk, "round": 2, "chars": 23, "continue": False}
    # A resend of the same question is stored once.
    assert transcript_question(trial_id=trial.pk, text="Who found the stowaway?", client_id="q1").jobs == []
    assert TranscriptTurn.objects.filter(role="judge").count() == 1


def test_the_judge_may_go_on_without_a_question():
    trial = shown_trial("interactive_debate", rounds=2)
    for job in transcript_advance(transcript_id=trial.transcript_id).jobs:
        finish(job)
    went_on = transcript_question(trial_id=trial.pk, text="")
    assert went_on.payloads and all(p["role"] == "advocate" for p in went_on.payloads)
    assert Event.objects.get(trial=trial, kind=Event.Kind.JUDGE_QUESTION).data["continue"] is True


def test_questions_are_refused_where_and_when_the_condition_does_not_take_them():
    plain = shown_trial("debate", pid="a")
    with pytest.raises(ChatRejected, match="does not question"):
        for job in transcript_advance(transcript_id=plain.transcript_id).jobs:
            finish(job)
        transcript_question(trial_id=plain.pk, text="Why?")
    interactive = shown_trial("interactive_debate", pid="b", rounds=2)
    transcript_advance(transcript_id=interactive.transcript_id)
    with pytest.raises(ChatRejected, match="when the current round is over"):
        transcript_question(trial_id=interactive.pk, text="Too early")


def test_the_judge_can_end_the_debate_early_and_it_is_recorded():
    trial = shown_trial()
    running = transcript_advance(transcript_id=trial.transcript_id).jobs
    ended = transcript_end(trial_id=trial.pk)
    assert set(ended.cancel) == {f"turn-{job.message_id}" for job in running}
    transcript = Transcript.objects.get(pk=trial.transcript_id)
    assert (transcript.status, transcript.ended_by) == ("complete", "judge")
    assert Event.objects.get(trial=trial, kind=Event.Kind.DEBATE_ENDED).data == {"rounds_done": 0, "running_turns": 2}
    assert transcript_advance(transcript_id=trial.transcript_id).jobs == []
    with pytest.raises(ChatRejected, match="The debate is over"):
        transcript_end(trial_id=trial.pk)


def test_the_deadline_ends_the_debate():
    trial = shown_trial(time_limit_s=60)
    later = timezone.now() + timedelta(seconds=61)
    assert transcript_advance(transcript_id=trial.transcript_id, now=later).jobs == []
    transcript = Transcript.objects.get(pk=trial.transcript_id)
    assert (transcript.status, transcript.ended_by) == ("complete", "deadline")


def test_a_turn_cancelled_by_the_deadline_ends_the_debate():
    trial = shown_trial(time_limit_s=60)
    job = transcript_advance(transcript_id=trial.transcript_id).jobs[0]
    finish(job, "half an argu", status=Status.CANCELLED, error_kind="deadline", error="the trial's deadline passed")
    assert Transcript.objects.get(pk=trial.transcript_id).ended_by == "deadline"


def test_a_turn_whose_process_died_keeps_its_partial_text_and_is_asked_again():
    trial = shown_trial()
    jobs = transcript_advance(transcript_id=trial.transcript_id).jobs
    turn_flush(texts={jobs[0].message_id: "<thinking>plan</thinking>Half of an"})
    finish(jobs[1])
    assert interrupt_stale_turns(transcript_id=trial.transcript_id) == 0  # still heartbeating
    later = timezone.now() + timedelta(seconds=30)
    assert interrupt_stale_turns(transcript_id=trial.transcript_id, now=later) == 1
    dead = TranscriptTurn.objects.get(pk=jobs[0].message_id)
    assert (dead.status, dead.content, dead.private) == ("interrupted", "Half of an", "<thinking>plan</thinking>")
    (again,) = transcript_advance(transcript_id=trial.transcript_id).jobs
    assert TranscriptTurn.objects.get(pk=again.message_id).position == 0
    finish(again)
    assert generate_transcript(trial.transcript_id).status == "complete"


def test_a_step_taken_after_the_round_was_settled_still_waits_for_the_judge():
    # Two turns finishing at once each take a step (the web process's chat threads run them in parallel): the
    # second step finds the round already counted and must wait for the judge all the same.
    trial = shown_trial("interactive_debate", rounds=2)
    for job in transcript_advance(transcript_id=trial.transcript_id).jobs:
        finish(job)
    assert transcript_advance(transcript_id=trial.transcript_id).state["waiting_for_judge"]
    again = transcript_advance(transcript_id=trial.transcript_id)
    assert again.jobs == [] and again.state["waiting_for_judge"]
