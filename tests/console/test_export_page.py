"""The export page: who may export and download what, tampered forms, the job and its zip, expiry, and the Prolific
bonus files checked by hand."""

import zipfile
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from oversight.core.models import Collaborator, Job
from oversight.core.services.exclusions import exclusion_add
from oversight.core.services.participants import participant_complete, participant_join
from oversight.core.services.studies import study_close
from oversight.core.services.trials import Answer, trial_show, trial_submit
from oversight.exports.services import export_dir, exports_cleanup
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _exports_in_tmp(settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path / "exports")


@pytest.fixture(autouse=True)
def _jobs_run_in_process(tasks_inline):
    """The export task runs inline, as on the embedded default, also on CI's Redis pass."""


@pytest.fixture
def study(alice, bob):
    """Two scored items per condition and one attention check; bob is a viewer."""
    study = make_study(owner=alice, slug="exp", n_items=2, catch=1, allow_external_id_export=True)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    return study


def take_part(study, params, *, right, catch_right=True):
    """Answer every trial: scored ones right when `right(condition_kind)`; attention checks as `catch_right`."""
    participant = participant_join(study=study, params=params, consent=True)
    for trial in participant.trials.select_related("item", "condition").order_by("position"):
        trial_show(trial=trial)
        ok = right(trial.condition.kind) if trial.role == "scored" else catch_right
        gold = trial.item.gold_index
        trial_submit(trial=trial, answer=Answer(choice=gold if ok else (gold + 1) % 4, confidence=80))
    return participant_complete(participant=participant)


@pytest.fixture
def paid(study, alice):
    """Who is owed what at 0.1125 per correct scored answer (4 scored items each):

    - PIDA completed, 4 right: 4 × 0.1125 = 0.45;
    - PIDB completed, right only when assisted: 2 × 0.1125 = 0.225 → 0.23 (half up); excluded (paid by default);
    - PIDC failed the attention check: screened out, nothing;
    - panel-7 completed, 4 right, but joined without a Prolific id: owed 0.45, not in the Prolific file.
    """
    people = {
        "a": take_part(study, {"PROLIFIC_PID": "PIDA"}, right=lambda kind: True),
        "b": take_part(study, {"PROLIFIC_PID": "PIDB"}, right=lambda kind: kind == "assisted"),
        "c": take_part(study, {"PROLIFIC_PID": "PIDC"}, right=lambda kind: True, catch_right=False),
        "panel": take_part(study, {"pid": "panel-7"}, right=lambda kind: True),
    }
    exclusion_add(participant=people["b"], reason="talked to a friend", rule="manual", by=alice)
    return people


def url(name, study, **kw):
    return reverse(f"console:{name}", kwargs={"slug": study.slug, **kw})


def export_job(study, user, **params):
    return Job.objects.create(
        kind=Job.Kind.EXPORT,
        study=study,
        created_by=user,
        params={"formats": ["csv"], "include_external_ids": False, "include_pilots": False, **params},
    )


def post_export(client, study, data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(url("export", study), data)


def run_export(client, study, django_capture_on_commit_callbacks, **data) -> Job:
    response = post_export(client, study, {"formats": "csv", **data}, django_capture_on_commit_callbacks)
    job = Job.objects.filter(kind=Job.Kind.EXPORT).latest("pk")
    assert response.status_code == 302 and response["Location"] == reverse("console:job", kwargs={"pk": job.pk})
    job.refresh_from_db()
    assert job.status == Job.Status.DONE, job.message
    return job


BONUS = {"per_correct": "0.1125"}
VIEWS = [
    ("export", {}, {}),
    ("export_download", {"pk": 1}, {}),
    ("export_bonus", {}, BONUS),
    ("export_statuses", {}, BONUS),
]


# --- Access ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kw,query", VIEWS)
def test_it_sends_anonymous_visitors_to_log_in(client, study, name, kw, query):
    response = client.get(url(name, study, **kw), query)
    assert response.status_code == 302 and "/console/login/" in response["Location"]


@pytest.mark.parametrize("name,kw,query", VIEWS)
def test_it_hides_the_study_from_a_non_collaborator(client, study, charlie, name, kw, query):
    export_job(study, None)
    client.force_login(charlie)
    assert client.get(url(name, study, **kw), query).status_code == 404
    assert client.post(url("export", study), {"formats": "csv"}).status_code == 404
    assert not Job.objects.filter(created_by=charlie).exists()


@pytest.mark.parametrize(
    "name,kw,method",
    [
        ("export", {}, "put"),
        ("export_download", {"pk": 1}, "post"),
        ("export_bonus", {}, "post"),
        ("export_statuses", {}, "post"),
    ],
)
def test_it_answers_only_its_methods(client, study, alice, name, kw, method):
    client.force_login(alice)
    assert getattr(client, method)(url(name, study, **kw)).status_code == 405


def test_the_study_page_and_the_report_link_to_the_export_page(client, study, alice):
    client.force_login(alice)
    assert url("export", study) in client.get(url("study", study)).content.decode()
    assert url("export", study) in client.get(url("report", study), {"resamples": 0}).content.decode()


# --- Asking for an export -------------------------------------------------------------------------------------


def test_a_good_post_creates_a_job_whose_zip_downloads(client, study, alice, paid, django_capture_on_commit_callbacks):
    client.force_login(alice)
    job = run_export(client, study, django_capture_on_commit_callbacks, formats="all")
    assert job.created_by == alice and job.params["formats"] == ["csv", "jsonl", "parquet"]

    progress = client.get(reverse("console:job", kwargs={"pk": job.pk})).content.decode()
    download = url("export_download", study, pk=job.pk)
    assert download in progress and url("export", study) in progress

    page = client.get(url("export", study)).content.decode()
    assert f'data-job="{job.pk}"' in page and download in page and "Done" in page

    response = client.get(download)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{job.result["filename"]}"'
    body = b"".join(response.streaming_content)
    assert len(body) == job.result["size"]
    path = export_dir() / "zip-from-download.zip"
    path.write_bytes(body)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        participants = next(n for n in names if n.endswith("/csv/participants.csv"))
        text = zf.read(participants).decode()
    assert any(n.endswith("/parquet/trials.parquet") for n in names)
    assert any(n.endswith("/data_dictionary.md") for n in names)
    assert "PIDA" not in text  # no recruitment ids unless asked for


def test_external_ids_are_exported_when_asked_for_and_allowed(
    client, study, alice, paid, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    job = run_export(client, study, django_capture_on_commit_callbacks, include_external_ids="on")
    assert job.params["include_external_ids"] is True
    body = b"".join(client.get(url("export_download", study, pk=job.pk)).streaming_content)
    path = export_dir() / "with-ids.zip"
    path.write_bytes(body)
    with zipfile.ZipFile(path) as zf:
        text = zf.read(next(n for n in zf.namelist() if n.endswith("/csv/participants.csv"))).decode()
    assert "PIDA" in text


@pytest.mark.parametrize(
    "data,error",
    [
        ({"formats": "xml"}, "Choose CSV, JSONL, Parquet or all three (got “xml”)."),
        ({}, "This field is required."),
    ],
)
def test_a_tampered_format_is_refused_with_the_reason_and_no_job(
    client, study, alice, data, error, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    response = post_export(client, study, data, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Job.objects.exists()


def test_external_ids_on_a_study_that_forbids_them_are_refused_with_the_reason_and_no_job(
    client, study, alice, django_capture_on_commit_callbacks
):
    study.allow_external_id_export = False
    study.save(update_fields=["allow_external_id_export"])
    client.force_login(alice)
    page = client.get(url("export", study)).content.decode()
    assert 'name="include_external_ids"' in page and "disabled" in page.split('name="include_external_ids"')[1][:80]

    response = post_export(
        client, study, {"formats": "csv", "include_external_ids": "on"}, django_capture_on_commit_callbacks
    )
    assert response.status_code == 400
    assert "does not allow exporting recruitment ids" in response.content.decode()
    assert not Job.objects.exists()


def test_a_viewer_may_export_but_not_recruitment_ids(client, study, bob, alice, django_capture_on_commit_callbacks):
    client.force_login(bob)
    page = client.get(url("export", study)).content.decode()
    assert 'name="include_external_ids"' not in page and "Prolific bonuses" not in page
    response = post_export(
        client, study, {"formats": "csv", "include_external_ids": "on"}, django_capture_on_commit_callbacks
    )
    assert response.status_code == 400
    assert "Only the study&#x27;s owner and editors may export recruitment ids." in response.content.decode()
    assert not Job.objects.exists()
    job = run_export(client, study, django_capture_on_commit_callbacks)
    assert client.get(url("export_download", study, pk=job.pk)).status_code == 200

    # An export with ids, made by the owner, is not for a viewer to download.
    client.force_login(alice)
    with_ids = run_export(client, study, django_capture_on_commit_callbacks, include_external_ids="on")
    client.force_login(bob)
    assert client.get(url("export_download", study, pk=with_ids.pk)).status_code == 403
    assert url("export_download", study, pk=with_ids.pk) not in client.get(url("export", study)).content.decode()


def test_a_blind_collaborator_gets_no_data_until_the_study_closes(
    client, study, bob, alice, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    job = run_export(client, study, django_capture_on_commit_callbacks)
    Collaborator.objects.filter(user=bob).update(blind=True, role=Collaborator.Role.EDITOR)
    client.force_login(bob)
    page = client.get(url("export", study))
    assert page.status_code == 200 and "Data hidden while the study runs" in page.content.decode()
    assert client.post(url("export", study), {"formats": "csv"}).status_code == 403
    assert client.get(url("export_download", study, pk=job.pk)).status_code == 403
    assert client.get(url("export_bonus", study), BONUS).status_code == 403
    assert Job.objects.count() == 1

    study_close(study=study)
    assert client.get(url("export_download", study, pk=job.pk)).status_code == 200


# --- Downloads ------------------------------------------------------------------------------------------------


def test_an_expired_export_answers_410_with_a_clear_message(client, study, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    job = run_export(client, study, django_capture_on_commit_callbacks)
    Job.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = client.get(url("export_download", study, pk=job.pk))
    assert response.status_code == 410 and "This export has expired" in response.content.decode()
    page = client.get(url("export", study)).content.decode()
    assert "Expired" in page and url("export_download", study, pk=job.pk) not in page

    assert exports_cleanup() == 1  # the hourly beat task deletes the file; still 410
    assert client.get(url("export_download", study, pk=job.pk)).status_code == 410


def test_an_unfinished_or_failed_export_has_nothing_to_download(client, study, alice):
    queued = export_job(study, alice)
    failed = export_job(study, alice)
    Job.objects.filter(pk=failed.pk).update(status=Job.Status.FAILED, message="disk full")
    client.force_login(alice)
    response = client.get(url("export_download", study, pk=queued.pk))
    assert response.status_code == 404 and "is queued" in response.content.decode()
    assert "disk full" in client.get(url("export_download", study, pk=failed.pk)).content.decode()
    page = client.get(url("export", study)).content.decode()
    assert 'hx-trigger="every 2s"' in page  # polled while one is queued; the Refresh link without JS
    partial = client.get(url("export", study), headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section class="card" id="exports"') and "<html" not in partial


def test_another_studys_export_is_not_found_here(client, study, alice):
    other = make_study(owner=alice, slug="other", n_items=2)
    job = export_job(other, alice)
    client.force_login(alice)
    assert client.get(url("export_download", study, pk=job.pk)).status_code == 404


# --- Payments ------------------------------------------------------------------------------------------------


def test_the_bonus_file_pays_each_prolific_participant_their_correct_answers(client, study, alice, paid):
    client.force_login(alice)
    response = client.get(url("export_bonus", study), BONUS)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="exp-prolific-bonus.csv"'
    assert response.content.decode() == "PIDA,0.45\nPIDB,0.23\n"

    withheld = client.get(url("export_bonus", study), {**BONUS, "withhold_excluded": "on"})
    assert withheld.content.decode() == "PIDA,0.45\n"


def test_the_statuses_file_says_who_to_approve(client, study, alice, paid):
    client.force_login(alice)
    response = client.get(url("export_statuses", study), BONUS)
    assert response["Content-Disposition"] == 'attachment; filename="exp-statuses.csv"'
    lines = response.content.decode().splitlines()
    p = {k: f"P{v.pk}" for k, v in paid.items()}
    assert lines[0] == (
        "participant_id,prolific_pid,external_id,status,action,is_pilot,excluded,n_scored,n_correct,bonus,note"
    )
    assert [line.split(",")[:10] for line in lines[1:]] == [
        [p["a"], "PIDA", "prolific:PIDA", "completed", "approve", "false", "false", "4", "4", "0.45"],
        [p["b"], "PIDB", "prolific:PIDB", "completed", "approve", "false", "true", "4", "2", "0.23"],
        [p["c"], "PIDC", "prolific:PIDC", "screened_out", "screened_out", "false", "false", "4", "4", "0.00"],
        [p["panel"], "", "pid:panel-7", "completed", "approve", "false", "false", "4", "4", "0.45"],
    ]


def test_the_preview_gives_the_total_and_who_must_be_paid_another_way(client, study, alice, paid):
    client.force_login(alice)
    body = client.get(url("export", study), BONUS).content.decode()
    preview = body.split('id="bonus-preview"')[1]
    assert "2 bonus lines, 0.68 in total." in preview  # 0.45 + 0.23
    assert f"P{paid['panel'].pk} (0.45)" in preview
    assert f"{url('export_bonus', study)}?per_correct=0.1125" in preview


@pytest.mark.parametrize(
    "query,error",
    [
        ({"per_correct": "-0.1"}, "Ensure this value is greater than or equal to 0."),
        ({"per_correct": "ten pence"}, "Enter a number."),
        ({}, "This field is required."),
        ({"per_correct": "0.123456"}, "Ensure that there are no more than 4 decimal places."),
    ],
)
def test_a_bad_bonus_rule_is_refused_with_the_reason(client, study, alice, paid, query, error):
    client.force_login(alice)
    response = client.get(url("export_bonus", study), query)
    assert response.status_code == 400 and error in response.content.decode()
    assert "PIDA" not in response.content.decode()


def test_payment_files_are_for_the_owner_and_editors(client, study, bob, paid):
    client.force_login(bob)
    assert client.get(url("export_bonus", study), BONUS).status_code == 403
    assert client.get(url("export_statuses", study), BONUS).status_code == 403
    Collaborator.objects.filter(user=bob).update(role=Collaborator.Role.EDITOR)
    assert client.get(url("export_bonus", study), BONUS).content.decode() == "PIDA,0.45\nPIDB,0.23\n"
