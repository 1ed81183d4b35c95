"""The study's log: every write path records who changed what and when; the study page and the log page show it."""

import html
import re

import pytest
from django.urls import reverse

from oversight.core.models import Collaborator, Exclusion, Study, StudyLogEntry
from oversight.core.services.participants import participant_join
from tests.console.test_design import _alice_is_staff, condition_data, study, study_data, task_data  # noqa: F401
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(study):  # noqa: F811 - test_design's fixture
    """alice's draft, bob its viewer (alice is staff)."""
    return study


@pytest.fixture
def live(alice, bob):
    live = make_study(slug="live", owner=alice)
    Collaborator.objects.create(study=live, user=bob, role=Collaborator.Role.VIEWER)
    return live


def url(name, of, **kwargs):
    return reverse(f"console:{name}", kwargs={"slug": of.slug, **kwargs})


def log(of) -> list[tuple[str, str, str]]:
    """(actor, action, summary), oldest first."""
    return [(e.actor_name, e.action, e.summary) for e in of.log_entries.order_by("at", "id")]


def text(response) -> str:
    """The page's text, without tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", response.content.decode()))


def last(of) -> StudyLogEntry:
    return of.log_entries.order_by("-at", "-id").first()


# --- Each write path is recorded ------------------------------------------------------------------------------


def test_creating_a_study_is_recorded(client, alice):
    client.force_login(alice)
    client.post(reverse("console:study_create"), {**study_data(Study(title="New", slug="new-study"))})
    assert log(Study.objects.get(slug="new-study")) == [("alice", "created", "Created")]


def test_a_design_edit_records_each_changed_setting_before_and_after(client, draft, alice):
    client.force_login(alice)
    client.post(url("design", draft), {f"study-{k}": v for k, v in study_data(draft, title="Renamed").items()})
    entry = last(draft)
    assert (entry.actor_name, entry.action, entry.summary) == ("alice", "design", "Study settings edited: Title")
    assert entry.changes == [{"field": "title", "label": "Title", "before": "Study unit", "after": "Renamed"}]
    # Saving the same values again changes nothing and records nothing.
    n = draft.log_entries.count()
    client.post(url("design", draft), {f"study-{k}": v for k, v in study_data(draft, title="Renamed").items()})
    assert draft.log_entries.count() == n


def test_tasks_and_conditions_added_edited_and_removed_are_recorded(client, draft, alice):
    client.force_login(alice)
    task = draft.tasks.get()
    client.post(url("task_edit", draft, pk=task.pk), task_data(draft, sample_size=2, time_limit_s=60))
    client.post(url("condition_create", draft), condition_data())
    added = draft.conditions.get(name="Unaided 2")
    client.post(url("condition_delete", draft, pk=added.pk))
    assert log(draft)[-3:] == [
        ("alice", "design", "Task “Main” edited: Sample size, Time limit per item"),
        ("alice", "design", "Condition “Unaided 2” added"),
        ("alice", "design", "Condition “Unaided 2” removed"),
    ]
    edited = draft.log_entries.get(summary__startswith="Task")
    assert edited.changes == [
        {"field": "sample_size", "label": "Sample size", "before": "3", "after": "2"},
        {"field": "time_limit_s", "label": "Time limit per item (seconds)", "before": "—", "after": "60"},
    ]


def test_launching_and_closing_are_recorded_with_the_manifest_hash(client, draft, alice):
    client.force_login(alice)
    client.post(url("launch", draft), {"confirm": "yes"})
    client.post(url("close", draft), {"confirm": "yes"})
    draft.refresh_from_db()
    assert log(draft)[-2:] == [
        ("alice", "launched", f"Launched: 6 items drawn, manifest frozen (sha256 {draft.manifest_hash[:12]}…)"),
        ("alice", "closed", "Closed: no more answers accepted"),
    ]


def test_recruitment_and_collaborators_are_recorded(client, live, alice, charlie):
    client.force_login(alice)
    client.post(
        url("recruitment", live),
        {"prolific_completion_url": "https://app.prolific.com/submissions/complete?cc=X1", "completion_code": "X1"},
    )
    client.post(url("collaborators", live), {"username": "charlie", "role": "editor", "blind": "on"})
    client.post(url("collaborator_remove", live, pk=live.collaborators.get(user=charlie).pk))
    assert log(live)[-3:] == [
        ("alice", "recruitment", "Recruitment settings edited: Completion URL, Completion code, Screen-out code"),
        ("alice", "collaborators", "charlie added as editor (blind)"),
        ("alice", "collaborators", "charlie removed"),
    ]


def test_a_clone_starts_its_own_log(client, live, alice):
    client.force_login(alice)
    client.post(url("clone", live), {"slug": "live-copy"})
    assert log(Study.objects.get(slug="live-copy")) == [("alice", "created", "Cloned from “Study live” (live)")]


def test_exclusions_by_hand_by_rule_and_revoked_are_recorded(client, live, alice):
    first = participant_join(study=live, params={"pid": "a"}, consent=True)
    participant_join(study=live, params={"pid": "b"}, consent=True)
    client.force_login(alice)
    client.post(url("exclude", live, participant_id=first.pk), {"reason": "Used a search engine", "rule": "manual"})
    client.post(url("apply_rule", live), {"rule": "incomplete"})
    client.post(url("revoke_exclusion", live, exclusion_id=Exclusion.objects.get(participant=first).pk))
    others = sorted(set(live.participants.values_list("pk", flat=True)) - {first.pk})
    assert log(live)[-3:] == [
        ("alice", "exclusion", f"P{first.pk} excluded from analysis (excluded by hand)"),
        ("alice", "exclusion", f"P{others[0]} excluded from analysis (did not finish the study)"),
        ("alice", "exclusion", f"P{first.pk} included in analysis again (exclusion revoked)"),
    ]
    manual = live.log_entries.get(summary__startswith=f"P{first.pk} excluded")
    assert manual.changes == [{"field": "reason", "label": "Reason", "before": "", "after": "Used a search engine"}]


@pytest.mark.parametrize("who,status", [("bob", 403), ("charlie", 404)])
def test_refused_changes_record_nothing(client, live, who, status, request):
    user = request.getfixturevalue(who)
    user.is_staff = True
    user.save()
    client.force_login(user)
    participant = participant_join(study=live, params={"pid": "a"}, consent=True)
    before = live.log_entries.count()
    assert client.post(url("close", live), {"confirm": "yes"}).status_code == status
    assert client.post(url("exclude", live, participant_id=participant.pk), {"reason": "x"}).status_code == status
    assert client.post(url("recruitment", live), {"completion_code": "Z"}).status_code == status
    assert live.log_entries.count() == before


# --- Where the log is shown -------------------------------------------------------------------------------------


def test_the_study_page_shows_the_latest_entries_and_links_to_the_full_log(client, draft, alice):
    client.force_login(alice)
    for title in [f"Title {i}" for i in range(10)]:
        client.post(url("design", draft), {f"study-{k}": v for k, v in study_data(draft, title=title).items()})
        draft.title = title
    body = text(client.get(url("study", draft)))
    assert "Study settings edited: Title" in body and "Title 8 → Title 9" in body
    assert "Title 0 → Title 1" not in body  # older than the latest 8
    assert f'href="{url("log", draft)}"' in client.get(url("study", draft)).content.decode()
    full = text(client.get(url("log", draft)))
    assert "Study unit → Title 0" in full and "Title 8 → Title 9" in full


def test_a_viewer_sees_the_log_but_a_blind_one_not_why_someone_was_excluded(client, live, alice, bob):
    participant = participant_join(study=live, params={"pid": "a"}, consent=True)
    client.force_login(alice)
    client.post(url("exclude", live, participant_id=participant.pk), {"reason": "Accuracy 100%, suspicious"})
    client.force_login(bob)
    assert "Accuracy 100%, suspicious" in client.get(url("log", live)).content.decode()
    Collaborator.objects.filter(user=bob).update(blind=True)
    for page in ("log", "study"):
        body = client.get(url(page, live)).content.decode()
        assert f"P{participant.pk} excluded from analysis" in body and "suspicious" not in body


def test_the_log_page_sends_anonymous_visitors_to_log_in(client, live):
    response = client.get(url("log", live))
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")
