"""Acceptance (a) of issue 17: a replay judge run over a bot study, against the fake TGI with scripted letter
log-probabilities, stores exactly the probabilities those log-probabilities imply, and the judge read exactly the
text of what the person's page showed for that trial (the same transcript, no gold)."""

import math

import pytest

from oversight.assistant.transcripts import judge_text, judge_view
from oversight.core.models import ModelEndpoint, Participant, Trial
from oversight.judges.models import JudgeRun, JudgeVerdict
from oversight.judges.runner import execute
from oversight.judges.services import judge_run_request
from oversight_dev.faketgi import FakeTGI

pytestmark = pytest.mark.django_db

SCRIPTED = {" A": -0.3, " B": -1.5, " C": -2.0, " D": -2.5}


def softmax(values):
    weights = [math.exp(v) for v in values]
    return [w / sum(weights) for w in weights]


@pytest.fixture
def tgi():
    with FakeTGI(letter_logprobs=SCRIPTED) as server:
        yield server


@pytest.fixture
def judge_endpoint(tgi):
    return ModelEndpoint.objects.create(name="judge-tgi", kind="tgi", base_url=tgi.url, request_timeout_s=5)


def replay(study, kind, endpoint):
    condition = study.conditions.get(kind=kind)
    run = judge_run_request(study=study, condition=condition, endpoint=endpoint, enqueue=False)
    assert execute(run.pk).outcome == "done"
    run.refresh_from_db()
    return run


def test_a_replay_of_a_debate_stores_exactly_the_probabilities_the_letter_logprobs_imply(bot_study, judge_endpoint):
    run = replay(bot_study, "debate", judge_endpoint)
    people = Trial.objects.filter(participant__study=bot_study, participant__kind="human", condition=run.condition)
    assert run.status == JudgeRun.Status.DONE and run.total == people.count() == 2 * 3 and run.errors == 0
    shown_two = softmax([SCRIPTED[" A"], SCRIPTED[" B"]])  # a debate shows two answers: only A and B count
    for verdict in JudgeVerdict.objects.filter(run=run).select_related("trial__transcript", "source_trial"):
        a, b = verdict.trial.transcript.options
        expected = [0.0] * len(verdict.trial.item.options)
        expected[a], expected[b] = shown_two
        assert verdict.probabilities == pytest.approx(expected, abs=1e-12)
        assert verdict.method == "logprobs"
        trial = verdict.trial
        assert trial.participant.kind == Participant.Kind.MODEL and trial.submit_kind == Trial.SubmitKind.MODEL
        assert trial.choice == a and trial.confidence == pytest.approx(100 * shown_two[0])
        assert trial.distribution == pytest.approx([100 * p for p in expected])
        assert trial.correct == (a == trial.item.gold_index)


def test_the_judge_reads_exactly_the_person_s_transcript_as_the_page_renders_it_and_no_gold(
    bot_study, judge_endpoint, tgi
):
    run = replay(bot_study, "debate", judge_endpoint)
    sent = [r.json.get("inputs", "") for r in tgi.requests if r.path == "/generate"]
    for verdict in JudgeVerdict.objects.filter(run=run).select_related("source_trial__transcript", "trial"):
        source = verdict.source_trial
        assert verdict.trial.transcript_id == source.transcript_id  # the same transcript, not a copy
        assert verdict.material == judge_text(judge_view(source.transcript))
        assert verdict.material in verdict.prompt and verdict.prompt in sent
        item = source.item
        other = next(i for i in range(len(item.options)) if i != item.gold_index)
        gold = item.gold_index
        item.gold_index = other
        item.save(update_fields=["gold_index"])
        assert judge_text(judge_view(source.transcript)) == verdict.material  # nothing in it depends on the gold
        item.gold_index = gold
        item.save(update_fields=["gold_index"])


def test_a_replay_of_unaided_trials_reads_every_option_and_the_story_as_the_page_shows_them(bot_study, judge_endpoint):
    run = replay(bot_study, "unaided", judge_endpoint)
    expected = softmax(list(SCRIPTED.values()))
    verdicts = list(JudgeVerdict.objects.filter(run=run).select_related("source_trial__item__passage"))
    assert len(verdicts) == 2 * 3
    for verdict in verdicts:
        item = verdict.source_trial.item
        assert verdict.probabilities == pytest.approx(expected, abs=1e-12)
        assert f"Question: {item.text}" in verdict.material
        for letter, option in zip("ABCD", item.options, strict=True):
            assert f"{letter}: {option}" in verdict.material
        assert item.passage.text.strip() in verdict.material


def test_a_replay_mirrors_each_person_with_one_model_participant_and_resumes_without_asking_again(
    bot_study, judge_endpoint, tgi
):
    run = replay(bot_study, "debate", judge_endpoint)
    models = Participant.objects.filter(study=bot_study, kind="model")
    assert models.count() == 2
    assert {m.model["mirrors"] for m in models} == set(
        Participant.objects.filter(study=bot_study, kind="human").values_list("pk", flat=True)
    )
    assert all(m.model["judge_run"] == run.pk and "token" not in str(m.model) for m in models)
    asked = len(tgi.requests)
    JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.QUEUED)  # as if delivered again
    assert execute(run.pk).outcome == "done"
    assert len(tgi.requests) == asked and JudgeVerdict.objects.filter(run=run).count() == 2 * 3
