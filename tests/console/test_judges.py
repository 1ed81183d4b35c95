"""The console's model-judges page (issue 17): start a judge run, follow it, cancel it; alice owns the study, bob is
a viewer, charlie an outsider."""

import html

import pytest
from django.urls import reverse

from oversight.core.models import Collaborator, ModelEndpoint
from oversight.judges.models import JudgeRun
from tests.factories import make_study

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def study(alice, bob):
    study = make_study(owner=alice, n_items=2)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    return study


@pytest.fixture
def judge():
    return ModelEndpoint.objects.create(name="sim judge", kind="simulated", simulation={"seed": 2})


def page(study):
    return reverse("console:judges", kwargs={"slug": study.slug})


def start(client, study, judge, **fields):
    condition = study.conditions.get(kind="assisted")
    data = {"condition": condition.pk, "endpoint": judge.pk, "mode": "replay", "answer": "auto", **fields}
    return client.post(page(study), data)


def test_anonymous_visitors_are_sent_to_log_in(client, study):
    response = client.get(page(study))
    assert response.status_code == 302 and "/console/login/" in response["Location"]


def test_an_outsider_never_learns_the_study_exists(client, study, charlie, judge):
    client.force_login(charlie)
    assert client.get(page(study)).status_code == 404
    assert start(client, study, judge).status_code == 404
    assert not JudgeRun.objects.exists()


def test_a_viewer_sees_the_runs_but_may_not_start_or_cancel_one(client, study, alice, bob, judge):
    client.force_login(alice)
    start(client, study, judge)
    run = JudgeRun.objects.get()
    client.force_login(bob)
    response = client.get(page(study))
    assert response.status_code == 200 and f'data-run="{run.pk}"' in response.content.decode()
    assert 'id="judge-new"' not in response.content.decode()
    assert start(client, study, judge).status_code == 403
    cancel = reverse("console:judge_cancel", kwargs={"slug": study.slug, "run_id": run.pk})
    assert client.post(cancel).status_code == 403
    assert JudgeRun.objects.count() == 1 and not JudgeRun.objects.get().cancel_requested


def test_the_owner_starts_a_live_run_and_cancels_it_before_it_starts(client, study, alice, judge):
    client.force_login(alice)
    response = start(client, study, judge, mode="live", questions=2)
    assert response.status_code == 302
    run = JudgeRun.objects.get()
    assert (run.mode, run.params, run.created_by, run.status) == ("live", {"questions": 2}, alice, "queued")
    cancel = reverse("console:judge_cancel", kwargs={"slug": study.slug, "run_id": run.pk})
    assert client.get(cancel).status_code == 405
    client.post(cancel)
    run.refresh_from_db()
    assert run.status == "cancelled" and run.cancel_requested


def test_a_run_that_cannot_be_made_says_why(client, study, alice, judge):
    study.status = "draft"
    study.launched_at = None
    study.save(update_fields=["status", "launched_at"])
    client.force_login(alice)
    response = start(client, study, judge)
    assert response.status_code == 400
    assert "Launch the study first" in html.unescape(response.content.decode())
    assert not JudgeRun.objects.exists()


def test_the_study_page_links_to_its_model_judges(client, study, alice):
    client.force_login(alice)
    response = client.get(reverse("console:study", kwargs={"slug": study.slug}))
    assert page(study) in response.content.decode()
