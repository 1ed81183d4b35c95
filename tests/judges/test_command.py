"""`manage.py run_judge`: judge a condition from the command line, queue a run, or stop one."""

import io

import pytest
from django.core.management import CommandError, call_command

from oversight.core.models import ModelEndpoint
from oversight.judges.models import JudgeRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def judge():
    return ModelEndpoint.objects.create(name="sim judge", kind="simulated", simulation={"seed": 5})


def run_judge(*args) -> str:
    out = io.StringIO()
    call_command("run_judge", *args, stdout=out)
    return out.getvalue()


def test_it_judges_a_condition_here_and_says_how_it_went(bot_study, judge):
    out = run_judge("replay", "--condition", "Debate", "--endpoint", "sim judge")
    run = JudgeRun.objects.get()
    assert run.status == JudgeRun.Status.DONE and run.summary["answered"] == 6
    assert out.strip() == f"Judge run {run.pk}: done. 6 answered"


def test_it_queues_a_run_for_the_workers_and_stops_it(bot_study, judge, with_broker, monkeypatch):
    from oversight.judges import tasks

    sent = []
    monkeypatch.setattr(tasks.run_judge, "apply_async", lambda args, **kw: sent.append(args))
    condition = str(bot_study.conditions.get(kind="unaided").pk)
    out = run_judge("replay", "--condition", condition, "--endpoint", "sim judge", "--enqueue")
    run = JudgeRun.objects.get()
    assert out.strip() == f"Judge run {run.pk} queued." and run.status == JudgeRun.Status.QUEUED
    run_judge("replay", "--cancel", str(run.pk))
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.CANCELLED


def test_it_names_the_conditions_and_endpoints_to_choose_from(bot_study, judge):
    with pytest.raises(CommandError, match="Unaided, Debate"):
        run_judge("replay", "--condition", "Nope", "--endpoint", "sim judge")
    with pytest.raises(CommandError, match="sim judge"):
        run_judge("replay", "--condition", "Debate", "--endpoint", "nope")
    with pytest.raises(CommandError, match="no study 'nope'"):
        run_judge("nope", "--condition", "Debate", "--endpoint", "sim judge")
