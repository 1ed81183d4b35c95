"""Designing protocol conditions in the console: the kind, its settings (JSON validated by ProtocolSettings) and
its advocates (endpoint, system prompt, sampling), refused in the launch rules' words before anything is saved;
and the self-play button for static conditions."""

import pytest
from django.urls import reverse

from oversight.core.models import Advocate, Collaborator, Condition, Job, ModelEndpoint, Transcript
from tests.factories import make_protocol_study, make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(alice):
    """A draft QuALITY-like study (every item has its story) with one unaided condition."""
    return make_protocol_study(slug="design", conditions=(("unaided", {}),), launch=False, owner=alice)


@pytest.fixture
def endpoint():
    return ModelEndpoint.objects.create(name="advocate", kind=ModelEndpoint.Kind.SIMULATED, simulation={"seed": 1})


def url(name, study, **kwargs):
    return reverse(f"console:{name}", kwargs={"slug": study.slug, **kwargs})


def debate_data(endpoint, **overrides):
    data = {
        "name": "Debate",
        "kind": "debate",
        "endpoint": "",
        "system_prompt": "",
        "sampling": "{}",
        "max_message_chars": 2000,
        "max_turns": 40,
        "protocol": '{"rounds": 2, "word_limit": 120}',
        "position": 1,
        "advocate_0_endpoint": endpoint.pk,
        "advocate_0_system_prompt": "Argue for {name}.",
        "advocate_0_sampling": '{"temperature": 0.7}',
        "advocate_0_name": "model A",
        "advocate_1_endpoint": endpoint.pk,
        "advocate_1_system_prompt": "",
        "advocate_1_sampling": "{}",
        "advocate_1_name": "",
    }
    return {**data, **overrides}


def test_a_researcher_adds_a_debate_with_its_settings_and_two_advocates(client, study, alice, endpoint):
    client.force_login(alice)
    response = client.post(url("condition_create", study), debate_data(endpoint))
    assert response.status_code == 302, response.content.decode()
    condition = study.conditions.get(kind="debate")
    assert condition.protocol == {"rounds": 2, "word_limit": 120}
    assert condition.protocol_settings().rounds == 2
    advocates = list(condition.advocates.order_by("position").values_list("position", "system_prompt", "sampling"))
    assert advocates == [(0, "Argue for {name}.", {"temperature": 0.7}), (1, "", {})]
    # The edit form shows what is stored.
    page = client.get(url("condition_edit", study, pk=condition.pk)).content.decode()
    assert "Argue for {name}." in page and "model A" in page


def test_a_debate_with_one_advocate_is_refused_in_the_launch_rules_words(client, study, alice, endpoint):
    client.force_login(alice)
    response = client.post(url("condition_create", study), debate_data(endpoint, advocate_1_endpoint=""))
    assert "needs two advocates, one at position 0 (Debater A) and one at position 1" in response.content.decode()
    assert not study.conditions.filter(kind="debate").exists() and not Advocate.objects.exists()


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        ('{"rounds": 3, "rouns": 2}', "Unknown protocol setting(s) rouns"),
        ('{"rounds": 0}', "“rounds” must be between 1 and 10, not 0."),
        ('{"transcripts": "static", "judge_questions": true}', "cannot answer the judge"),
        ("[1, 2]", "Give a JSON object"),
    ],
)
def test_settings_a_protocol_cannot_run_with_are_refused(client, study, alice, endpoint, protocol, message):
    client.force_login(alice)
    response = client.post(url("condition_create", study), debate_data(endpoint, protocol=protocol))
    assert message in response.content.decode()
    assert not study.conditions.filter(kind="debate").exists()


def test_a_condition_hiding_the_story_needs_items_with_one(client, alice, endpoint):
    study = make_study(owner=alice, launch=False)  # a bank of items without stories
    client.force_login(alice)
    response = client.post(url("condition_create", study), debate_data(endpoint))
    assert "hides the story from the judge, so every item needs a story" in response.content.decode()
    response = client.post(url("condition_create", study), debate_data(endpoint, protocol='{"judge_sees_story": true}'))
    assert response.status_code == 302


def test_protocol_settings_on_an_unaided_condition_are_refused(client, study, alice, endpoint):
    client.force_login(alice)
    data = debate_data(endpoint, kind="unaided", name="Alone", advocate_0_endpoint="", advocate_1_endpoint="")
    response = client.post(url("condition_create", study), data)
    assert "Only consultancy, debate and their variants take protocol settings." in response.content.decode()


def test_turning_a_debate_into_a_consultancy_keeps_one_advocate(client, study, alice, endpoint):
    client.force_login(alice)
    client.post(url("condition_create", study), debate_data(endpoint))
    condition = study.conditions.get(kind="debate")
    response = client.post(
        url("condition_edit", study, pk=condition.pk), debate_data(endpoint, kind="consultancy", name="Consultancy")
    )
    assert response.status_code == 302
    assert list(condition.advocates.values_list("position", flat=True)) == [0]


def test_the_self_play_button_writes_the_static_transcripts_as_a_job(
    client, study, alice, endpoint, tasks_inline, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    static = '{"rounds": 1, "transcripts": "static"}'
    client.post(url("condition_create", study), debate_data(endpoint, protocol=static))
    design = client.get(url("design", study)).content.decode()
    assert url("selfplay", study) in design and "0 of 4 written" in design
    with django_capture_on_commit_callbacks(execute=True):  # the job is queued once the request commits
        response = client.post(url("selfplay", study))
    job = Job.objects.get(kind="selfplay")
    assert response.status_code == 302 and response["Location"] == reverse("console:job", kwargs={"pk": job.pk})
    condition = Condition.objects.get(kind="debate")
    assert Transcript.objects.filter(condition=condition, shared=True, status="complete").count() == 4
    assert "4 of 4 written" in client.get(url("design", study)).content.decode()


def test_only_an_editor_of_the_study_may_run_self_play(client, study, bob, charlie):
    response = client.post(url("selfplay", study))
    assert response.status_code == 302 and "/console/login" in response["Location"]  # anonymous
    client.force_login(charlie)
    assert client.post(url("selfplay", study)).status_code == 404  # an outsider does not learn it exists
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    client.force_login(bob)
    assert client.post(url("selfplay", study)).status_code == 403  # a viewer
    assert not Job.objects.exists()


def test_self_play_answers_only_post(client, study, alice):
    client.force_login(alice)
    assert client.get(url("selfplay", study)).status_code == 405


def test_self_play_without_a_static_condition_says_so(client, study, alice):
    client.force_login(alice)
    response = client.post(url("selfplay", study), follow=True)
    assert "No condition of this study shows pre-generated transcripts." in response.content.decode()
    assert not Job.objects.exists()
