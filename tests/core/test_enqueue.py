"""Tasks are sent once the transaction that wrote their rows commits; a broker that cannot be reached is logged,
never an error page."""

import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from oversight.core import tasks
from oversight.core.enqueue import enqueue_on_commit
from oversight.core.models import Trial
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.finalize_trial, "apply_async", lambda args, **options: calls.append((args, options)))
    return calls


@pytest.fixture
def broker_down(broker_unreachable):
    broker_unreachable(tasks.finalize_trial)


def test_it_sends_the_task_only_when_the_transaction_commits(with_broker, sent, django_capture_on_commit_callbacks):
    eta = timezone.now() + timedelta(seconds=30)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        enqueue_on_commit(tasks.finalize_trial, 7, eta=eta)
        assert sent == []
    assert sent == [((7,), {"eta": eta})]


def test_nothing_is_sent_when_the_transaction_rolls_back(with_broker, sent, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        enqueue_on_commit(tasks.finalize_trial, 7)
        raise RuntimeError("rolled back")
    assert callbacks == [] and sent == []


def test_an_unreachable_broker_is_logged_and_reported_not_raised(
    with_broker, broker_down, caplog, django_capture_on_commit_callbacks
):
    failures = []
    with (
        caplog.at_level(logging.WARNING, logger="oversight.core.enqueue"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        enqueue_on_commit(tasks.finalize_trial, 7, on_failure=lambda: failures.append("told"))
    assert failures == ["told"]
    record = next(r for r in caplog.records if r.name == "oversight.core.enqueue")
    assert record.task_args == [7] and record.exc_info[0] is OperationalError


def test_eager_the_task_runs_in_place_and_its_errors_propagate(
    tasks_inline, monkeypatch, django_capture_on_commit_callbacks
):
    failures = []

    def broken(*args, **kwargs):
        raise ValueError("a bug in the task")

    monkeypatch.setattr(tasks.finalize_trial, "apply_async", broken)
    with pytest.raises(ValueError), django_capture_on_commit_callbacks(execute=True):
        enqueue_on_commit(tasks.finalize_trial, 7, on_failure=lambda: failures.append("told"))
    assert failures == []


def test_showing_an_item_while_the_broker_is_down_still_shows_it(
    with_broker, broker_down, django_capture_on_commit_callbacks
):
    participant = participant_join(study=make_study(time_limit_s=30), params={"pid": "p1"}, consent=True)
    trial = participant.trials.order_by("position").first()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        trial_show(trial=trial)
    assert len(callbacks) >= 1
    trial.refresh_from_db()
    assert trial.status == Trial.Status.SHOWN and trial.deadline_at is not None  # the sweep finalises it later


def test_showing_an_item_enqueues_its_deadline_task_for_the_deadline(
    with_broker, sent, django_capture_on_commit_callbacks
):
    participant = participant_join(study=make_study(time_limit_s=30), params={"pid": "p1"}, consent=True)
    trial = participant.trials.order_by("position").first()
    with django_capture_on_commit_callbacks(execute=True):
        trial_show(trial=trial)
    trial.refresh_from_db()
    assert sent == [((trial.pk,), {"eta": trial.deadline_at})]
