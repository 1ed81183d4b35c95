"""The judge run's tasks: a run whose executor died is sent again; a claimed run is not taken twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.core.models import ModelEndpoint
from oversight.judges import tasks
from oversight.judges.models import JudgeRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(bot_study):
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated")
    return JudgeRun.objects.create(study=bot_study, condition=bot_study.conditions.first(), endpoint=endpoint)


def test_a_run_whose_heartbeat_stopped_is_sent_again_and_a_live_one_is_not(run, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.run_judge, "delay", lambda run_id: sent.append(run_id))
    now = timezone.now()
    JudgeRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=now - timedelta(seconds=5))
    assert tasks.resume_stale_judge_runs() == 0 and sent == []
    JudgeRun.objects.filter(pk=run.pk).update(heartbeat_at=now - timedelta(seconds=120))
    assert tasks.resume_stale_judge_runs() == 1 and sent == [run.pk]


def test_two_executors_never_hold_one_run(run):
    assert run.claim("first")
    assert not JudgeRun.objects.get(pk=run.pk).claim("second")
    stale = timezone.now() + timedelta(seconds=61)
    assert JudgeRun.objects.get(pk=run.pk).claim("second", now=stale)  # the first went silent: taken over
