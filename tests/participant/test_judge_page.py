"""A protocol trial's page (consultancy, debate, …) for its judge: the question, the two answers and the
transcript as stored, never the item's other options, the story or anything that says which answer is gold or
which advocate argued it; the judge's probability stored with the answer; the server's deadline as on any item."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from oversight.assistant.debate import transcript_advance, turn_finish
from oversight.assistant.selfplay import generate_transcript
from oversight.banks.models import Item
from oversight.core.launched import forget_launched_studies
from oversight.core.models import Event, Transcript, Trial
from oversight.core.protocols import PROTOCOL_KINDS
from tests.assistant.test_render import DANGEROUS_LINKS, RAW_HTML, assert_inert
from tests.factories import make_protocol_study
from tests.participant.helpers import HX, enrol, item_url, url

pytestmark = pytest.mark.django_db

CSRF = re.compile(rb"[A-Za-z0-9]{64}")  # masked CSRF tokens differ per render
CLOCK = re.compile(rb'data-seconds-left="[0-9.]+"|>\d+ s<')


def judge(client, kind="debate", *, time_limit_s=600, **protocol):
    """A participant on their first protocol trial (shown, its clock running)."""
    study = make_protocol_study(
        slug=kind.replace("_", "-"),
        conditions=((kind, protocol),),
        n_items=1,
        time_limit_s=time_limit_s,
        simulation={"quote_rate": 1.0},
    )
    p = enrol(client, study)
    trial = p.trials.get(transcript__isnull=False)
    response = client.get(item_url(p, trial.position))
    assert response.status_code == 200
    trial.refresh_from_db()
    return p, trial, response


def written(trial):
    """The transcript's turns, written as the judge's socket would have them written."""
    generate_transcript(trial.transcript_id)
    trial.refresh_from_db()
    return trial


def page(client, p, trial) -> bytes:
    body = client.get(item_url(p, trial.position)).content
    return CLOCK.sub(b"", CSRF.sub(b"", body))


def test_it_shows_the_question_the_two_answers_and_the_transcript_and_nothing_else_of_the_item(client):
    p, trial, _ = judge(client)
    trial = written(trial)
    body = client.get(item_url(p, trial.position)).content.decode()
    item = trial.item
    shown = trial.transcript.options
    for i, option in enumerate(item.options):
        assert (option in body) == (i in shown)  # the two answers of the reduction, never the other two
    assert body.index(item.options[shown[0]]) < body.index(item.options[shown[1]])  # A, then B, as the transcript
    assert item.text in body and '<p class="context-line">Debate</p>' in body
    assert "Debater A" in body and "Debater B" in body and body.count('class="turn turn-advocate"') == 6
    # The story stays hidden by default (an advocate's verified quote of it may be on the page, the story not).
    assert 'class="story"' not in body and 'class="story-text"' not in body
    assert 'data-ws-path="/ws/judge/' in body and 'name="p_first"' in body
    assert 'name="choice"' not in body  # the judge answers with a probability, not the four-option radio


def test_the_story_is_on_the_page_when_the_condition_shows_it(client):
    _, _, response = judge(client, "consultancy", judge_sees_story=True)
    assert "The survey ship" in response.content.decode() and 'class="story-text"' in response.content.decode()


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
def test_the_page_is_the_same_whichever_of_the_two_answers_is_gold(client, kind):
    p, trial, _ = judge(client, kind)
    trial = written(trial)
    first, second = trial.transcript.options

    def page_with_gold(gold_index):
        Item.objects.filter(pk=trial.item_id).update(gold_index=gold_index)
        forget_launched_studies()
        return page(client, p, trial)

    # If any trace of the gold answer, or of which side argued it, reached the page, changing it would show.
    with_first = page_with_gold(first)
    assert page_with_gold(second) == with_first
    text = with_first.decode().lower()
    for word in ("correct answer", "gold", "honest", "distractor", "assigned", "thinking", "scratchpad", "argues"):
        assert word not in text


def test_a_static_transcript_is_read_whole_without_a_socket(client):
    p, trial, response = judge(client, "debate", transcripts="static", rounds=2)
    body = response.content.decode()
    assert trial.transcript.shared and body.count('class="turn turn-advocate"') == 4
    assert "data-ws-path" not in body and "judge.js" not in body


def test_the_judges_probability_is_stored_with_the_answer_it_leans_to(client):
    p, trial, _ = judge(client)
    first, second = trial.transcript.options
    response = client.post(item_url(p, trial.position, "submit"), {"p_first": "30"})
    assert response.status_code == 303
    trial.refresh_from_db()
    assert trial.status == Trial.Status.ANSWERED and trial.submit_kind == Trial.SubmitKind.MANUAL
    assert trial.choice == second and trial.confidence == 70
    expected = [0.0] * len(trial.item.options)
    expected[first], expected[second] = 30.0, 70.0
    assert trial.distribution == expected
    assert trial.correct == (trial.item.gold_index == second)


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({}, "Please move the slider to say which answer is more likely."),
        ({"p_first": ""}, "Please move the slider to say which answer is more likely."),
        ({"p_first": "50"}, "At 50% neither answer is more likely"),
        ({"p_first": "100"}, "between 1% and 99%"),
        ({"p_first": "nan"}, "must be a number"),
    ],
)
def test_an_answer_without_a_leaning_is_refused_and_recorded(client, posted, message):
    p, trial, _ = judge(client)
    response = client.post(item_url(p, trial.position, "submit"), posted)
    assert response.status_code == 400 and message in response.content.decode()
    trial.refresh_from_db()
    assert trial.status == Trial.Status.SHOWN
    assert Event.objects.filter(trial=trial, kind=Event.Kind.ANSWER_REFUSED).count() == 1


def test_a_selection_is_kept_and_the_refreshed_page_shows_it(client):
    p, trial, _ = judge(client)
    state = client.post(item_url(p, trial.position, "select"), {"p_first": "80"}).json()
    assert state["selected_choice"] == trial.transcript.options[0] and state["selected_confidence"] == 80
    body = client.get(item_url(p, trial.position)).content.decode()
    assert 'id="p-first" value="80"' in body and "A: 80%" in body and "B: 20%" in body


def test_at_the_deadline_the_selected_probability_is_what_is_recorded(client):
    p, trial, _ = judge(client, time_limit_s=60)
    first = trial.transcript.options[0]
    client.post(item_url(p, trial.position, "select"), {"p_first": "65"})
    # The page's own submission at zero posts what is selected, marked auto.
    response = client.post(item_url(p, trial.position, "submit"), {"p_first": "65", "auto": "1"})
    assert response.status_code == 303
    trial.refresh_from_db()
    assert trial.status == Trial.Status.TIMED_OUT and trial.submit_kind == Trial.SubmitKind.AUTO
    assert (trial.choice, trial.confidence, trial.distribution[first]) == (first, 65, 65)


def test_an_answer_before_the_last_round_ends_the_debate_early_as_the_judges(client):
    p, trial, _ = judge(client, rounds=3)
    jobs = transcript_advance(transcript_id=trial.transcript_id).jobs  # round 1 is being written
    assert client.post(item_url(p, trial.position, "submit"), {"p_first": "60"}).status_code == 303
    for job in jobs:  # its turns end; the transcript's next step finds the trial answered
        turn_finish(message_id=job.message_id, text="An argument.", status="complete")
    assert transcript_advance(transcript_id=trial.transcript_id).jobs == []
    transcript = Transcript.objects.get(pk=trial.transcript_id)
    assert (transcript.status, transcript.ended_by, transcript.rounds_done) == ("complete", "judge", 1)


def test_an_answer_after_the_last_turn_is_written_leaves_the_debate_ended_by_its_rounds(client):
    p, trial, _ = judge(client, rounds=1)
    for job in transcript_advance(transcript_id=trial.transcript_id).jobs:
        turn_finish(message_id=job.message_id, text="An argument.", status="complete")
    client.post(item_url(p, trial.position, "submit"), {"p_first": "60"})  # before the step that would end it
    transcript_advance(transcript_id=trial.transcript_id)
    assert Transcript.objects.get(pk=trial.transcript_id).ended_by == "rounds"


def test_a_slider_moved_back_to_fifty_percent_leans_to_neither_answer_at_the_deadline(client):
    p, trial, _ = judge(client, time_limit_s=60)
    client.post(item_url(p, trial.position, "select"), {"p_first": "70"})
    state = client.post(item_url(p, trial.position, "select"), {"p_first": "50"}).json()
    assert state["selected_choice"] is None and state["selected_confidence"] == 50
    Trial.objects.filter(pk=trial.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    client.get(item_url(p, trial.position))
    trial.refresh_from_db()
    assert trial.status == Trial.Status.TIMED_OUT and trial.choice is None and trial.correct is not True


def test_when_the_page_was_closed_at_the_deadline_the_server_records_the_last_selection(client):
    p, trial, _ = judge(client, time_limit_s=60)
    client.post(item_url(p, trial.position, "select"), {"p_first": "20"})
    Trial.objects.filter(pk=trial.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    client.get(item_url(p, trial.position))
    trial.refresh_from_db()
    assert trial.status == Trial.Status.TIMED_OUT and trial.submit_kind == Trial.SubmitKind.SERVER
    assert (trial.choice, trial.confidence) == (trial.transcript.options[1], 80)


def test_the_page_with_a_socket_is_entered_by_a_full_page_load_and_its_forms_are_not_boosted(client):
    study = make_protocol_study(slug="mixed", conditions=(("debate", {}),), n_items=1, time_limit_s=600)
    p = enrol(client, study)
    trial = p.trials.get(transcript__isnull=False)
    # From the step before it (htmx asking for where the participant is), the page is loaded in full.
    response = client.get(url("next", p), headers=HX)
    assert response.status_code == 200 and response["HX-Redirect"] == item_url(p, trial.position)
    assert 'hx-boost="true"' not in client.get(item_url(p, trial.position)).content.decode()


@pytest.mark.parametrize("payload", [source for source, _visible in RAW_HTML] + DANGEROUS_LINKS)
def test_an_advocates_hostile_output_is_inert_on_the_judges_page(client, payload):
    p, trial, _ = judge(client, rounds=1)
    jobs = transcript_advance(transcript_id=trial.transcript_id).jobs
    turn_finish(
        message_id=jobs[0].message_id, text=f"Before {payload} after <quote>{payload}</quote>", status="complete"
    )
    turn_finish(message_id=jobs[1].message_id, text=f"<thinking>{payload}</thinking>{payload}", status="complete")
    body = client.get(item_url(p, trial.position)).content.decode()
    pane = body[body.index('<ol class="turns"') : body.index("</ol>", body.index('<ol class="turns"'))]
    assert_inert(pane)
    assert Transcript.objects.get(pk=trial.transcript_id).turns.count() == 2
