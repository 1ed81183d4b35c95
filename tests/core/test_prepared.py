"""Queries compiled once (core.prepared): the same rows and instances as the querysets they stand for."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from oversight.core.models import Event, Participant, Trial
from oversight.core.prepared import PreparedQuery, insert_rows, update_where
from tests.factories import make_study
from tests.participant.helpers import enrol

pytestmark = pytest.mark.django_db

BY_TOKEN = PreparedQuery(
    lambda token: Participant.objects.select_related("study").defer("study__manifest").filter(token=token), str
)
TRIALS_OF = PreparedQuery(lambda pid: Trial.objects.filter(participant_id=pid).order_by("position"), int)


def field_values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.attname in obj.__dict__}


@pytest.fixture
def participant(client):
    p = enrol(client, make_study(n_items=3))
    Trial.objects.filter(participant=p, position=0).update(
        status=Trial.Status.SHOWN, shown_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), distribution=[0.5, 0.5]
    )
    return p


def test_a_prepared_query_gives_the_instances_its_queryset_gives(participant):
    expected = list(Trial.objects.filter(participant_id=participant.pk).order_by("position"))
    found = TRIALS_OF(participant.pk)
    assert [t.pk for t in found] == [t.pk for t in expected]
    assert [field_values(t) for t in found] == [field_values(t) for t in expected]
    # Converted as Django converts them: an aware datetime, a decoded JSON list.
    assert found[0].shown_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) and found[0].distribution == [0.5, 0.5]
    assert not found[0]._state.adding and found[0]._state.db == "default"


def test_select_related_and_defer_come_out_as_the_queryset_s(participant):
    slug = participant.study.slug
    with CaptureQueriesContext(connection) as captured:
        found = BY_TOKEN.first(participant.token)
        assert found.study.slug == slug  # populated by the join, not fetched
    assert len(captured.captured_queries) == 1
    assert "manifest" in found.study.get_deferred_fields()
    assert field_values(found) == field_values(Participant.objects.get(pk=participant.pk))


def test_only_the_parameters_change_between_calls(client, participant):
    other = enrol(client, participant.study, {"PROLIFIC_PID": "another", "STUDY_ID": "st1", "SESSION_ID": "s2"})
    assert BY_TOKEN.first(participant.token).pk == participant.pk
    assert BY_TOKEN.first(other.token).pk == other.pk
    assert BY_TOKEN.first("no-such-token") is None
    assert TRIALS_OF(-1) == []


def test_a_queryset_that_is_not_plain_or_loses_a_parameter_is_refused_when_it_is_compiled():
    with pytest.raises(ValueError, match="plain model querysets"):
        PreparedQuery(lambda pid: Trial.objects.filter(participant_id=pid).values("id"), int)(1)
    with pytest.raises(ValueError, match="appears 0 times"):
        PreparedQuery(lambda pid: Trial.objects.all(), int)(1)


def test_insert_rows_writes_what_bulk_create_writes_in_one_statement(participant):
    trial = Trial.objects.get(participant=participant, position=0)
    at = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    events = [
        Event(participant_id=participant.pk, trial=trial, kind=Event.Kind.SUBMITTED, at=at, data={"choice": 1}),
        Event(participant_id=participant.pk, kind=Event.Kind.ITEM_SHOWN, at=at, data={"deadline_at": None}),
    ]
    with CaptureQueriesContext(connection) as captured:
        insert_rows(events)
    assert len(captured.captured_queries) == 1
    assert all(e.pk is None for e in events)  # nothing read back
    stored = list(Event.objects.filter(at=at).order_by("id").values("participant_id", "trial_id", "kind", "data"))
    assert stored == [
        {"participant_id": participant.pk, "trial_id": trial.pk, "kind": "submitted", "data": {"choice": 1}},
        {"participant_id": participant.pk, "trial_id": None, "kind": "item_shown", "data": {"deadline_at": None}},
    ]
    insert_rows([])  # nothing to write: no statement


def test_update_where_changes_only_rows_that_still_match_and_says_how_many(participant):
    trial = Trial.objects.get(participant=participant, position=0)
    values = {"status": Trial.Status.ANSWERED, "choice": 2, "distribution": None, "correct": False}
    assert update_where(Trial, where={"id": trial.pk, "status": Trial.Status.PENDING}, values=values) == 0
    assert update_where(Trial, where={"id": trial.pk, "status": Trial.Status.SHOWN}, values=values) == 1
    trial.refresh_from_db()
    assert (trial.status, trial.choice, trial.distribution, trial.correct) == ("answered", 2, None, False)
    assert update_where(Trial, where={"id": trial.pk, "status": Trial.Status.SHOWN}, values=values) == 0


def test_a_prepared_query_takes_parameters_of_positive_and_small_integer_fields(participant):
    # Django refuses an out-of-range stand-in before any SQL exists: the stand-ins must fit every integer field.
    at = PreparedQuery(lambda pid, position: Trial.objects.filter(participant_id=pid, position=position), int, int)
    assert at.first(participant.pk, 1).position == 1
    assert at.first(participant.pk, 99) is None
    chosen = PreparedQuery(lambda choice: Trial.objects.filter(selected_choice=choice), int)
    assert chosen(3) == []
