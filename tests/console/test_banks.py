import html
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from oversight.banks.models import Bank, Item
from oversight.core.models import Job
from tests.banks.helpers import CUSTOM_BAD, CUSTOM_OK
from tests.factories import make_bank, make_study

pytestmark = pytest.mark.django_db

MMLU_VAL = 'What is 2+2?,3,4,5,6,B\n"Which planet is red?",Venus,Mars,Earth,Jupiter,B\n'
MMLU_TEST = "Which is a star?,The Sun,The Moon,Mars,Io,A\n"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _jobs_run_in_process(tasks_inline):
    """These tests are about the job pattern, not the broker: the import task runs inline."""


@pytest.fixture
def staff(alice):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    return alice


def mmlu_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/val/astronomy_val.csv", MMLU_VAL)
        archive.writestr("data/test/astronomy_test.csv", MMLU_TEST)
    return buffer.getvalue()


def upload(client, name, content, capture, **fields):
    with capture(execute=True):
        return client.post(reverse("console:bank_upload"), {"file": SimpleUploadedFile(name, content), **fields})


# --- Who may do what -----------------------------------------------------------------------------------------


def urls():
    bank = make_bank()
    job = Job.objects.create(kind=Job.Kind.IMPORT, params={"filename": "x.csv"})
    return {
        "banks": reverse("console:banks"),
        "bank_upload": reverse("console:bank_upload"),
        "bank": reverse("console:bank", kwargs={"pk": bank.pk}),
        "job": reverse("console:job", kwargs={"pk": job.pk}),
    }


@pytest.mark.parametrize("name", ["banks", "bank_upload", "bank", "job"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, name):
    response = client.get(urls()[name])
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")


@pytest.mark.parametrize(
    "name,method", [("banks", "get"), ("bank_upload", "get"), ("bank_upload", "post"), ("bank", "get"), ("job", "get")]
)
def test_it_forbids_accounts_that_are_not_staff(client, charlie, name, method):
    client.force_login(charlie)
    assert getattr(client, method)(urls()[name]).status_code == 403


def test_a_non_staff_upload_imports_nothing(client, charlie, django_capture_on_commit_callbacks):
    client.force_login(charlie)
    response = upload(client, "bank.csv", CUSTOM_OK.encode(), django_capture_on_commit_callbacks)
    assert response.status_code == 403 and not Job.objects.exists() and not Bank.objects.exists()


@pytest.mark.parametrize("name,method", [("banks", "post"), ("bank", "post"), ("job", "post"), ("bank_upload", "put")])
def test_it_answers_only_its_methods(client, staff, name, method):
    client.force_login(staff)
    assert getattr(client, method)(urls()[name]).status_code == 405


def test_a_study_s_job_is_shown_to_the_study_s_readers_only(client, alice, bob, charlie):
    study = make_study(owner=bob)
    job = Job.objects.create(kind=Job.Kind.EXPORT, study=study)
    alice.is_staff = True
    alice.save()
    client.force_login(alice)  # staff, but not on this study
    assert client.get(reverse("console:job", kwargs={"pk": job.pk})).status_code == 404
    client.force_login(bob)
    assert client.get(reverse("console:job", kwargs={"pk": job.pk})).status_code == 200


# --- Listing and browsing ------------------------------------------------------------------------------------


def test_the_list_shows_items_per_split_in_constant_queries(client, staff, django_assert_max_num_queries):
    make_bank(name="Small", n=3, split="val")
    make_bank(name="Other", n=5, split="test")
    client.force_login(staff)
    with django_assert_max_num_queries(8):
        body = client.get(reverse("console:banks")).content.decode()
    for n in range(5):
        make_bank(name=f"More {n}", n=2)
    with django_assert_max_num_queries(8):
        assert client.get(reverse("console:banks")).status_code == 200
    assert "Small" in body and "val 3" in body and "test 5" in body


def test_browsing_searches_filters_and_shows_the_gold_option(client, staff):
    bank = make_bank(name="Browse", n=12)
    client.force_login(staff)
    page = reverse("console:bank", kwargs={"pk": bank.pk})
    body = client.get(page, {"q": "number 3?"}).content.decode()
    assert "Question number 3?" in body and "Question number 4?" not in body
    assert '<li class="gold"><span class="letter">D</span> option 3-3' in body and "✓ correct" in body
    body = client.get(page, {"subject": "history"}).content.decode()
    assert "6 items" in body and "Question number 1?" in body and "Question number 2?" not in body
    assert "0 items" in client.get(page, {"split": "test"}).content.decode()
    assert "12 items" in client.get(page, {"difficulty": "unknown"}).content.decode()
    assert "0 items" in client.get(page, {"difficulty": "hard"}).content.decode()


def test_browsing_is_paginated_and_htmx_gets_only_the_results(client, staff):
    bank = make_bank(name="Big", n=30, subjects=("physics",))
    client.force_login(staff)
    page = reverse("console:bank", kwargs={"pk": bank.pk})
    body = client.get(page, {"subject": "physics"}).content.decode()
    assert "page 1 of 2" in body and 'href="?subject=physics&amp;page=2"' in body
    response = client.get(page, {"subject": "physics", "page": 2}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<html" not in body and 'id="results"' in body and "Question number 29?" in body
    assert "Question number 0?" not in body


# --- Uploading -----------------------------------------------------------------------------------------------


def test_an_mmlu_zip_is_imported_by_a_job_that_ends_with_the_counts(
    client, staff, settings, django_capture_on_commit_callbacks
):
    client.force_login(staff)
    response = upload(client, "mmlu-small.zip", mmlu_zip(), django_capture_on_commit_callbacks)
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("console:job", kwargs={"pk": job.pk})
    assert job.kind == Job.Kind.IMPORT and job.status == Job.Status.DONE and job.created_by == staff
    assert job.params["path"].startswith("uploads/") and job.params["format"] == "mmlu"
    bank = Bank.objects.get(name="MMLU")
    assert dict(bank.items.values_list("split").annotate(n=Count("id")).order_by()) == {"val": 2, "test": 1}
    body = client.get(response["Location"]).content.decode()
    assert "Items per split: test 1, val 2; 1 subjects" in body and "3 new" in body
    assert 'hx-trigger="every 1s"' not in body and 'http-equiv="refresh"' not in body
    assert reverse("console:bank", kwargs={"pk": bank.pk}) in body
    # The upload is not kept once imported.
    assert not any((settings.MEDIA_ROOT / "uploads").iterdir())


def test_a_custom_csv_is_detected_and_named_after_the_file(client, staff, django_capture_on_commit_callbacks):
    client.force_login(staff)
    upload(client, "physics_test.csv", CUSTOM_OK.encode(), django_capture_on_commit_callbacks)
    job = Job.objects.get()
    assert (job.status, job.params["format"], job.params["custom_format"]) == ("done", "custom", "csv")
    assert Bank.objects.get(name="physics_test").items.count() == 2


def test_a_quality_jsonl_is_detected_by_its_content(client, staff, django_capture_on_commit_callbacks):
    record = {
        "article_id": "51",
        "set_unique_id": "51_a",
        "title": "A story",
        "author": "Someone",
        "article": "Once upon a time there was a test.",
        "questions": [
            {
                "question": "What was there?",
                "options": ["a test", "a dog", "a cat", "nothing"],
                "gold_label": 1,
                "difficult": 1,
                "question_unique_id": "51_a_1",
            }
        ],
    }
    client.force_login(staff)
    upload(
        client,
        "stories.jsonl",
        (json.dumps(record) + "\n").encode(),
        django_capture_on_commit_callbacks,
        bank_name="Stories",
    )
    job = Job.objects.get()
    assert job.params["format"] == "quality", job.message
    assert job.status == Job.Status.DONE, job.message
    assert Bank.objects.get(name="Stories").items.get().difficult is True


def test_a_bad_csv_fails_the_job_with_file_and_line_and_writes_nothing(
    client, staff, django_capture_on_commit_callbacks
):
    client.force_login(staff)
    response = upload(client, "bad.csv", CUSTOM_BAD.encode(), django_capture_on_commit_callbacks, format="custom")
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    assert job.message.startswith("bad.csv:3: answer 'Z' is not one of A, B")
    assert not Bank.objects.exists() and not Item.objects.exists()
    body = client.get(response["Location"]).content.decode()
    assert "bad.csv:3: answer" in body and "Nothing was imported" in body


def test_a_failed_import_into_an_existing_bank_leaves_it_as_it_was(client, staff, django_capture_on_commit_callbacks):
    client.force_login(staff)
    upload(client, "mine.csv", CUSTOM_OK.encode(), django_capture_on_commit_callbacks)
    changed = CUSTOM_OK.replace("Is ice cold?", "Is ice very cold?") + "q3,Broken,only,two,Q,physics\n"
    upload(client, "mine.csv", changed.encode(), django_capture_on_commit_callbacks)
    assert Job.objects.latest("pk").status == Job.Status.FAILED
    assert sorted(Bank.objects.get(name="mine").items.values_list("text", flat=True)) == [
        "Is fire cold?",
        "Is ice cold?",
    ]


def test_an_unreadable_format_is_a_form_error(client, staff, django_capture_on_commit_callbacks):
    client.force_login(staff)
    response = upload(client, "notes.txt", b"just some words\n", django_capture_on_commit_callbacks)
    assert response.status_code == 200 and "Cannot tell the format" in response.content.decode()
    assert not Job.objects.exists()


# --- The job page --------------------------------------------------------------------------------------------


def test_a_running_job_polls_with_htmx_and_refreshes_without_js(client, staff):
    job = Job.objects.create(
        kind=Job.Kind.IMPORT,
        status=Job.Status.RUNNING,
        done=40,
        total=100,
        message="Reading and checking the file",
        params={"filename": "data.tar"},
    )
    client.force_login(staff)
    page = reverse("console:job", kwargs={"pk": job.pk})
    body = client.get(page).content.decode()
    assert 'hx-trigger="every 1s"' in body and '<noscript><meta http-equiv="refresh"' in body
    assert '<progress value="40" max="100">' in body and f'href="{page}"' in body
    response = client.get(page, HTTP_HX_REQUEST="true")
    assert "<html" not in response.content.decode() and "HX-Trigger" not in response
    Job.objects.filter(pk=job.pk).update(status=Job.Status.DONE, finished_at=timezone.now())
    response = client.get(page, HTTP_HX_REQUEST="true")
    assert response["HX-Trigger"] == "jobFinished" and 'hx-trigger="every 1s"' not in response.content.decode()


def test_a_csv_missing_several_columns_names_them_all_on_the_job_page(
    client, staff, django_capture_on_commit_callbacks
):
    client.force_login(staff)
    csv_text = "id,text,option_a,answer\nq1,Is ice cold?,yes,A\n"
    response = upload(client, "mine.csv", csv_text.encode(), django_capture_on_commit_callbacks)
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    body = html.unescape(client.get(response["Location"]).content.decode())
    assert "mine.csv:1: unknown column 'text'; missing columns 'question', 'option_b'" in body
