"""The study log's change records: values shown as a researcher reads them, secrets never."""

import pytest

from oversight.core.models import Condition, ModelEndpoint, Study, StudyLogEntry
from oversight.core.services.endpoints import endpoint_update
from oversight.core.services.study_log import changed_names, field_changes, field_values, study_log_add
from tests.factories import make_study

pytestmark = pytest.mark.django_db


def test_it_shows_choices_relations_json_and_booleans_as_read(alice):
    study = make_study(owner=alice, launch=False)
    condition = study.conditions.get(kind=Condition.Kind.ASSISTED)
    before = field_values(condition, ["kind", "endpoint", "sampling", "send_question", "system_prompt"])
    other = ModelEndpoint.objects.create(name="gpu", kind=ModelEndpoint.Kind.TGI, base_url="http://gpu.lab")
    condition.kind, condition.endpoint = Condition.Kind.UNAIDED, other
    condition.sampling, condition.send_question = {"temperature": 0.2, "max_tokens": 5}, True
    condition.system_prompt = "x" * 400
    changes = {c["field"]: (c["before"], c["after"]) for c in field_changes(condition, before)}
    assert changes["kind"] == ("Assisted", "Unaided")
    assert changes["endpoint"] == ("unit sim (simulated)", "gpu")
    assert changes["sampling"] == ("{}", '{"max_tokens": 5, "temperature": 0.2}')
    assert changes["send_question"] == ("no", "yes")
    assert changes["system_prompt"][0] == "—" and len(changes["system_prompt"][1]) == 300
    assert changes["system_prompt"][1].endswith("…")


@pytest.mark.parametrize(
    "old,new,shown",
    [("", "t1", ("none", "set")), ("t1", "t2", ("set", "replaced")), ("t1", "", ("set", "removed"))],
)
def test_a_token_is_recorded_as_set_replaced_or_removed_never_its_value(old, new, shown):
    endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url="http://gpu.lab", token=old)
    before = field_values(endpoint, ["token"])
    endpoint.token = new
    (change,) = field_changes(endpoint, before)
    assert (change["before"], change["after"]) == shown


def test_an_endpoint_change_reaches_the_log_of_each_draft_and_live_study_using_it(alice):
    live = make_study(slug="live", owner=alice)
    endpoint = live.conditions.get(kind="assisted").endpoint
    draft = make_study(slug="draft", owner=alice, launch=False, endpoint=False)
    draft.conditions.filter(kind="assisted").update(endpoint=endpoint)
    closed = make_study(slug="closed", owner=alice, endpoint=False, launch=False)
    closed.conditions.filter(kind="assisted").update(endpoint=endpoint)
    Study.objects.filter(pk=closed.pk).update(status=Study.Status.CLOSED)
    endpoint_update(endpoint=endpoint, values={"request_timeout_s": 15, "max_concurrency": 32}, by=alice)
    for study, n in ((live, 1), (draft, 1), (closed, 0)):
        entries = study.log_entries.filter(action=StudyLogEntry.Action.ENDPOINT)
        assert entries.count() == n, study.slug
    entry = live.log_entries.get(action=StudyLogEntry.Action.ENDPOINT)
    assert entry.summary == "Model endpoint “live sim” changed: Request timeout s"  # max_concurrency is unchanged
    endpoint.refresh_from_db()
    assert endpoint.request_timeout_s == 15


def test_an_entry_keeps_who_made_it_after_the_account_is_gone(alice):
    study = make_study(owner=None, launch=False)
    study_log_add(study=study, action=StudyLogEntry.Action.DESIGN, by=alice, summary="Edited")
    alice.delete()
    entry = study.log_entries.get()
    assert (entry.actor, entry.actor_name) == (None, "alice")
    assert str(entry).endswith("alice: Edited")


def test_changed_names_drop_the_hints_in_parentheses():
    changes = [{"label": "Time limit per item (seconds)"}, {"label": "Completion URL (Prolific: https://…)"}]
    assert changed_names(changes) == "Time limit per item, Completion URL"
