"""The chat's hot path stays small: a send and a reply's end are each one database trip of a few statements
(their cost is the platform's time to first token under a burst, bench/README.md). A field the chat reads but
the send's trial query leaves out would show here as one more statement."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from oversight.assistant import lease, services
from oversight.core.models import Condition, ModelEndpoint
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.factories import make_study

pytestmark = pytest.mark.django_db

PASSAGE = "The survey ship Halcyon carried four crew.\n\nOn the ninth day the ration was cut."


@pytest.fixture
def trial():
    study = make_study(slug="hot", n_items=1, launch=False, passage=PASSAGE)
    endpoint = ModelEndpoint.objects.create(name="tgi", kind="tgi", base_url="http://127.0.0.1:9", token="t")
    Condition.objects.filter(study=study, kind="assisted").update(
        endpoint=endpoint, system_prompt="Be helpful.", sampling={"max_tokens": 50}, send_question=True
    )
    from oversight.core.services.studies import study_launch

    study_launch(study=study)
    participant = participant_join(study=study, params={"pid": "hot"}, consent=True)
    return trial_show(trial=participant.trials.get(condition__kind="assisted", role="scored"))


def statements(queries) -> list[str]:
    """The data statements (transaction control is the backend's business)."""
    return [
        q["sql"].split()[0].upper() for q in queries if q["sql"].split()[0].upper() in {"SELECT", "INSERT", "UPDATE"}
    ]


def test_a_send_reads_the_trial_and_its_messages_and_writes_three_rows(trial):
    with CaptureQueriesContext(connection) as queries:
        sent = services.chat_send(trial_id=trial.pk, text="Why was the ration cut?")
    assert statements(queries.captured_queries) == ["SELECT", "SELECT", "INSERT", "INSERT", "INSERT"]
    request = sent.job.request
    # Everything the model request needs came from that one read.
    assert request.base_url == "http://127.0.0.1:9" and request.token == "t" and request.sampling == {"max_tokens": 50}
    assert request.messages[0] == {"role": "system", "content": "Be helpful."}
    assert PASSAGE.strip() in request.messages[1]["content"] and "Question:" in request.messages[1]["content"]
    assert request.item.passage == PASSAGE and request.item.options


def test_a_replys_end_is_one_update_and_one_look_for_queued_messages(trial):
    sent = services.chat_send(trial_id=trial.pk, text="Why?")
    lease.local_replies.add(sent.job.message_id)
    try:
        with CaptureQueriesContext(connection) as queries:
            payload, queued = services.generation_end(job=sent.job, text="Because.", status="complete", ttft_ms=5.0)
    finally:
        lease.local_replies.discard(sent.job.message_id)
    assert statements(queries.captured_queries) == ["UPDATE", "SELECT"]
    assert payload["status"] == "complete" and "Because." in payload["html"] and queued.job is None
