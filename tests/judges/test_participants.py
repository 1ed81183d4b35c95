"""A model participant is the platform's own: it does not shift who gets which order and is not counted among the
study's people (nor, by the same filter, paid or offered to an exclusion rule)."""

import pytest
from django.urls import reverse
from django.utils import timezone

from oversight.console.monitor import monitor_rows, monitor_summary
from oversight.core.models import Participant
from oversight.core.services.participants import participant_join
from tests.factories import make_study

pytestmark = pytest.mark.django_db


def model_participant(study):
    now = timezone.now()
    return Participant.objects.create(
        study=study,
        kind=Participant.Kind.MODEL,
        model={"judge_run": 1, "mode": "replay"},
        status=Participant.Status.COMPLETED,
        consented_at=now,
        completed_at=now,
        condition_order=[study.conditions.first().pk],
    )


def test_a_model_judge_does_not_shift_the_counterbalancing_of_the_people_who_follow():
    study = make_study(slug="cb", order="counterbalanced")
    first = participant_join(study=study, params={}, consent=True)
    model_participant(study)
    second = participant_join(study=study, params={}, consent=True)
    assert second.condition_order == list(reversed(first.condition_order))


def test_the_study_page_counts_people_only(client, alice):
    study = make_study(slug="count", owner=alice)
    model_participant(study)
    client.force_login(alice)
    page = client.get(reverse("console:study", kwargs={"slug": study.slug}))
    assert dict(page.context["statuses"])["Completed"] == 0


def test_the_live_monitor_lists_and_counts_people_only():
    study = make_study(slug="watched")
    person = participant_join(study=study, params={"pid": "someone"}, consent=True)
    model_participant(study)
    assert [row["id"] for row in monitor_rows(study)] == [person.pk]
    assert monitor_summary(study)["by_status"]["Completed"] == 0
