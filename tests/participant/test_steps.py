"""Instructions, the comprehension check, block introductions and transitions, and the time's-up notice."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from oversight.core.models import Event, Participant, Study, Trial
from oversight.core.services.trials import finalize_expired_trials
from tests.factories import make_study
from tests.participant.helpers import (
    CHECK,
    enrol,
    item_url,
    make_study_with_steps,
    make_unaided_study,
    right_answers,
    url,
)

pytestmark = pytest.mark.django_db

ANSWER = {"choice": "0", "confidence": "60"}


def answer(client, p, position, data=ANSWER):
    return client.post(item_url(p, position, "submit"), data)


def kinds(p) -> list[str]:
    return list(Event.objects.filter(participant=p).order_by("at", "id").values_list("kind", flat=True))


# --- Instructions ------------------------------------------------------------------------------------------


def test_it_shows_the_instructions_after_consent_and_before_the_first_item(client):
    study = make_study(instructions="Take your time.\n\nNo search engines, please.")
    p = enrol(client, study)
    assert url("next", p) != url("instructions", p)
    assert client.get(url("next", p))["Location"] == url("instructions", p)
    assert client.get(item_url(p, 0))["Location"] == url("instructions", p)  # no way round them
    page = client.get(url("instructions", p)).content.decode()
    assert "<h1>Instructions</h1>" in page and "No search engines, please." in page
    assert p.trials.get(position=0).status == Trial.Status.PENDING

    response = client.post(url("instructions", p))
    assert (response.status_code, response["Location"]) == (303, item_url(p, 0))
    p.refresh_from_db()
    assert p.instructions_read_at is not None
    assert kinds(p)[-2:] == [Event.Kind.INSTRUCTIONS_READ, Event.Kind.ITEM_SHOWN]


def test_reading_the_instructions_twice_records_it_once_and_a_refresh_lands_on_the_same_step(client):
    study = make_study(instructions="Read carefully.")
    p = enrol(client, study)
    assert client.get(url("next", p))["Location"] == client.get(url("next", p))["Location"] == url("instructions", p)
    client.post(url("instructions", p))
    second = client.post(url("instructions", p))
    assert second["Location"] == item_url(p, 0)
    assert client.get(url("instructions", p))["Location"] == item_url(p, 0)
    assert kinds(p).count(Event.Kind.INSTRUCTIONS_READ) == 1
    assert kinds(p).count(Event.Kind.ITEM_SHOWN) == 1


def test_a_study_without_instructions_goes_straight_to_its_first_item(client):
    p = enrol(client, make_study())
    assert client.get(url("next", p))["Location"] == item_url(p, 0)
    assert client.get(url("instructions", p))["Location"] == item_url(p, 0)


def test_participants_already_answering_are_not_sent_back_to_new_instructions(client):
    study = make_study()
    p = enrol(client, study)
    client.get(item_url(p, 0))
    Study.objects.filter(pk=study.pk).update(instructions="Added later.", comprehension_questions=CHECK)
    assert client.get(url("next", p))["Location"] == item_url(p, 0)


# --- The comprehension check -----------------------------------------------------------------------------


def test_the_check_comes_after_the_instructions_and_needs_every_answer_right(client):
    study = make_study_with_steps()
    p = enrol(client, study)
    assert client.post(url("instructions", p))["Location"] == url("check", p)
    page = client.get(url("check", p)).content.decode()
    assert "A quick check" in page and CHECK[0]["question"] in page and "Attempts left: 2 of 2" in page

    wrong = client.post(url("check", p), {"q0": "1", "q1": "0"})
    assert wrong.status_code == 200
    assert "1 of 2 answers is not right yet" in wrong.content.decode()
    assert "Attempts left: 1 of 2" in wrong.content.decode()
    attempt = Event.objects.get(participant=p, kind=Event.Kind.COMPREHENSION_ATTEMPT)
    assert attempt.data == {"attempt": 1, "answers": [1, 0], "wrong": [1], "passed": False}

    right = client.post(url("check", p), right_answers())
    assert (right.status_code, right["Location"]) == (303, url("block", p, number=1))
    p.refresh_from_db()
    assert p.comprehension_attempts == 2 and p.comprehension_passed_at is not None
    last = Event.objects.filter(participant=p, kind=Event.Kind.COMPREHENSION_ATTEMPT).order_by("id").last()
    assert last.data["passed"] is True
    assert client.get(url("check", p))["Location"] == url("block", p, number=1)


def test_the_last_failed_attempt_screens_the_participant_out_with_the_screen_out_code(client):
    study = make_study_with_steps(comprehension_max_attempts=2)
    p = enrol(client, study)
    client.post(url("instructions", p))
    client.post(url("check", p), {"q0": "0", "q1": "1"})
    response = client.post(url("check", p), {"q0": "0", "q1": "1"})
    assert (response.status_code, response["Location"]) == (303, url("done", p))
    p.refresh_from_db()
    assert p.status == Participant.Status.SCREENED_OUT and p.comprehension_attempts == 2
    screened = Event.objects.get(participant=p, kind=Event.Kind.SCREENED_OUT)
    assert screened.data == {"reason": "comprehension", "attempts": 2}
    done = client.get(url("done", p)).content.decode()
    assert "SCREEN-9" in done and "did not match the instructions" in done
    # Nothing more can be done: no attempt, no item.
    assert client.post(url("check", p), right_answers())["Location"] == url("done", p)
    assert client.get(item_url(p, 0))["Location"] == url("done", p)
    assert not p.trials.exclude(status=Trial.Status.PENDING).exists()
    assert Event.objects.filter(participant=p, kind=Event.Kind.COMPREHENSION_ATTEMPT).count() == 2


def test_an_incomplete_or_tampered_check_is_refused_and_is_not_an_attempt(client):
    study = make_study_with_steps()
    p = enrol(client, study)
    client.post(url("instructions", p))
    for data, message in [
        ({"q0": "1"}, "Please answer every question."),
        ({"q0": "1", "q1": "7"}, "That option does not exist."),
        ({"q0": "x", "q1": "1"}, "That option does not exist."),
        ({"q0": "-1", "q1": "1"}, "That option does not exist."),
    ]:
        response = client.post(url("check", p), data)
        assert response.status_code == 400 and message in response.content.decode()
    p.refresh_from_db()
    assert p.comprehension_attempts == 0
    assert not Event.objects.filter(participant=p, kind=Event.Kind.COMPREHENSION_ATTEMPT).exists()


# --- Blocks -------------------------------------------------------------------------------------------------


def test_each_block_starts_with_its_condition_s_instructions_and_the_second_with_a_transition(client):
    study = make_study_with_steps(comprehension_questions=[], n_items=2)
    p = enrol(client, study)
    client.post(url("instructions", p))
    first = client.get(url("block", p, number=1)).content.decode()
    assert "Part 1 of 2 — With the AI assistant" in first and "Chat if you like." in first
    assert "done." not in first
    assert client.post(url("block", p, number=1))["Location"] == item_url(p, 0)
    answer(client, p, 0)
    assert answer(client, p, 1)["Location"] == url("block", p, number=2)
    assert p.trials.get(position=2).status == Trial.Status.PENDING  # its clock has not started
    second = client.get(url("block", p, number=2)).content.decode()
    assert "Part 1 of 2 done." in second and "Next: Part 2 of 2 — On your own" in second
    assert "On your own now." in second
    assert client.get(item_url(p, 2))["Location"] == url("block", p, number=2)
    assert client.post(url("block", p, number=2))["Location"] == item_url(p, 2)
    started = Event.objects.filter(participant=p, kind=Event.Kind.BLOCK_STARTED).order_by("id")
    assert [e.data["block"] for e in started] == [1, 2]
    assert [e.data["condition_id"] for e in started] == p.condition_order


def test_a_block_is_started_once_and_not_before_its_turn(client):
    study = make_study_with_steps(comprehension_questions=[], n_items=1)
    p = enrol(client, study)
    client.post(url("instructions", p))
    assert client.post(url("block", p, number=2))["Location"] == url("block", p, number=1)  # not yet
    client.post(url("block", p, number=1))
    client.post(url("block", p, number=1))
    assert Event.objects.filter(participant=p, kind=Event.Kind.BLOCK_STARTED).count() == 1
    assert client.get(url("block", p, number=1))["Location"] == item_url(p, 0)


def test_a_transition_separates_the_blocks_even_without_instructions(client):
    study = make_study(n_items=1)
    p = enrol(client, study)
    assert client.get(url("next", p))["Location"] == item_url(p, 0)  # the first block has nothing to say
    assert answer(client, p, 0)["Location"] == url("block", p, number=2)
    page = client.get(url("block", p, number=2)).content.decode()
    assert "Part 1 of 2 done." in page and "Next: Part 2 of 2 — On your own" in page


def test_practice_items_come_first_and_the_first_block_says_the_practice_is_over(client):
    study = make_study(n_items=1, practice=1)
    p = enrol(client, study)
    practice = p.trials.get(position=0)
    assert practice.role == "practice"
    assert "practice (not scored)" in client.get(item_url(p, 0)).content.decode()
    assert answer(client, p, 0)["Location"] == url("block", p, number=1)
    page = client.get(url("block", p, number=1)).content.decode()
    assert "That was the last practice question" in page


def test_a_between_subject_participant_reads_their_condition_s_instructions_without_parts(client):
    study = make_study_with_steps(comprehension_questions=[], instructions="", design=Study.Design.BETWEEN)
    p = enrol(client, study)
    assert client.get(url("next", p))["Location"] == url("block", p, number=1)
    page = client.get(url("block", p, number=1)).content.decode()
    assert "Part 1" not in page and ("Chat if you like." in page or "On your own now." in page)


def test_the_manifest_freezes_the_instructions_the_check_and_each_block_s_instructions():
    study = make_study_with_steps(comprehension_max_attempts=3)
    frozen = study.manifest
    assert frozen["study"]["instructions"] == "Read each question, then answer."
    assert frozen["study"]["comprehension_questions"] == CHECK
    assert frozen["study"]["comprehension_max_attempts"] == 3
    assert [c["instructions"] for c in frozen["conditions"]] == ["Chat if you like.", "On your own now."]


# --- Time's up ----------------------------------------------------------------------------------------------


def _expire(p, position):
    Trial.objects.filter(participant=p, position=position).update(deadline_at=timezone.now() - timedelta(seconds=1))


TIMES_UP_SELECTED = "Time's up on the last question — your selected answer was submitted."
TIMES_UP_NONE = "Time's up on the last question — no answer was selected, so none was recorded."


def test_the_page_after_an_item_the_clock_ended_says_the_selection_was_submitted(client):
    study = make_unaided_study(time_limit_s=60)
    p = enrol(client, study)
    client.post(item_url(p, 0, "select"), {"choice": "2"})
    _expire(p, 0)
    assert finalize_expired_trials() == 1
    page = client.get(client.get(url("next", p))["Location"]).content.decode()
    assert TIMES_UP_SELECTED in page
    # Only on the first page after it: the next item does not repeat it.
    answer(client, p, 1)
    assert "Time's up" not in client.get(item_url(p, 2)).content.decode()


def test_the_page_after_an_item_that_ran_out_empty_says_nothing_was_recorded(client):
    study = make_unaided_study(time_limit_s=60)
    p = enrol(client, study)
    _expire(p, 0)
    response = client.get(item_url(p, 0))  # the participant comes back after the deadline
    assert response["Location"] == url("next", p)
    page = client.get(item_url(p, 1)).content.decode()
    assert TIMES_UP_NONE in page
    assert p.trials.get(position=0).status == Trial.Status.TIMED_OUT


def test_the_page_s_own_submission_at_zero_is_announced_on_the_next_page_too(client):
    study = make_unaided_study(time_limit_s=60, n_items=1)
    p = enrol(client, study)
    response = answer(client, p, 0, {"choice": "3", "auto": "1"})
    assert response["Location"] == url("block", p, number=2)
    assert "Time's up on the last question" in client.get(url("block", p, number=2)).content.decode()


def test_with_feedback_the_feedback_page_says_time_is_up_instead(client):
    study = make_unaided_study(time_limit_s=60, reveal_gold=True)
    p = enrol(client, study)
    response = answer(client, p, 0, {"choice": "1", "auto": "1"})
    assert response["Location"] == item_url(p, 0, "feedback")
    assert "Time's up — your selected answer was submitted." in client.get(response["Location"]).content.decode()
    assert "Time's up" not in client.get(client.get(url("next", p))["Location"]).content.decode()


def test_the_done_page_says_so_when_the_last_item_ran_out(client):
    study = make_unaided_study(time_limit_s=60, n_items=1)
    p = enrol(client, study)
    answer(client, p, 0)
    client.post(url("block", p, number=2))
    assert answer(client, p, 1, {"auto": "1"})["Location"] == url("done", p)
    page = client.get(url("done", p)).content.decode()
    assert "DONE-123" in page and TIMES_UP_NONE in page


def test_the_done_page_is_reached_through_next_once_everything_is_answered(client):
    p = enrol(client, make_unaided_study(n_items=1))
    answer(client, p, 0)
    client.post(url("block", p, number=2))
    assert answer(client, p, 1)["Location"] == url("done", p)
    p.refresh_from_db()
    assert p.status == Participant.Status.COMPLETED
    assert client.get(reverse("participant:next", kwargs={"token": p.token}))["Location"] == url("done", p)
