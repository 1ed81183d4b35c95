"""Running a protocol study in the console: the monitor shows the round each judge is on, and the participant's
transcript page shows the whole debate, with which answer was gold and which side argued it — for researchers
who are not blind to it."""

import pytest
from django.urls import reverse

from oversight.assistant.selfplay import generate_transcript
from oversight.core.models import Collaborator
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
from tests.factories import make_protocol_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(alice, bob):
    study = make_protocol_study(slug="run", conditions=(("debate", {"rounds": 2}),), n_items=1, owner=alice)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    participant = participant_join(study=study, params={"pid": "judge"}, consent=True)
    trial = trial_show(trial=participant.trials.get())
    return study, participant, trial


def monitor(client, study):
    return client.get(reverse("console:monitor", kwargs={"slug": study.slug})).content.decode()


def transcript_page(client, study, participant):
    url = reverse("console:transcript", kwargs={"slug": study.slug, "participant_id": participant.pk})
    return client.get(url).content.decode()


def test_the_monitor_shows_the_round_each_judge_is_on(client, judged, alice):
    study, _, trial = judged
    client.force_login(alice)
    assert "round 1 of 2" in monitor(client, study)
    generate_transcript(trial.transcript_id)
    assert "over after 2 of 2 rounds" in monitor(client, study)


def test_the_transcript_page_shows_the_whole_debate_and_which_side_was_right(client, judged, alice):
    study, participant, trial = judged
    generate_transcript(trial.transcript_id)
    trial.refresh_from_db()
    client.force_login(alice)
    page = transcript_page(client, study, participant)
    assert page.count('class="turn turn-advocate"') == 4 and "Debater A" in page and "Debater B" in page
    gold = "AB"[trial.transcript.options.index(trial.item.gold_index)]
    assert f"correct: {gold}</span>" in page
    assert f"Debater {gold} argued {gold} (right)" in page
    assert "Debater A argued A" in page and "Debater B argued B" in page


def test_a_blind_collaborator_reads_the_debate_but_not_which_side_was_right(client, judged, bob):
    study, participant, trial = judged
    generate_transcript(trial.transcript_id)
    Collaborator.objects.filter(user=bob).update(blind=True)
    client.force_login(bob)
    page = transcript_page(client, study, participant)
    assert page.count('class="turn turn-advocate"') == 4
    assert "correct:" not in page and "(right)" not in page
