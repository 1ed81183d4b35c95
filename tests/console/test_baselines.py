"""The console's model-alone baselines page (issue 13.10): start a run, follow it as a job, cancel it, see it in the
report; alice owns the study, bob is a viewer, charlie an outsider."""

import html
import re

import pytest
from django.urls import reverse

from oversight.baselines.models import BaselineRun
from oversight.core.models import Collaborator, ModelEndpoint
from oversight.reports import services as report_services
from tests.console.test_report import answer, enrol
from tests.factories import make_study

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache", "tasks_inline")]


@pytest.fixture
def study(alice, bob):
    study = make_study(owner=alice, n_items=2)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    return study


@pytest.fixture
def simulated(study):
    return study.conditions.get(kind="assisted").endpoint


def page(study):
    return reverse("console:baselines", kwargs={"slug": study.slug})


def cancel_url(study, run):
    return reverse("console:baseline_cancel", kwargs={"slug": study.slug, "run_id": run.pk})


def text(response) -> str:
    return html.unescape(response.content.decode())


def start(client, study, endpoint, **fields):
    data = {"method": "zero-shot", "endpoint": endpoint.pk, "items": "study", **fields}
    return client.post(page(study), data)


def test_anonymous_visitors_are_sent_to_log_in(client, study):
    response = client.get(page(study))
    assert response.status_code == 302 and "/console/login/" in response["Location"]


def test_an_outsider_never_learns_the_study_exists(client, study, charlie, simulated):
    client.force_login(charlie)
    assert client.get(page(study)).status_code == 404
    assert start(client, study, simulated).status_code == 404
    assert not BaselineRun.objects.exists()


def test_a_viewer_sees_the_runs_but_may_not_start_or_cancel_one(
    client, study, bob, alice, simulated, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):  # queued, never executed
        start(client, study, simulated)
    run = BaselineRun.objects.get()
    client.force_login(bob)
    body = text(client.get(page(study)))
    assert f'data-run="{run.pk}"' in body and 'name="method"' not in body
    assert start(client, study, simulated).status_code == 403
    assert client.post(cancel_url(study, run)).status_code == 403
    assert BaselineRun.objects.count() == 1 and BaselineRun.objects.get().status == "queued"


def test_the_owner_starts_a_run_on_the_studys_items_and_it_reaches_the_report(
    client, study, alice, simulated, django_capture_on_commit_callbacks
):
    answer(enrol(study, "p1"), assisted=True, unaided=False)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = start(client, study, simulated)
    run = BaselineRun.objects.get()
    assert response.status_code == 302 and response["Location"] == page(study)
    assert run.study == study and run.status == "done" and run.total == 4 and run.created_by == alice
    body = text(client.get(page(study)))
    row = re.search(rf'<tr data-run="{run.pk}">(.*?)</tr>', body, re.S).group(1)
    assert "Model (zero-shot)" in row and "the study's items" in row and "Done" in row
    assert f"{run.summary['accuracy']:.1f}%" in row
    assert reverse("console:job", kwargs={"pk": run.job_id}) in row  # its progress, as every long job
    report = report_services.report_bundle(study=study, resamples=0)["report"]["with_exclusions"]
    assert [r["id"] for r in report["baselines"][0]["runs"]] == [run.pk]
    assert "Model (zero-shot) on the study's items" in [r["label"] for r in report["table"]["rows"]]


def test_a_run_over_a_split_is_filed_under_the_study_and_its_viewers_can_follow_it(
    client, study, alice, bob, simulated, django_capture_on_commit_callbacks
):
    bank = study.tasks.get().bank
    client.force_login(alice)
    body = text(client.get(page(study)))
    assert f'value="bank:{bank.pk}:val"' in body  # the study's bank, split by split
    with django_capture_on_commit_callbacks(execute=True):
        start(client, study, simulated, items=f"bank:{bank.pk}:val")
    run = BaselineRun.objects.get()
    assert run.study is None and run.bank == bank and run.split == "val" and run.job.study == study
    assert run.total == bank.items.filter(split="val").count()
    client.force_login(bob)
    assert client.get(reverse("console:job", kwargs={"pk": run.job_id})).status_code == 200


def test_the_papers_best_of_n_is_offered_and_a_run_the_runner_refuses_says_why(
    client, study, alice, simulated, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        refused = start(client, study, simulated, method="cot", selector="best-of-n", samples=3)
    assert refused.status_code == 400 and "best of N needs a scorer" in refused.content.decode()
    assert not BaselineRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        start(
            client,
            study,
            simulated,
            method="cot",
            selector="best-of-n",
            scorer="reward",
            scorer_endpoint=simulated.pk,
            samples=3,
        )
    run = BaselineRun.objects.get()
    assert run.params["samples"] == 3 and run.params["scorer_endpoint"] == simulated.name and run.status == "done"
    assert "Model (best-of-3 CoT, reward model)" in text(client.get(page(study)))


def test_the_owner_cancels_a_queued_run(client, study, alice, simulated, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):
        start(client, study, simulated)
    run = BaselineRun.objects.get()
    assert f'data-run="{run.pk}"' in text(client.get(page(study)))
    response = client.post(cancel_url(study, run))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled" and run.job.status == "cancelled"


def test_a_run_another_study_started_cannot_be_cancelled_from_here(client, study, alice, simulated):
    from oversight.baselines.runner import create_run

    other = make_study(slug="other", n_items=2, owner=alice)
    run = create_run(endpoint=simulated, method="zero-shot", study=other)
    client.force_login(alice)
    assert client.post(cancel_url(study, run)).status_code == 404
    assert BaselineRun.objects.get().status == "queued"


def test_the_list_polls_while_a_run_is_unfinished_and_works_without_js(
    client, study, alice, simulated, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):
        start(client, study, simulated)
    body = text(client.get(page(study)))
    assert 'hx-trigger="every 2s"' in body and '<progress value="0" max="4">' in body
    partial = client.get(page(study), headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section class="card" id="baseline-runs"') and 'name="method"' not in partial


def test_the_study_and_report_pages_link_here(client, study, alice):
    client.force_login(alice)
    assert page(study) in client.get(reverse("console:study", kwargs={"slug": study.slug})).content.decode()
    report = client.get(reverse("console:report", kwargs={"slug": study.slug}), {"resamples": 0})
    assert page(study) in report.content.decode()


def test_only_endpoints_and_the_studys_banks_are_offered(client, study, alice):
    ModelEndpoint.objects.create(name="Lab TGI", kind="tgi", base_url="http://127.0.0.1:9/")
    client.force_login(alice)
    body = text(client.get(page(study)))
    assert "Lab TGI" in body and "The study's items" in body
    other = make_study(slug="other", n_items=2)
    assert f"bank:{other.tasks.get().bank_id}:" not in body
