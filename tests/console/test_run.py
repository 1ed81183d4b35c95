import pytest
from django.urls import reverse

from oversight.assistant.models import ChatMessage
from oversight.core.models import Collaborator, Exclusion, Participant
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import Answer, trial_show, trial_submit
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(alice, bob):
    study = make_study(owner=alice, n_items=2)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    return study


def answer_all(participant, correct=True):
    for trial in participant.trials.select_related("item").order_by("position"):
        trial_show(trial=trial)
        choice = trial.item.gold_index if correct else (trial.item.gold_index + 1) % 4
        trial_submit(trial=trial, answer=Answer(choice=choice, confidence=80))


def enrol(study, pid):
    return participant_join(study=study, params={"pid": pid}, consent=True)


def url(name, study, **kw):
    return reverse(f"console:{name}", kwargs={"slug": study.slug, **kw})


VIEWS = [
    ("monitor", "get", {}),
    ("exclusions", "get", {}),
    ("transcript", "get", {"participant_id": None}),
    ("exclude", "post", {"participant_id": None}),
    ("apply_rule", "post", {}),
    ("pilot", "post", {}),
]


def _kwargs(kw, participant):
    return {k: (participant.pk if v is None else v) for k, v in kw.items()}


@pytest.mark.parametrize("name,method,kw", VIEWS)
def test_it_sends_anonymous_visitors_to_log_in(client, study, name, method, kw):
    p = enrol(study, "x")
    response = getattr(client, method)(url(name, study, **_kwargs(kw, p)))
    assert response.status_code == 302 and "/console/login/" in response["Location"]


@pytest.mark.parametrize("name,method,kw", VIEWS)
def test_it_hides_the_study_from_an_outsider(client, study, charlie, name, method, kw):
    p = enrol(study, "x")
    client.force_login(charlie)
    assert getattr(client, method)(url(name, study, **_kwargs(kw, p))).status_code == 404


@pytest.mark.parametrize("name,kw", [("exclude", {"participant_id": None}), ("apply_rule", {}), ("pilot", {})])
def test_it_forbids_a_viewer_to_exclude_or_pilot(client, study, bob, name, kw):
    p = enrol(study, "x")
    client.force_login(bob)
    assert client.post(url(name, study, **_kwargs(kw, p)), {"reason": "x", "rule": "incomplete"}).status_code == 403
    assert not Exclusion.objects.exists()


@pytest.mark.parametrize(
    "name,method,kw", [("monitor", "post", {}), ("exclude", "get", {"participant_id": None}), ("pilot", "get", {})]
)
def test_it_answers_only_its_methods(client, study, alice, name, method, kw):
    p = enrol(study, "x")
    client.force_login(alice)
    assert getattr(client, method)(url(name, study, **_kwargs(kw, p))).status_code == 405


def test_the_monitor_shows_each_participant_with_progress_and_accuracy(client, study, alice):
    p = enrol(study, "x")
    answer_all(p)
    client.force_login(alice)
    body = client.get(url("monitor", study)).content.decode()
    assert f"P{p.pk}" in body and "4/4" in body
    assert "Assisted 100%" in body


def test_a_blind_collaborator_does_not_see_accuracy(client, study, bob):
    Collaborator.objects.filter(user=bob).update(blind=True)
    answer_all(enrol(study, "x"))
    client.force_login(bob)
    body = client.get(url("monitor", study)).content.decode()
    assert "100%" not in body and "blind to accuracy" in body


def test_a_transcript_shows_the_chat_with_resets_and_verified_quotes(client, study, alice):
    p = enrol(study, "x")
    trial = p.trials.get(position=0)
    ChatMessage.objects.create(trial=trial, seq=1, role="user", content="Quote it")
    ChatMessage.objects.create(
        trial=trial,
        seq=2,
        role="assistant",
        content='It says "a quoted sentence here ok".',
        quotes=[{"text": "a quoted sentence here ok", "verified": True, "start": 0, "end": 5}],
    )
    ChatMessage.objects.create(trial=trial, seq=3, role="reset")
    ChatMessage.objects.create(trial=trial, seq=4, role="assistant", content="<script>alert(1)</script>")
    client.force_login(alice)
    body = client.get(url("transcript", study, participant_id=p.pk)).content.decode()
    assert "Quote it" in body and 'class="quote verified"' in body
    assert "the model&#x27;s context was emptied" in body or "context was emptied" in body
    assert "<script>alert(1)" not in body


def test_a_transcript_shows_a_stopped_reply_with_its_text_and_a_message_that_was_never_sent(client, study, alice):
    p = enrol(study, "x")
    trial = p.trials.get(position=0)
    ChatMessage.objects.create(trial=trial, seq=1, role="user", content="Explain it all")
    ChatMessage.objects.create(trial=trial, seq=2, role="assistant", status="stopped", content="Well, first of")
    ChatMessage.objects.create(trial=trial, seq=3, role="user", status="queued", content="Too late to ask")
    client.force_login(alice)
    body = client.get(url("transcript", study, participant_id=p.pk)).content.decode()
    assert "Well, first of" in body and "Stopped by the participant" in body
    assert "Too late to ask" in body and "Queued (not yet sent to the model)" in body


def test_an_exclusion_is_recorded_with_who_and_why_and_can_be_revoked(client, study, alice):
    p = enrol(study, "x")
    client.force_login(alice)
    client.post(url("exclude", study, participant_id=p.pk), {"reason": "used a search engine", "rule": "manual"})
    exclusion = Exclusion.objects.get(participant=p)
    assert (exclusion.created_by, exclusion.reason, exclusion.revoked_at) == (alice, "used a search engine", None)
    client.post(url("revoke_exclusion", study, exclusion_id=exclusion.pk))
    exclusion.refresh_from_db()
    assert exclusion.revoked_by == alice and exclusion.revoked_at is not None


def test_an_exclusion_needs_a_reason(client, study, alice):
    p = enrol(study, "x")
    client.force_login(alice)
    response = client.post(url("exclude", study, participant_id=p.pk), {"reason": " ", "rule": "manual"}, follow=True)
    assert b"Say why the participant is excluded." in response.content
    assert not Exclusion.objects.exists()


def test_the_outlier_rule_finds_the_participant_far_above_the_others(client, study, alice):
    good = enrol(study, "good")
    answer_all(good, correct=True)
    for i in range(4):
        answer_all(enrol(study, f"avg{i}"), correct=False)
    # Make the "average" participants a little varied so the SD is not zero.
    t = Participant.objects.get(external_id="pid:avg0").trials.filter(condition__kind="unaided").first()
    t.correct = True
    t.save(update_fields=["correct"])
    client.force_login(alice)
    page = client.get(url("exclusions", study), {"rule": "outlier", "k": "2"}).content.decode()
    assert f"P{good.pk}" in page
    client.post(url("apply_rule", study), {"rule": "outlier", "k": "2"})
    assert list(Exclusion.objects.values_list("participant_id", "rule")) == [(good.pk, "outlier")]


def test_the_incomplete_rule_excludes_those_who_did_not_finish(client, study, alice):
    done = enrol(study, "done")
    answer_all(done)
    from oversight.core.services.participants import participant_complete

    participant_complete(participant=done)
    quitter = enrol(study, "quit")
    client.force_login(alice)
    client.post(url("apply_rule", study), {"rule": "incomplete"})
    assert list(Exclusion.objects.values_list("participant_id", flat=True)) == [quitter.pk]


def test_a_researcher_pilots_the_study_as_a_flagged_participant(client, study, alice):
    client.force_login(alice)
    response = client.post(url("pilot", study))
    participant = Participant.objects.get()
    assert participant.is_pilot and participant.status == Participant.Status.ACTIVE
    assert response["Location"] == reverse("participant:next", kwargs={"token": participant.token})
