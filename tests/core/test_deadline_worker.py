"""With a broker, a real Celery worker finalises an abandoned trial within 2 s of its deadline."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.celery import app
from oversight.core.models import Participant, Trial
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import Answer, trial_select, trial_show
from oversight.core.tasks import sweep_expired_trials
from tests.factories import make_study

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def default_queue_is_private(celery_worker):
    # trial_show enqueues on the default queue; point it at the test worker's private queue.
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = celery_worker.queue
    yield celery_worker
    app.conf.task_default_queue = previous


def wait_for(predicate, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def abandoned_trial(time_limit_s: int) -> Trial:
    study = make_study(time_limit_s=time_limit_s)
    participant: Participant = participant_join(study=study, params={"pid": "walked-away"}, consent=True)
    trial = participant.trials.order_by("position").first()
    trial = trial_show(trial=trial)
    trial_select(trial=trial, answer=Answer(choice=2, confidence=60))
    return trial


def test_the_deadline_task_finalises_an_abandoned_trial_within_two_seconds(default_queue_is_private):
    trial = abandoned_trial(time_limit_s=2)
    assert wait_for(lambda: Trial.objects.get(pk=trial.pk).status == Trial.Status.TIMED_OUT, timeout_s=6)
    trial.refresh_from_db()
    lag = (trial.submitted_at - trial.deadline_at).total_seconds()
    assert 0 <= lag <= 2.0, f"finalised {lag:.3f}s after the deadline"
    assert (trial.choice, trial.confidence, trial.submit_kind) == (2, 60, Trial.SubmitKind.SERVER)


def test_the_periodic_sweep_finalises_a_trial_whose_deadline_task_was_lost(celery_worker):
    # The deadline task went to a queue nobody consumes (as if lost with a killed worker).
    trial = abandoned_trial(time_limit_s=60)
    Trial.objects.filter(pk=trial.pk).update(deadline_at=timezone.now() - timedelta(milliseconds=100))
    sweep_expired_trials.apply_async(queue=celery_worker.queue)
    assert wait_for(lambda: Trial.objects.get(pk=trial.pk).status == Trial.Status.TIMED_OUT, timeout_s=5)
    assert Trial.objects.get(pk=trial.pk).choice == 2
