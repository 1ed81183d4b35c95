"""Answers the clock got to first, and the slider confidence that must be moved."""

from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.core.models import Event, Trial
from oversight.core.services.trials import finalize_expired_trials
from tests.participant.helpers import enrol, item_url, make_unaided_study

pytestmark = pytest.mark.django_db


def expire(p, position=0):
    Trial.objects.filter(participant=p, position=position).update(deadline_at=timezone.now() - timedelta(seconds=1))


def test_a_post_arriving_after_the_sweep_is_recorded_as_late_without_changing_the_answer(client):
    p = enrol(client, make_unaided_study(time_limit_s=30))
    client.post(item_url(p, 0, "select"), {"choice": "2", "confidence": "42"})
    expire(p)
    assert finalize_expired_trials() == 1  # the sweeper got there first
    response = client.post(item_url(p, 0, "submit"), {"choice": "3", "confidence": "100"})
    assert response.status_code == 303
    trial = p.trials.get(position=0)
    assert (trial.status, trial.choice, trial.confidence, trial.submit_kind) == ("timed_out", 2, 42, "server")
    late = Event.objects.get(trial=trial, kind=Event.Kind.LATE_POST)
    assert late.data["choice"] == 3 and late.data["confidence"] == 100
    assert late.data["finalised_by"] == "server" and late.data["after_deadline_s"] >= 1
    assert late.data["posted"] == {"choice": "3", "confidence": "100"}


def test_a_late_post_that_is_not_even_a_valid_answer_is_kept_as_it_was_sent(client):
    p = enrol(client, make_unaided_study(time_limit_s=30))
    expire(p)
    finalize_expired_trials()
    client.post(item_url(p, 0, "submit"), {"choice": "9", "confidence": "x" * 500, "auto": "1"})
    late = Event.objects.get(trial__participant=p, kind=Event.Kind.LATE_POST)
    assert late.data["choice"] is None
    assert late.data["posted"] == {"choice": "9", "confidence": "x" * 100, "auto": "1"}
    assert p.trials.get(position=0).choice is None


def test_a_post_that_beats_the_sweep_after_the_deadline_finalises_and_is_kept_once(client):
    p = enrol(client, make_unaided_study(time_limit_s=30))
    client.post(item_url(p, 0, "select"), {"choice": "1"})
    expire(p)
    client.post(item_url(p, 0, "submit"), {"choice": "3", "confidence": "100"})
    client.post(item_url(p, 0, "submit"), {"choice": "0", "confidence": "25"})  # and a second, later still
    trial = p.trials.get(position=0)
    assert (trial.status, trial.choice, trial.submit_kind) == ("timed_out", 1, "server")
    assert [e.data["choice"] for e in Event.objects.filter(trial=trial, kind=Event.Kind.LATE_POST)] == [3, 0]
    assert Event.objects.filter(trial=trial, kind=Event.Kind.TIMED_OUT).count() == 1


# --- The slider ------------------------------------------------------------------------------------------------


def test_the_slider_starts_untouched_and_an_untouched_slider_is_refused_with_a_message(client):
    p = enrol(client, make_unaided_study(confidence_format="slider"))
    page = client.get(item_url(p, 0)).content.decode()
    assert 'type="range" id="conf-slider"' in page and 'name="confidence" id="conf-value" value=""' in page
    assert "move the slider" in page and "untouched" in page
    response = client.post(item_url(p, 0, "submit"), {"choice": "1"})
    assert response.status_code == 400
    assert "Please move the slider to say how confident you are." in response.content.decode()
    refused = Event.objects.get(trial__participant=p, kind=Event.Kind.ANSWER_REFUSED)
    assert refused.data == {"reason": "Please move the slider to say how confident you are.", "posted": {"choice": "1"}}
    assert p.trials.get(position=0).status == Trial.Status.SHOWN


def test_a_moved_slider_is_remembered_across_a_refresh_and_accepted(client):
    p = enrol(client, make_unaided_study(confidence_format="slider"))
    client.post(item_url(p, 0, "select"), {"confidence": "50"})  # moved, to its middle on purpose
    page = client.get(item_url(p, 0)).content.decode()
    assert 'name="confidence" id="conf-value" value="50"' in page and "untouched" not in page
    assert client.post(item_url(p, 0, "submit"), {"choice": "1", "confidence": "50"}).status_code == 303
    assert p.trials.get(position=0).confidence == 50
