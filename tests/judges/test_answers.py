"""How a model judge answers: letter log-probabilities where the endpoint gives them, else a stated probability
per answer parsed from its reply; the method is stored with each answer."""

import pytest

from oversight.baselines.clients import ItemError, TGIBackend
from oversight.core.models import ModelEndpoint
from oversight.judges.models import JudgeRun, JudgeVerdict
from oversight.judges.prompts import parse_probabilities
from oversight.judges.runner import execute
from oversight.judges.services import judge_run_request
from oversight_dev.faketgi import FakeTGI

pytestmark = pytest.mark.django_db

STATED = "A: 20%\nB: 80%"


def test_it_reads_one_stated_probability_per_answer_and_normalises_them():
    assert parse_probabilities("A: 20%\nB: 60%", "AB") == pytest.approx([0.25, 0.75])
    assert parse_probabilities("(A) = 70 %, (B) - 30%", "AB") == pytest.approx([0.7, 0.3])
    assert parse_probabilities("A: 90%. On reflection, A: 10%, B: 10%", "AB") == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize("reply", ["A: 70%", "I think A.", "A: 0%, B: 0%", "A: 150%, B: 20%"])
def test_a_reply_without_a_usable_probability_for_every_answer_is_not_an_answer(reply):
    assert parse_probabilities(reply, "AB") is None


def run_on(study, endpoint, kind="debate", **fields):
    run = judge_run_request(study=study, condition=study.conditions.get(kind=kind), endpoint=endpoint, **fields)
    execute(run.pk)
    run.refresh_from_db()
    return run


def test_asked_for_a_stated_probability_the_judge_stores_it_as_verbal(bot_study):
    with FakeTGI(reply=STATED) as tgi:
        endpoint = ModelEndpoint.objects.create(name="verbal", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_on(bot_study, endpoint, answer="verbal", enqueue=False)
    assert run.status == JudgeRun.Status.DONE and run.summary["methods"] == {"verbal": 6}
    for verdict in JudgeVerdict.objects.filter(run=run).select_related("trial__transcript"):
        a, b = verdict.trial.transcript.options
        assert (verdict.probabilities[a], verdict.probabilities[b]) == pytest.approx((0.2, 0.8))
        assert verdict.response["reply"].startswith(STATED) and verdict.trial.choice == b


def test_without_log_probabilities_auto_falls_back_to_a_stated_probability(bot_study, monkeypatch):
    async def refuse(self, prompt, spec, salt=""):
        raise ItemError("no_logprobs", "the server answered without details.top_tokens")

    monkeypatch.setattr(TGIBackend, "distribution", refuse)
    with FakeTGI(reply=STATED) as tgi:
        endpoint = ModelEndpoint.objects.create(name="no-lp", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_on(bot_study, endpoint, enqueue=False)
    assert run.summary["methods"] == {"verbal": 6} and run.errors == 0


def test_an_unreadable_reply_is_an_error_of_the_run_not_an_answer(bot_study):
    with FakeTGI(reply="It is hard to say.") as tgi:
        endpoint = ModelEndpoint.objects.create(name="vague", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        run = run_on(bot_study, endpoint, answer="verbal", enqueue=False)
    assert run.status == JudgeRun.Status.DONE and run.errors == 6
    assert run.summary["errors_by_kind"] == {"unparsed": 6} and not JudgeVerdict.objects.filter(run=run).exists()


def test_a_cancelled_run_stops_before_the_next_answer_and_keeps_what_it_has(bot_study, monkeypatch):
    from oversight.judges import runner

    judged = []
    original = runner.Judge.judge

    def judge_then_cancel(self, unit):
        method = original(self, unit)
        judged.append(unit)
        if len(judged) == 2:
            JudgeRun.objects.get(pk=self.run.pk).request_cancel()
        return method

    monkeypatch.setattr(runner.Judge, "judge", judge_then_cancel)
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"seed": 1})
    run = run_on(bot_study, endpoint, enqueue=False)
    assert run.status == JudgeRun.Status.CANCELLED and run.done == 2
    assert JudgeVerdict.objects.filter(run=run).count() == 2
