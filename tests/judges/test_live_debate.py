"""Live interactive debate (issue 17): the model judge takes the judge's seat, questions both debaters between
rounds, and answers on the transcript it steered; its transcripts follow the people's rules."""

import pytest

from oversight.assistant.models import TranscriptTurn
from oversight.core.models import ModelEndpoint, Participant, Trial
from oversight.judges.models import JudgeRun, JudgeVerdict
from oversight.judges.runner import execute
from oversight.judges.services import judge_run_request
from oversight_dev.faketgi import FakeTGI
from tests.factories import make_protocol_study

pytestmark = pytest.mark.django_db
QUESTION = "Which of you can quote the line about the ration?"


def test_a_live_model_judge_questions_the_debaters_and_answers_on_its_own_transcripts():
    study = make_protocol_study(slug="live-debate", conditions=(("interactive_debate", {"rounds": 2}),), n_items=2)
    condition = study.conditions.get()
    with FakeTGI(letter_logprobs={" A": -0.2, " B": -1.7}, reply=QUESTION) as tgi:
        judge = ModelEndpoint.objects.create(name="weak judge", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = judge_run_request(study=study, condition=condition, endpoint=judge, mode="live", enqueue=False)
        assert execute(run.pk).outcome == "done"
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE and run.done == 2 and run.errors == 0
    model = Participant.objects.get(study=study, kind="model")
    trials = list(Trial.objects.filter(participant=model).select_related("transcript", "item").order_by("position"))
    assert [t.status for t in trials] == [Trial.Status.ANSWERED] * 2
    gold_first = []
    for trial in trials:
        transcript = trial.transcript
        assert not transcript.shared and transcript.status == "complete" and transcript.rounds_done == 2
        questions = list(transcript.turns.filter(role=TranscriptTurn.Role.JUDGE).values_list("content", flat=True))
        assert questions == [QUESTION]  # one question, between the two rounds
        verdict = JudgeVerdict.objects.get(trial=trial)
        assert QUESTION in verdict.material and verdict.method == "logprobs"
        gold_first.append(transcript.options[0] == trial.item.gold_index)
    assert sorted(gold_first) == [False, True]  # as for a person: the side shown first alternates
