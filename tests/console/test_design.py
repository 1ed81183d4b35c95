import pytest
from django.urls import reverse

from oversight.core.models import Collaborator, Condition, ModelEndpoint, Study, Task
from oversight.core.services.studies import study_close
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _alice_is_staff(alice):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])


@pytest.fixture
def study(alice, bob):
    study = make_study(owner=alice, launch=False)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    return study


def url(name, study, **kwargs):
    return reverse(f"console:{name}", kwargs={"slug": study.slug, **kwargs})


def part_urls(study):
    task, condition = study.tasks.first(), study.conditions.first()
    collaborator = study.collaborators.first()
    return {
        "design": url("design", study),
        "preview": url("preview", study),
        "clone": url("clone", study),
        "recruitment": url("recruitment", study),
        "collaborators": url("collaborators", study),
        "task_create": url("task_create", study),
        "task_edit": url("task_edit", study, pk=task.pk),
        "task_delete": url("task_delete", study, pk=task.pk),
        "condition_create": url("condition_create", study),
        "condition_edit": url("condition_edit", study, pk=condition.pk),
        "condition_delete": url("condition_delete", study, pk=condition.pk),
        "collaborator_remove": url("collaborator_remove", study, pk=collaborator.pk),
    }


READS = {
    "design",
    "preview",
    "clone",
    "recruitment",
    "collaborators",
    "task_create",
    "task_edit",
    "condition_create",
    "condition_edit",
}
WRITES = [
    "design",
    "clone",
    "recruitment",
    "collaborators",
    "task_create",
    "task_edit",
    "task_delete",
    "condition_create",
    "condition_edit",
    "condition_delete",
    "collaborator_remove",
]
ALL = sorted(READS | set(WRITES))


def task_data(study, **overrides):
    data = {
        "name": "Main",
        "role": "scored",
        "bank": study.tasks.first().bank_id,
        "sample_size": 3,
        "time_limit_s": "",
        "splits": "",
        "subjects": "",
        "position": 0,
    }
    return {**data, **overrides}


def condition_data(**overrides):
    data = {
        "name": "Unaided 2",
        "kind": "unaided",
        "endpoint": "",
        "system_prompt": "",
        "sampling": "{}",
        "inject_passage": "on",
        "max_message_chars": 2000,
        "max_turns": 40,
        "position": 5,
    }
    return {**data, **overrides}


def study_data(study, **overrides):
    data = {
        "title": study.title,
        "slug": study.slug,
        "consent_text": "Please agree.",
        "instructions": "",
        "completion_message": "",
        "design": "within",
        "order": "fixed",
        "disjoint_samples": "on",
        "sample_seed": 0,
        "randomise_item_order": "on",
        "confidence_format": "likert",
        "catch_pass_threshold": 1.0,
    }
    return {**data, **overrides}


# --- Who may do what -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_it_sends_anonymous_visitors_to_the_login_page(client, study, name):
    response = client.get(part_urls(study)[name])
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")


def test_it_sends_anonymous_visitors_from_the_create_form_to_the_login_page(client):
    response = client.get(reverse("console:study_create"))
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")


@pytest.mark.parametrize("name,method", [(name, "get") for name in sorted(READS)] + [(name, "post") for name in WRITES])
def test_it_hides_a_study_from_an_outsider(client, study, charlie, name, method):
    charlie.is_staff = True
    charlie.save()
    client.force_login(charlie)
    assert getattr(client, method)(part_urls(study)[name]).status_code == 404


@pytest.mark.parametrize("name", WRITES)
def test_it_forbids_a_viewer_to_change_the_study(client, study, bob, name):
    client.force_login(bob)
    before = (Task.objects.count(), Condition.objects.count(), Collaborator.objects.count(), Study.objects.count())
    assert client.post(part_urls(study)[name], {"slug": "taken-over", "title": "x"}).status_code == 403
    after = (Task.objects.count(), Condition.objects.count(), Collaborator.objects.count(), Study.objects.count())
    assert after == before and Study.objects.get(pk=study.pk).slug == study.slug


def test_a_viewer_may_preview_the_design(client, study, bob):
    client.force_login(bob)
    assert client.get(url("preview", study)).status_code == 200


def test_an_editor_may_not_manage_collaborators(client, study, charlie):
    Collaborator.objects.create(study=study, user=charlie, role=Collaborator.Role.EDITOR)
    client.force_login(charlie)
    assert client.get(url("design", study)).status_code == 200
    assert client.get(url("collaborators", study)).status_code == 403
    assert client.post(url("collaborators", study), {"username": "charlie", "role": "viewer"}).status_code == 403


def test_only_staff_accounts_create_or_clone_studies(client, study, charlie):
    Collaborator.objects.create(study=study, user=charlie, role=Collaborator.Role.EDITOR)
    client.force_login(charlie)
    assert client.get(reverse("console:study_create")).status_code == 403
    assert client.post(url("clone", study), {"slug": "mine"}).status_code == 403
    assert not Study.objects.filter(slug="mine").exists()


@pytest.mark.parametrize(
    "name,method",
    [
        ("preview", "post"),
        ("task_delete", "get"),
        ("condition_delete", "get"),
        ("collaborator_remove", "get"),
        ("design", "put"),
        ("clone", "delete"),
        ("recruitment", "put"),
        ("task_edit", "put"),
        ("collaborators", "put"),
    ],
)
def test_it_answers_only_its_methods(client, study, alice, name, method):
    client.force_login(alice)
    assert getattr(client, method)(part_urls(study)[name]).status_code == 405


def test_the_create_form_answers_only_get_and_post(client, alice):
    client.force_login(alice)
    assert client.put(reverse("console:study_create")).status_code == 405


# --- Creating and editing ------------------------------------------------------------------------------------


def test_a_staff_researcher_creates_a_draft_and_owns_it(client, alice):
    client.force_login(alice)
    assert client.get(reverse("console:study_create")).status_code == 200
    data = {
        "title": "Pilot A",
        "slug": "pilot-a",
        "design": "within",
        "order": "counterbalanced",
        "disjoint_samples": "on",
        "sample_seed": 7,
        "confidence_format": "slider",
        "catch_pass_threshold": 0.5,
    }
    response = client.post(reverse("console:study_create"), data)
    study = Study.objects.get(slug="pilot-a")
    assert response.status_code == 302 and response["Location"] == url("design", study)
    assert study.owner == alice and study.status == Study.Status.DRAFT and study.sample_seed == 7
    page = client.get(url("design", study)).content.decode()
    assert "Add at least one condition." in page and "Add at least one task with scored items." in page


@pytest.mark.parametrize(
    "slug,message",
    [("p", "reserved"), ("new", "reserved"), ("unit", "already exists"), ("not a slug", "Enter a valid")],
)
def test_it_refuses_a_bad_or_taken_slug(client, study, alice, slug, message):
    client.force_login(alice)
    response = client.post(reverse("console:study_create"), study_data(study, slug=slug, title="Other"))
    assert response.status_code == 200 and message in response.content.decode()
    assert Study.objects.count() == 1


def test_it_refuses_a_catch_threshold_outside_0_to_1(client, study, alice):
    client.force_login(alice)
    response = client.post(
        url("design", study), {f"study-{k}": v for k, v in study_data(study, catch_pass_threshold=2).items()}
    )
    assert "Give a share between 0 and 1" in response.content.decode()


def test_the_owner_edits_the_study_while_it_is_a_draft(client, study, alice):
    client.force_login(alice)
    data = {f"study-{k}": v for k, v in study_data(study, title="Renamed", slug="renamed", reveal_gold="on").items()}
    response = client.post(url("design", study), data)
    study.refresh_from_db()
    assert response.status_code == 302 and response["Location"] == url("design", study)
    assert (study.title, study.slug, study.reveal_gold) == ("Renamed", "renamed", True)


def test_an_editor_adds_and_edits_a_task(client, study, bob):
    Collaborator.objects.filter(user=bob).update(role=Collaborator.Role.EDITOR)
    client.force_login(bob)
    assert client.get(url("task_create", study)).status_code == 200
    response = client.post(
        url("task_create", study),
        task_data(study, name="Practice", role="practice", sample_size=2, splits="val, val", time_limit_s=30),
    )
    assert response.status_code == 302
    task = study.tasks.get(name="Practice")
    assert (task.role, task.sample_size, task.splits, task.time_limit_s) == ("practice", 2, ["val"], 30)
    response = client.post(
        url("task_edit", study, pk=task.pk),
        task_data(study, name="Practice", role="practice", sample_size=4, subjects="physics"),
    )
    task.refresh_from_db()
    assert response.status_code == 302 and (task.sample_size, task.subjects) == (4, ["physics"])


def test_it_refuses_a_sample_larger_than_the_bank(client, study, alice):
    client.force_login(alice)
    response = client.post(url("task_create", study), task_data(study, name="Huge", role="practice", sample_size=50))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Task “Huge”: a sample of 50 is larger than the 12 matching items" in body
    assert not study.tasks.filter(name="Huge").exists()


def test_it_refuses_disjoint_samples_that_do_not_fit(client, study, alice):
    client.force_login(alice)
    task = study.tasks.get()
    response = client.post(url("task_edit", study, pk=task.pk), task_data(study, sample_size=7))
    assert "2 disjoint samples of 7 need 14 items but the bank has 12 matching items" in response.content.decode()
    task.refresh_from_db()
    assert task.sample_size == 3


def test_switching_on_disjoint_samples_that_do_not_fit_is_refused(client, study, alice):
    Study.objects.filter(pk=study.pk).update(disjoint_samples=False)
    study.tasks.update(sample_size=7)
    study.refresh_from_db()
    client.force_login(alice)
    data = {f"study-{k}": v for k, v in study_data(study).items()}  # disjoint_samples on
    response = client.post(url("design", study), data)
    assert response.status_code == 200
    assert "2 disjoint samples of 7 need 14 items" in response.content.decode()
    assert not Study.objects.get(pk=study.pk).disjoint_samples


def test_adding_a_condition_that_leaves_too_few_items_is_refused(client, study, alice):
    study.tasks.update(sample_size=5)  # 2 × 5 of 12 fit; 3 × 5 do not
    client.force_login(alice)
    response = client.post(url("condition_create", study), condition_data())
    assert "3 disjoint samples of 5 need 15 items but the bank has 12" in response.content.decode()
    assert study.conditions.count() == 2


def test_an_assisted_condition_needs_an_endpoint(client, study, alice):
    client.force_login(alice)
    response = client.post(url("condition_create", study), condition_data(kind="assisted", name="Helped"))
    assert "An assisted condition needs a model endpoint." in response.content.decode()
    assert not study.conditions.filter(name="Helped").exists()


def test_a_condition_s_sampling_must_use_known_settings(client, study, alice):
    client.force_login(alice)
    condition = study.conditions.get(kind="assisted")
    data = condition_data(
        kind="assisted", name="Assisted", endpoint=condition.endpoint_id, sampling='{"temprature": 0.2}'
    )
    response = client.post(url("condition_edit", study, pk=condition.pk), data)
    assert "Unknown sampling setting(s) temprature" in response.content.decode()
    data["sampling"] = '{"temperature": 0.2, "max_tokens": 300}'
    assert client.post(url("condition_edit", study, pk=condition.pk), data).status_code == 302
    condition.refresh_from_db()
    assert condition.sampling == {"temperature": 0.2, "max_tokens": 300}


def test_removing_a_task_with_htmx_swaps_the_design_parts(client, study, alice):
    client.force_login(alice)
    task = study.tasks.get()
    response = client.post(url("task_delete", study, pk=task.pk), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and response["HX-Trigger"] == "designChanged"
    assert "<html" not in body and "No tasks yet." in body and "Add at least one task with scored items." in body
    assert not study.tasks.exists()


def test_removing_a_condition_without_js_redirects_to_the_design(client, study, alice):
    client.force_login(alice)
    condition = study.conditions.first()
    response = client.post(url("condition_delete", study, pk=condition.pk))
    assert response.status_code == 302 and response["Location"] == url("design", study)
    assert study.conditions.count() == 1


def test_a_task_of_another_study_is_not_found(client, study, alice):
    other = make_study(slug="other", owner=alice, launch=False)
    client.force_login(alice)
    assert client.get(url("task_edit", study, pk=other.tasks.get().pk)).status_code == 404
    assert client.post(url("condition_delete", study, pk=other.conditions.first().pk)).status_code == 404


# --- A launched study's design is frozen ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,method",
    [
        ("design", "get"),
        ("design", "post"),
        ("task_create", "post"),
        ("task_edit", "post"),
        ("task_delete", "post"),
        ("condition_edit", "get"),
        ("condition_delete", "post"),
    ],
)
def test_a_live_study_s_design_cannot_be_edited(client, alice, name, method):
    study = make_study(owner=alice, launch=True)
    client.force_login(alice)
    response = getattr(client, method)(part_urls_without_collaborator(study)[name])
    assert response.status_code == 403
    assert "frozen in the manifest" in response.content.decode() and "Clone it" in response.content.decode()
    assert study.tasks.count() == 1 and study.conditions.count() == 2


def part_urls_without_collaborator(study):
    task, condition = study.tasks.first(), study.conditions.first()
    return {
        "design": url("design", study),
        "task_create": url("task_create", study),
        "task_edit": url("task_edit", study, pk=task.pk),
        "task_delete": url("task_delete", study, pk=task.pk),
        "condition_edit": url("condition_edit", study, pk=condition.pk),
        "condition_delete": url("condition_delete", study, pk=condition.pk),
    }


def test_the_study_page_offers_edit_design_only_for_drafts(client, study, alice):
    client.force_login(alice)
    assert url("design", study) in client.get(url("study", study)).content.decode()
    live = make_study(slug="live", owner=alice)
    body = client.get(url("study", live)).content.decode()
    assert url("design", live) not in body and url("clone", live) in body


# --- Preview, clone, recruitment -----------------------------------------------------------------------------


def test_the_preview_shows_the_design_and_what_blocks_launch(client, study, alice):
    study.tasks.update(sample_size=50)
    client.force_login(alice)
    body = client.get(url("preview", study)).content.decode()
    assert "Within-subject" in body and "Assisted" in body and "Please agree." in body
    assert "50 from “unit bank”" in body and "disjoint samples of 50 need 100 items" in body


def test_clone_makes_a_draft_with_the_slug_asked_for_owned_by_the_cloner(client, alice, bob):
    source = make_study(owner=alice, launch=True)
    Collaborator.objects.create(study=source, user=bob, role=Collaborator.Role.EDITOR)
    bob.is_staff = True
    bob.save()
    client.force_login(bob)
    assert client.get(url("clone", source)).status_code == 200
    response = client.post(url("clone", source), {"slug": "unit-2", "title": ""})
    clone = Study.objects.get(slug="unit-2")
    assert response.status_code == 302 and response["Location"] == url("design", clone)
    assert clone.status == Study.Status.DRAFT and clone.owner == bob and clone.title == "Study unit (copy)"
    assert clone.tasks.count() == 1 and clone.conditions.count() == 2 and not clone.manifest_hash


def test_clone_refuses_a_taken_or_reserved_slug(client, study, alice):
    client.force_login(alice)
    assert "already exists" in client.post(url("clone", study), {"slug": "unit"}).content.decode()
    assert "reserved" in client.post(url("clone", study), {"slug": "p"}).content.decode()
    assert Study.objects.count() == 1


def test_recruitment_settings_can_change_while_live(client, alice):
    study = make_study(owner=alice, launch=True)
    client.force_login(alice)
    data = {
        "prolific_completion_url": "https://app.prolific.com/submissions/complete?cc=C0DE",
        "completion_code": "C0DE",
        "screenout_code": "OUT1",
    }
    response = client.post(url("recruitment", study), data)
    study.refresh_from_db()
    assert response.status_code == 302
    assert (study.prolific_completion_url, study.completion_code, study.screenout_code) == (
        data["prolific_completion_url"],
        "C0DE",
        "OUT1",
    )


def test_recruitment_codes_must_differ_and_the_url_must_be_a_url(client, study, alice):
    client.force_login(alice)
    body = client.post(
        url("recruitment", study),
        {"prolific_completion_url": "not a url", "completion_code": "X", "screenout_code": "X"},
    ).content.decode()
    assert "Enter a valid URL." in body and "must differ from the completion code" in body


def test_a_closed_study_s_recruitment_is_frozen(client, alice):
    study = study_close(study=make_study(owner=alice, launch=True))
    client.force_login(alice)
    response = client.get(url("recruitment", study))
    assert response.status_code == 403 and "is closed" in response.content.decode()


# --- Collaborators -------------------------------------------------------------------------------------------


def test_the_owner_adds_changes_and_removes_a_collaborator(client, study, alice, charlie):
    client.force_login(alice)
    response = client.post(url("collaborators", study), {"username": "charlie", "role": "editor", "blind": "on"})
    assert response.status_code == 302
    collaborator = Collaborator.objects.get(study=study, user=charlie)
    assert (collaborator.role, collaborator.blind) == ("editor", True)
    client.post(url("collaborators", study), {"username": "charlie", "role": "viewer"})
    collaborator.refresh_from_db()
    assert (collaborator.role, collaborator.blind) == ("viewer", False)
    response = client.post(url("collaborator_remove", study, pk=collaborator.pk))
    assert response.status_code == 302 and not Collaborator.objects.filter(user=charlie).exists()


def test_adding_a_collaborator_with_htmx_swaps_the_list(client, study, alice, charlie):
    client.force_login(alice)
    response = client.post(
        url("collaborators", study), {"username": "charlie", "role": "viewer"}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert response.status_code == 200 and response["HX-Trigger"] == "collaboratorsChanged"
    assert "<html" not in body and "charlie" in body


@pytest.mark.parametrize(
    "username,message", [("nobody", "There is no account “nobody”."), ("alice", "alice owns this study.")]
)
def test_it_explains_why_a_collaborator_cannot_be_added(client, study, alice, username, message):
    client.force_login(alice)
    response = client.post(url("collaborators", study), {"username": username, "role": "viewer"})
    assert response.status_code == 200 and message in response.content.decode()


def test_an_endpoint_choice_lists_the_lab_s_endpoints(client, study, alice):
    ModelEndpoint.objects.create(name="Big model", kind=ModelEndpoint.Kind.TGI, base_url="http://gpu:8080")
    client.force_login(alice)
    assert "Big model" in client.get(url("condition_create", study)).content.decode()


# --- What participants read ------------------------------------------------------------------------------------

CHECK_TEXT = """May you use a search engine?
- Yes
* No

What happens when the timer reaches zero?
* The selected answer is submitted
- Nothing
- The question is skipped"""


def test_the_owner_writes_instructions_and_a_comprehension_check_as_text(client, study, alice):
    client.force_login(alice)
    data = study_data(study, instructions="Read first.", comprehension_questions=CHECK_TEXT)
    data["comprehension_max_attempts"] = 3
    response = client.post(url("design", study), {f"study-{k}": v for k, v in data.items()})
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.instructions == "Read first." and study.comprehension_max_attempts == 3
    assert study.comprehension_questions == [
        {"question": "May you use a search engine?", "options": ["Yes", "No"], "answer": 1},
        {
            "question": "What happens when the timer reaches zero?",
            "options": ["The selected answer is submitted", "Nothing", "The question is skipped"],
            "answer": 0,
        },
    ]
    # The form shows it again as it was written.
    assert CHECK_TEXT in client.get(url("design", study)).content.decode().replace("\r\n", "\n")


def test_the_attempts_default_to_two_when_left_empty(client, study, alice):
    client.force_login(alice)
    data = study_data(study, comprehension_questions=CHECK_TEXT)
    client.post(url("design", study), {f"study-{k}": v for k, v in data.items()})
    study.refresh_from_db()
    assert study.comprehension_max_attempts == 2 and len(study.comprehension_questions) == 2


@pytest.mark.parametrize(
    "text,message",
    [
        ("May you?\n- Yes\n- No", "mark exactly one option, the right one, with “*”"),
        ("May you?\n* Yes\n* No", "mark exactly one option"),
        ("May you?\n* Yes", "give at least two options"),
        ("- Yes\n* No", "has no question text"),
    ],
)
def test_a_check_that_cannot_be_scored_is_refused_with_the_reason(client, study, alice, text, message):
    client.force_login(alice)
    data = study_data(study, comprehension_questions=text)
    response = client.post(url("design", study), {f"study-{k}": v for k, v in data.items()})
    assert response.status_code == 200 and message in response.content.decode()
    study.refresh_from_db()
    assert study.comprehension_questions == []


@pytest.mark.parametrize("attempts", ["0", "11"])
def test_the_number_of_attempts_is_between_1_and_10(client, study, alice, attempts):
    client.force_login(alice)
    data = {**study_data(study, comprehension_questions=CHECK_TEXT), "comprehension_max_attempts": attempts}
    response = client.post(url("design", study), {f"study-{k}": v for k, v in data.items()})
    assert "Give between 1 and 10 attempts." in response.content.decode()


def test_a_condition_gets_its_block_instructions(client, study, alice):
    client.force_login(alice)
    condition = study.conditions.get(kind="unaided")
    data = condition_data(name=condition.name, position=condition.position, instructions="Answer on your own.")
    assert client.post(url("condition_edit", study, pk=condition.pk), data).status_code == 302
    condition.refresh_from_db()
    assert condition.instructions == "Answer on your own."


def test_the_study_page_and_the_preview_show_what_participants_read(client, alice):
    study = make_study(owner=alice, launch=False, instructions="Read first.")
    study.comprehension_questions = [{"question": "May you search?", "options": ["Yes", "No"], "answer": 1}]
    study.save()
    study.conditions.filter(kind="unaided").update(instructions="No outside help.")
    client.force_login(alice)
    for page in (reverse("console:study", kwargs={"slug": study.slug}), url("preview", study)):
        body = client.get(page).content.decode()
        assert "What participants read" in body and "Read first." in body
        assert "1 question, every answer right to go on; screened out (screen-out code) after 2 attempts" in body
        assert '<strong title="the right answer">No</strong>' in body
        assert "“No outside help.”" in body and "no instructions (participants still see a page between blocks)" in body


def test_a_task_keeps_stories_apart_only_when_the_bank_has_enough_of_them(client, study, alice):
    from oversight.banks.models import Passage

    bank = study.tasks.get().bank
    passage = Passage.objects.create(bank=bank, external_id="P1", title="One story", text="…", content_hash="p1")
    bank.items.update(passage=passage)  # all 12 items on one story
    client.force_login(alice)
    edit = url("task_edit", study, pk=study.tasks.get().pk)
    assert "Keep each story in one condition" in client.get(edit).content.decode()
    body = client.post(edit, task_data(study, separate_stories="on")).content.decode()
    assert "keeping each story in one condition, 2 samples of 3 cannot be drawn" in body
    assert study.tasks.get().separate_stories is False
    second = Passage.objects.create(bank=bank, external_id="P2", title="Two", text="…", content_hash="p2")
    bank.items.filter(external_id__in=[f"{bank.name}:{i}" for i in range(6)]).update(passage=second)
    assert client.post(edit, task_data(study, separate_stories="on")).status_code == 302
    assert study.tasks.get().separate_stories is True
