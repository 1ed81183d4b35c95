import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from oversight.banks.models import Item
from oversight.core.launched import forget_launched_studies
from oversight.core.models import Event, Participant, Study, Trial
from oversight.core.services.studies import study_close
from oversight.core.services.trials import finalize_expired_trials
from tests.factories import make_study

pytestmark = pytest.mark.django_db

PROLIFIC = {"PROLIFIC_PID": "5f00aa", "STUDY_ID": "st1", "SESSION_ID": "se1"}


def join(client, study, params=PROLIFIC, consent="yes"):
    url = reverse("participant:welcome", kwargs={"slug": study.slug})
    return client.post(url, {**params, "consent": consent})


def enrol(client, study, params=PROLIFIC) -> Participant:
    response = join(client, study, params)
    assert response.status_code == 303  # POST → 303 → GET: the first step's address
    token = response["Location"].split("/p/")[1].split("/")[0]
    return Participant.objects.get(token=token)


def trial_url(p, position, name="participant:trial"):
    return reverse(name, kwargs={"token": p.token, "position": position})


def through_introductions(client, p) -> str:
    """Pass the introduction pages the participant is on (instructions, a block's), as their button does; the
    address of the step after them."""
    for _ in range(5):
        location = client.get(reverse("participant:next", kwargs={"token": p.token}))["Location"]
        if "/part/" not in location and not location.endswith("/instructions"):
            return location
        client.post(location)
    raise AssertionError("still on an introduction page")


def test_it_does_not_enrol_anyone_on_get(client):
    study = make_study()
    response = client.get(f"/s/{study.slug}/", PROLIFIC)
    assert response.status_code == 200
    assert b"Please agree." in response.content
    assert Participant.objects.count() == 0


def test_it_enrols_a_prolific_participant_with_every_item_of_their_conditions(client):
    study = make_study(n_items=3)
    p = enrol(client, study)
    assert p.external_id == "prolific:5f00aa"
    assert p.recruitment == {"source": "prolific", **PROLIFIC}
    trials = list(p.trials.all())
    assert len(trials) == 6
    expected = set(study.condition_items.values_list("condition_id", "item_id"))
    assert {(t.condition_id, t.item_id) for t in trials} == expected
    assert sorted(t.position for t in trials) == list(range(6))


def test_it_resumes_the_same_participant_when_the_same_prolific_pid_joins_again(client):
    study = make_study()
    first = enrol(client, study)
    second = enrol(client, study)
    assert first.pk == second.pk
    assert Participant.objects.count() == 1
    assert Event.objects.filter(participant=first, kind=Event.Kind.RESUMED).exists()


def test_it_records_a_declined_consent_and_shows_a_polite_page(client):
    study = make_study()
    response = join(client, study, consent="no")
    assert response.status_code == 200
    assert b"You chose not to take part" in response.content
    p = Participant.objects.get()
    assert p.status == Participant.Status.DECLINED
    assert p.trials.count() == 0


def test_it_gives_each_condition_a_disjoint_sample_and_freezes_a_manifest():
    study = make_study(n_items=4)
    per_condition = {}
    for ci in study.condition_items.all():
        per_condition.setdefault(ci.condition_id, set()).add(ci.item_id)
    a, b = per_condition.values()
    assert len(a) == len(b) == 4 and not a & b
    assert study.status == Study.Status.LIVE
    assert len(study.manifest_hash) == 64
    assert study.manifest["study"]["slug"] == study.slug


def test_it_stores_the_deadline_when_the_item_is_first_shown_and_keeps_it_on_refresh(client):
    study = make_study(time_limit_s=60)
    p = enrol(client, study)
    first = client.get(trial_url(p, 0))
    assert first.status_code == 200
    trial = p.trials.get(position=0)
    deadline = trial.deadline_at
    assert deadline is not None
    assert (deadline - trial.shown_at) == timedelta(seconds=60)
    client.get(trial_url(p, 0))
    trial.refresh_from_db()
    assert trial.deadline_at == deadline
    assert Event.objects.filter(trial=trial, kind=Event.Kind.ITEM_SHOWN).count() == 1


def test_it_never_sends_the_gold_option_before_the_answer_is_committed(client):
    study = make_study(time_limit_s=600)
    p = enrol(client, study)
    trial = p.trials.select_related("item").get(position=0)
    csrf = re.compile(rb"[A-Za-z0-9]{64}")  # masked CSRF tokens differ per render

    def page_with_gold(gold_index):
        Item.objects.filter(pk=trial.item_id).update(gold_index=gold_index)
        forget_launched_studies()  # the page is rendered from the item as it is now, not as first read
        body = client.get(trial_url(p, 0)).content
        # Only the CSRF token and the ticking clock may differ between two renders.
        return re.sub(rb'data-seconds-left="[0-9.]+"|>\d+ s<', b"", csrf.sub(b"", body))

    # If any trace of the gold option reached the page, changing it would change the page.
    renders = {page_with_gold(g) for g in range(4)}
    assert len(renders) == 1
    assert b"correct answer" not in renders.pop().lower()


def test_it_records_a_manual_answer_and_scores_it(client):
    study = make_study()
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    trial = p.trials.select_related("item").get(position=0)
    response = client.post(trial_url(p, 0, "participant:submit"), {"choice": trial.item.gold_index, "confidence": "80"})
    assert response.status_code == 303
    trial.refresh_from_db()
    assert trial.status == Trial.Status.ANSWERED
    assert trial.choice == trial.item.gold_index and trial.confidence == 80 and trial.correct is True
    assert trial.submit_kind == Trial.SubmitKind.MANUAL


def test_it_treats_a_double_submit_as_one_answer(client):
    study = make_study()
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    client.post(trial_url(p, 0, "participant:submit"), {"choice": "1", "confidence": "60"})
    client.post(trial_url(p, 0, "participant:submit"), {"choice": "2", "confidence": "100"})
    trial = p.trials.get(position=0)
    assert (trial.choice, trial.confidence) == (1, 60)
    assert Event.objects.filter(trial=trial, kind=Event.Kind.SUBMITTED).count() == 1


def test_it_rejects_a_tampered_option_id_and_records_nothing(client):
    study = make_study()
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    for bad in ["7", "-1", "B", "1; drop table"]:
        response = client.post(trial_url(p, 0, "participant:submit"), {"choice": bad, "confidence": "60"})
        assert response.status_code == 400
        assert b"That option does not exist" in response.content
    trial = p.trials.get(position=0)
    assert trial.status == Trial.Status.SHOWN and trial.choice is None
    assert not Event.objects.filter(trial=trial, kind=Event.Kind.SUBMITTED).exists()


def test_it_rejects_a_confidence_out_of_range_and_records_nothing(client):
    study = make_study()
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    response = client.post(trial_url(p, 0, "participant:submit"), {"choice": "1", "confidence": "99"})
    assert response.status_code == 400
    assert b"five confidence levels" in response.content
    select = client.post(trial_url(p, 0, "participant:select"), {"confidence": "170"})
    assert select.status_code == 400
    trial = p.trials.get(position=0)
    assert trial.status == Trial.Status.SHOWN and trial.selected_confidence is None


def test_the_deadline_holds_against_a_late_post(client):
    study = make_study(time_limit_s=30)
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    client.post(trial_url(p, 0, "participant:select"), {"choice": "2", "confidence": "42"})
    Trial.objects.filter(participant=p, position=0).update(deadline_at=timezone.now() - timedelta(seconds=1))
    client.post(trial_url(p, 0, "participant:submit"), {"choice": "3", "confidence": "100"})
    trial = p.trials.get(position=0)
    assert trial.status == Trial.Status.TIMED_OUT
    assert (trial.choice, trial.confidence) == (2, 42)
    assert trial.submit_kind == Trial.SubmitKind.SERVER
    late = Event.objects.get(trial=trial, kind=Event.Kind.LATE_POST)
    assert late.data["choice"] == 3


def test_the_server_finalises_an_abandoned_trial_with_the_last_selection_it_saw(client):
    study = make_study(time_limit_s=30)
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    client.post(trial_url(p, 0, "participant:select"), {"choice": "1"})
    client.post(trial_url(p, 0, "participant:select"), {"choice": "3", "confidence": "60"})
    trial = p.trials.get(position=0)
    assert finalize_expired_trials(now=trial.deadline_at - timedelta(seconds=1)) == 0
    assert finalize_expired_trials(now=trial.deadline_at + timedelta(milliseconds=10)) == 1
    trial.refresh_from_db()
    assert (trial.status, trial.choice, trial.confidence) == (Trial.Status.TIMED_OUT, 3, 60)
    assert finalize_expired_trials(now=trial.deadline_at + timedelta(seconds=5)) == 0


def test_the_page_auto_submit_records_the_selection_as_a_timeout(client):
    study = make_study(time_limit_s=30)
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    client.post(trial_url(p, 0, "participant:submit"), {"choice": "0", "auto": "1"})
    trial = p.trials.get(position=0)
    assert (trial.status, trial.submit_kind, trial.choice) == (Trial.Status.TIMED_OUT, "auto", 0)


def test_one_participants_token_cannot_read_or_write_anothers_trial(client):
    study = make_study()
    alice = enrol(client, study, {"PROLIFIC_PID": "alice"})
    bob = enrol(client, study, {"PROLIFIC_PID": "bob"})
    bobs_trial = bob.trials.get(position=0)
    before = {f: getattr(bobs_trial, f) for f in ("status", "choice", "selected_choice", "submitted_at")}
    # Trials are addressed through the owner's token: there is no URL to another's trial.
    assert client.get(f"/s/p/{alice.token}/item/{bobs_trial.pk + 1000}/").status_code == 404
    assert client.get("/s/p/not-a-token/item/0/").status_code == 404
    assert client.post("/s/p/not-a-token/item/0/submit", {"choice": "1"}).status_code == 404
    assert client.post("/s/p/not-a-token/item/0/select", {"choice": "1"}).status_code == 404
    bobs_trial.refresh_from_db()
    assert {f: getattr(bobs_trial, f) for f in before} == before
    assert not Event.objects.filter(trial=bobs_trial).exclude(kind=Event.Kind.ITEM_SHOWN).exists()


def test_it_refuses_posts_to_a_closed_study(client):
    study = make_study()
    p = enrol(client, study)
    client.get(trial_url(p, 0))
    study_close(study=study)
    response = client.post(trial_url(p, 0, "participant:submit"), {"choice": "1", "confidence": "60"})
    assert response.status_code == 410
    assert b"This study has closed" in response.content
    assert p.trials.get(position=0).choice is None
    assert join(client, study, {"PROLIFIC_PID": "late"}).status_code == 410
    assert not Participant.objects.filter(external_id="prolific:late").exists()


def test_it_shows_the_completion_code_and_returns_prolific_participants_only_after_every_answer(client):
    study = make_study(n_items=1, prolific_completion_url="https://app.prolific.com/submissions/complete")
    p = enrol(client, study)
    assert client.get(reverse("participant:done", kwargs={"token": p.token})).status_code == 302
    for position in range(2):
        assert through_introductions(client, p) == trial_url(p, position)
        client.get(trial_url(p, position))
        client.post(trial_url(p, position, "participant:submit"), {"choice": "0", "confidence": "25"})
    response = client.get(reverse("participant:next", kwargs={"token": p.token}), follow=True)
    assert b"DONE-123" in response.content
    assert b"https://app.prolific.com/submissions/complete?cc=DONE-123" in response.content
    p.refresh_from_db()
    assert p.status == Participant.Status.COMPLETED
    assert Event.objects.filter(participant=p, kind=Event.Kind.COMPLETED).exists()


def test_it_screens_out_a_participant_who_fails_the_attention_checks(client):
    study = make_study(n_items=1, catch=1)
    p = enrol(client, study)
    for trial in p.trials.select_related("item").order_by("position"):
        assert through_introductions(client, p) == trial_url(p, trial.position)
        client.get(trial_url(p, trial.position))
        wrong = (trial.item.gold_index + 1) % 4
        client.post(trial_url(p, trial.position, "participant:submit"), {"choice": wrong, "confidence": "60"})
    response = client.get(reverse("participant:next", kwargs={"token": p.token}), follow=True)
    assert b"SCREEN-9" in response.content
    p.refresh_from_db()
    assert p.status == Participant.Status.SCREENED_OUT


def test_it_reveals_the_gold_option_only_after_the_answer_when_the_study_says_so(client):
    study = make_study(reveal_gold=True)
    p = enrol(client, study)
    feedback = trial_url(p, 0, "participant:feedback")
    client.get(trial_url(p, 0))
    assert client.get(feedback).status_code == 302  # not yet answered
    response = client.post(trial_url(p, 0, "participant:submit"), {"choice": "0", "confidence": "60"})
    assert response["Location"] == feedback
    body = client.get(feedback).content.decode()
    assert "correct answer" in body


def test_it_counterbalances_condition_order_across_participants(client):
    study = make_study(order=Study.Order.COUNTERBALANCED)
    orders = [enrol(client, study, {"pid": f"p{i}"}).condition_order for i in range(4)]
    assert orders[0] == orders[2] and orders[1] == orders[3] and orders[0] != orders[1]
    assert orders[0] == list(reversed(orders[1]))


def test_it_balances_a_between_subject_design(client):
    study = make_study(design=Study.Design.BETWEEN)
    firsts = [enrol(client, study, {"pid": f"p{i}"}).condition_order for i in range(6)]
    assert all(len(order) == 1 for order in firsts)
    counts = {}
    for (cid,) in firsts:
        counts[cid] = counts.get(cid, 0) + 1
    assert sorted(counts.values()) == [3, 3]


def test_it_records_page_visibility_events(client):
    study = make_study()
    p = enrol(client, study)
    assert (
        client.post(
            reverse("participant:event", kwargs={"token": p.token}), {"kind": "hidden", "position": "0"}
        ).status_code
        == 204
    )
    assert client.post(reverse("participant:event", kwargs={"token": p.token}), {"kind": "bogus"}).status_code == 400
    assert Event.objects.filter(participant=p, kind=Event.Kind.PAGE_HIDDEN, trial__position=0).exists()


def test_the_trial_pages_answer_only_their_methods(client):
    study = make_study()
    p = enrol(client, study)
    assert client.post(trial_url(p, 0)).status_code == 405
    assert client.get(trial_url(p, 0, "participant:submit")).status_code == 405
    assert client.get(trial_url(p, 0, "participant:select")).status_code == 405
