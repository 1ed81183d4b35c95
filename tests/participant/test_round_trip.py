"""One round trip per answer: with htmx the answer's response is the next step's page; without JavaScript the
same POST redirects (303) straight to it. Refresh, back and resume land where the server says."""

import re

import pytest

from oversight.core.models import Event, Participant, Trial
from tests.factories import make_study
from tests.participant.helpers import HX, enrol, item_url, join, make_unaided_study, url

pytestmark = pytest.mark.django_db

ANSWER = {"choice": "1", "confidence": "60"}


def question_of(p, position) -> str:
    return p.trials.select_related("item").get(position=position).item.text


def test_an_answer_sent_by_htmx_comes_back_with_the_next_item_and_its_address(client):
    study = make_unaided_study(n_items=2, time_limit_s=60)
    p = enrol(client, study)
    response = client.post(item_url(p, 0, "submit"), ANSWER, headers=HX)
    assert response.status_code == 200
    assert response["HX-Push-Url"] == item_url(p, 1)
    assert question_of(p, 1) in response.content.decode()
    assert 'id="answer-form"' in response.content.decode()
    first, second = p.trials.order_by("position")[:2]
    assert first.status == Trial.Status.ANSWERED
    # Shown in the same transaction as the answer: the page in the response has its clock running.
    assert second.status == Trial.Status.SHOWN and second.shown_at == first.submitted_at
    seconds = float(re.search(r'data-seconds-left="([0-9.]+)"', response.content.decode()).group(1))
    assert 59 < seconds <= 60


def test_without_javascript_an_answer_redirects_straight_to_the_next_item(client):
    study = make_unaided_study(n_items=2)
    p = enrol(client, study)
    response = client.post(item_url(p, 0, "submit"), ANSWER)
    assert (response.status_code, response["Location"]) == (303, item_url(p, 1))  # no detour through `next`
    page = client.get(response["Location"])
    assert page.status_code == 200 and question_of(p, 1) in page.content.decode()
    assert "HX-Push-Url" not in page


def test_the_pages_without_the_chat_are_boosted_and_a_page_with_it_is_not(client):
    study = make_study(n_items=1)
    p = enrol(client, study)
    assisted = client.get(item_url(p, 0)).content.decode()
    assert 'id="chat"' in assisted and "hx-boost" not in assisted
    client.post(item_url(p, 0, "submit"), ANSWER)
    transition = client.get(url("block", p, number=2)).content.decode()
    assert 'hx-boost="true"' in transition and 'hx-select="main"' in transition


def test_a_next_page_with_the_chat_is_loaded_in_full(client):
    study = make_study(n_items=2)  # the assisted condition comes first
    p = enrol(client, study)
    response = client.post(item_url(p, 0, "submit"), ANSWER, headers=HX)
    assert response.status_code == 200 and response["HX-Redirect"] == item_url(p, 1)
    assert response.content == b""
    assert p.trials.get(position=1).status == Trial.Status.SHOWN


def test_the_done_page_is_loaded_in_full_so_its_return_to_prolific_runs(client):
    study = make_unaided_study(n_items=1, prolific_completion_url="https://app.prolific.com/submissions/complete")
    p = enrol(client, study)
    client.post(item_url(p, 0, "submit"), ANSWER, headers=HX)
    client.post(url("block", p, number=2), headers=HX)
    response = client.post(item_url(p, 1, "submit"), ANSWER, headers=HX)
    assert response["HX-Redirect"] == url("done", p)
    p.refresh_from_db()
    assert p.status == Participant.Status.COMPLETED
    assert 'http-equiv="refresh"' in client.get(url("done", p)).content.decode()


def test_feedback_comes_in_the_answer_s_response_and_its_next_link_brings_the_next_item(client):
    study = make_unaided_study(n_items=2, reveal_gold=True)
    p = enrol(client, study)
    response = client.post(item_url(p, 0, "submit"), ANSWER, headers=HX)
    assert response["HX-Push-Url"] == item_url(p, 0, "feedback")
    assert "correct answer" in response.content.decode()
    assert p.trials.get(position=1).status == Trial.Status.PENDING  # not before the participant moves on
    following = client.get(url("next", p), headers=HX)
    assert following.status_code == 200 and following["HX-Push-Url"] == item_url(p, 1)
    assert question_of(p, 1) in following.content.decode()
    assert p.trials.get(position=1).status == Trial.Status.SHOWN


def test_consent_and_each_introduction_answer_with_the_next_page_too(client):
    study = make_unaided_study(instructions="Read this first.")
    response = join(client, study, headers=HX)
    p = Participant.objects.get()
    assert response["HX-Push-Url"] == url("instructions", p) and "Read this first." in response.content.decode()
    response = client.post(url("instructions", p), headers=HX)
    assert response["HX-Push-Url"] == item_url(p, 0) and question_of(p, 0) in response.content.decode()


def test_a_refresh_after_the_round_trip_shows_the_same_item_with_the_same_clock(client):
    study = make_unaided_study(n_items=2, time_limit_s=60)
    p = enrol(client, study)
    client.post(item_url(p, 0, "submit"), ANSWER, headers=HX)
    deadline = p.trials.get(position=1).deadline_at
    again = client.get(item_url(p, 1))
    assert again.status_code == 200 and question_of(p, 1) in again.content.decode()
    assert p.trials.get(position=1).deadline_at == deadline
    assert Event.objects.filter(trial__position=1, trial__participant=p, kind=Event.Kind.ITEM_SHOWN).count() == 1
    seconds = float(re.search(r'data-seconds-left="([0-9.]+)"', again.content.decode()).group(1))
    assert 0 < seconds <= 60


def test_going_back_to_an_answered_item_lands_on_the_current_step(client):
    study = make_unaided_study(n_items=3)
    p = enrol(client, study)
    client.post(item_url(p, 0, "submit"), ANSWER, headers=HX)
    # The browser's back button reloads the old address (the pages keep no snapshots): the server decides.
    back = client.get(item_url(p, 0))
    assert (back.status_code, back["Location"]) == (302, item_url(p, 1))
    assert client.get(item_url(p, 2))["Location"] == item_url(p, 1)  # nor can one skip ahead


def test_an_answer_replayed_from_an_old_page_changes_nothing_and_shows_the_current_step(client):
    study = make_unaided_study(n_items=3)
    p = enrol(client, study)
    client.post(item_url(p, 0, "submit"), ANSWER, headers=HX)
    replay = client.post(item_url(p, 0, "submit"), {"choice": "3", "confidence": "100"}, headers=HX)
    assert replay.status_code == 200 and replay["HX-Push-Url"] == item_url(p, 1)
    first = p.trials.get(position=0)
    assert (first.choice, first.confidence) == (1, 60)
    assert Event.objects.filter(trial=first, kind=Event.Kind.SUBMITTED).count() == 1
    assert not Event.objects.filter(trial=first, kind=Event.Kind.LATE_POST).exists()


def test_the_auto_submit_at_zero_takes_the_same_round_trip(client):
    study = make_unaided_study(n_items=2, time_limit_s=30)
    p = enrol(client, study)
    response = client.post(item_url(p, 0, "submit"), {"choice": "2", "auto": "1"}, headers=HX)
    assert response.status_code == 200 and response["HX-Push-Url"] == item_url(p, 1)
    assert "your selected answer was submitted" in response.content.decode()
    first = p.trials.get(position=0)
    assert (first.status, first.submit_kind, first.choice) == (Trial.Status.TIMED_OUT, "auto", 2)


def test_a_refused_answer_comes_back_with_its_message_and_keeps_the_address(client):
    study = make_unaided_study()
    p = enrol(client, study)
    response = client.post(item_url(p, 0, "submit"), {"confidence": "60"}, headers=HX)
    assert response.status_code == 400 and response["HX-Push-Url"] == "false"
    assert "Please choose an answer before submitting." in response.content.decode()
    assert p.trials.get(position=0).status == Trial.Status.SHOWN
    refused = Event.objects.get(participant=p, kind=Event.Kind.ANSWER_REFUSED)
    assert refused.data == {"reason": "Please choose an answer before submitting.", "posted": {"confidence": "60"}}


def test_declining_with_htmx_shows_the_thanks_at_the_participant_s_own_address(client):
    study = make_unaided_study()
    response = join(client, study, {"pid": "no-thanks"}, consent="no", headers=HX)
    p = Participant.objects.get()
    assert "You chose not to take part" in response.content.decode()
    assert response["HX-Push-Url"] == url("next", p)
    assert "You chose not to take part" in client.get(url("next", p)).content.decode()


def test_the_page_in_an_htmx_answer_is_its_title_and_main_without_the_document_around_them(client):
    study = make_unaided_study(n_items=2)
    p = enrol(client, study)
    page = client.post(item_url(p, 0, "submit"), ANSWER, headers=HX).content.decode()
    assert page.lstrip().startswith("<title>Question 2 of ")
    assert '<main class="participant-main">' in page and 'id="answer-form"' in page
    assert re.search(r"<(!doctype|html|head|body|script)[\s>]", page, re.I) is None


def test_htmx_restoring_its_history_from_the_server_gets_the_whole_page(client):
    study = make_unaided_study(n_items=2)
    p = enrol(client, study)
    response = client.get(url("next", p), headers={**HX, "HX-History-Restore-Request": "true"})
    page = response.content.decode()
    assert response.status_code == 200 and page.startswith("<!doctype html>")
    assert "<script" in page and 'id="answer-form"' in page
