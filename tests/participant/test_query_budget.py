"""What one answer costs the database: the item page in at most 3 queries (none of them a write), the answer
(which also shows the next item) in at most 3 writes, its events in one INSERT within the same transaction.

The study's conditions, items and passages come from the per-process cache of the launched study
(core.launched): each test warms it with a first request, as the first participant of a process does.
"""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.participant.helpers import HX, enrol, item_url, make_unaided_study

pytestmark = pytest.mark.django_db

ANSWER = {"choice": "1", "confidence": "60"}
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.I)
# Transaction control: the test's own transaction makes each atomic block a savepoint; in production it is a
# BEGIN/COMMIT pair, which Django does not record as a query.
CONTROL = re.compile(r"^\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT|BEGIN)\b", re.I)


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not CONTROL.match(q["sql"])]


def writes(captured) -> list[str]:
    return [sql for sql in statements(captured) if WRITE.match(sql)]


@pytest.fixture
def participant(client):
    study = make_unaided_study(n_items=3, time_limit_s=60)
    p = enrol(client, study)
    client.get(item_url(p, 0))  # the launched study is now in this process's cache
    return p


def test_the_item_page_takes_at_most_3_queries_and_writes_nothing(client, participant, django_assert_max_num_queries):
    with django_assert_max_num_queries(3), CaptureQueriesContext(connection) as captured:
        response = client.get(item_url(participant, 0))
    assert response.status_code == 200
    assert writes(captured) == []
    # The participant is read once (with the study's status), the trials once.
    assert sum("core_participant" in sql.split("WHERE")[0] for sql in statements(captured)) == 1


def test_an_answer_that_shows_the_next_item_takes_at_most_3_writes(client, participant, django_assert_max_num_queries):
    with django_assert_max_num_queries(7), CaptureQueriesContext(connection) as captured:
        response = client.post(item_url(participant, 0, "submit"), ANSWER, headers=HX)
    assert response.status_code == 200 and response["HX-Push-Url"] == item_url(participant, 1)
    done = writes(captured)
    assert len(done) <= 3, done
    assert len(statements(captured)) - len(done) <= 2  # the participant and the trials, read once each
    # The answer's event and the next item's go in one INSERT, in the same transaction as the answer.
    assert sum(sql.lstrip().upper().startswith('INSERT INTO "CORE_EVENT"') for sql in done) == 1
    # trial.save() never writes every column: only what changed, in conditional UPDATEs.
    updates = [sql for sql in done if sql.lstrip().upper().startswith('UPDATE "CORE_TRIAL"')]
    assert len(updates) == 2
    for sql in updates:
        assert '"item_id"' not in sql.split("WHERE")[0] and '"participant_id"' not in sql.split("WHERE")[0]
        assert '"status" = ' in sql.split("WHERE")[1]  # decided by whichever commits first


def test_without_javascript_the_answer_and_the_page_after_it_keep_the_same_budget(
    client, participant, django_assert_max_num_queries
):
    with django_assert_max_num_queries(7), CaptureQueriesContext(connection) as posted:
        response = client.post(item_url(participant, 0, "submit"), ANSWER)
    assert response.status_code == 303
    assert len(writes(posted)) <= 3
    with django_assert_max_num_queries(3), CaptureQueriesContext(connection) as shown:
        assert client.get(response["Location"]).status_code == 200
    assert writes(shown) == []  # the next item was shown by the answer's transaction


def test_a_selection_takes_at_most_2_writes(client, participant, django_assert_max_num_queries):
    with django_assert_max_num_queries(6), CaptureQueriesContext(connection) as captured:
        response = client.post(item_url(participant, 0, "select"), ANSWER)
    assert response.status_code == 200 and response.json()["selected_choice"] == 1
    assert len(writes(captured)) == 2  # the trial's selection, and its two events in one INSERT
