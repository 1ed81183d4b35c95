"""Hostile input gets a clear 4xx page, never a 500 or a debug page, on SQLite and PostgreSQL alike."""

import logging

import pytest
from django.urls import URLPattern, get_resolver, reverse

from oversight.core.models import Event, Participant, Trial
from oversight.core.services import steps
from tests.factories import make_study
from tests.participant.helpers import HX, enrol, item_url, join, make_study_with_steps, make_unaided_study, url

pytestmark = pytest.mark.django_db

NUL = "\x00"


def assert_friendly(response, status: int, text: str = "") -> str:
    """A page of ours with this status: no traceback, no Django debug page."""
    assert response.status_code == status, response
    body = response.content.decode()
    assert '<main class="page">' in body or '<main class="participant-main">' in body, body[:300]
    for debug in ("Traceback", "technical_500", "Request Method:", "URLconf", "django.core"):
        assert debug not in body
    assert text in body
    return body


# --- NUL characters --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["PROLIFIC_PID", "STUDY_ID", "workerId", "pid"])
def test_a_nul_in_a_recruitment_parameter_gets_a_clear_400_and_enrols_no_one(client, key):
    study = make_study()
    link = reverse("participant:welcome", kwargs={"slug": study.slug})
    params = {"PROLIFIC_PID": "5f00aa", key: f"a{NUL}b"}
    assert_friendly(client.get(link, params), 400, "NUL character")
    assert_friendly(client.post(link, {**params, "consent": "yes"}), 400, "NUL character")
    assert not Participant.objects.exists()


@pytest.mark.parametrize(
    "field,value",
    [("choice", f"1{NUL}"), ("confidence", f"60{NUL}"), ("auto", NUL), (f"x{NUL}", "1"), ("csrf", f"{NUL}" * 3)],
)
def test_a_nul_in_any_answer_field_gets_a_clear_400_and_records_nothing(client, field, value):
    p = enrol(client, make_unaided_study())
    data = {"choice": "1", "confidence": "60", field: value}
    assert_friendly(client.post(item_url(p, 0, "submit"), data), 400, "NUL character")
    assert_friendly(client.post(item_url(p, 0, "select"), data), 400, "NUL character")
    trial = p.trials.get(position=0)
    assert (trial.status, trial.selected_choice) == (Trial.Status.SHOWN, None)
    assert not Event.objects.filter(trial=trial).exclude(kind=Event.Kind.ITEM_SHOWN).exists()


def test_a_nul_in_consent_the_check_or_a_page_event_gets_a_clear_400(client):
    study = make_study_with_steps()
    link = reverse("participant:welcome", kwargs={"slug": study.slug})
    assert_friendly(client.post(link, {"pid": "p1", "consent": f"yes{NUL}"}), 400)
    p = enrol(client, study)
    client.post(url("instructions", p))
    assert_friendly(client.post(url("check", p), {"q0": f"1{NUL}", "q1": "1"}), 400, "NUL character")
    assert_friendly(client.post(url("event", p), {"kind": f"hidden{NUL}", "position": "0"}), 400)
    p.refresh_from_db()
    assert p.comprehension_attempts == 0


def test_a_nul_in_the_participant_s_address_is_not_found(client):
    for path in ["/s/p/a%00b/", "/s/p/a%00b/item/0/", "/s/p/a%00b/done", "/s/p/a%00b/check"]:
        assert_friendly(client.get(path), 404, "Page not found")
    assert_friendly(client.post("/s/p/a%00b/item/0/submit", {"choice": "1"}), 404)


# --- Long and strange parameters ------------------------------------------------------------------------------


def test_three_10000_character_prolific_parameters_get_a_clear_400(client):
    """The Django side. Whether such a link reaches Django depends on the server in front of it: daphne drops a
    request line over 16 KB without an answer, nginx answers 414 (see docs/participant.md)."""
    study = make_study()
    long = {"PROLIFIC_PID": "p" * 10_000, "STUDY_ID": "s" * 10_000, "SESSION_ID": "x" * 10_000}
    link = reverse("participant:welcome", kwargs={"slug": study.slug})
    body = assert_friendly(client.get(link, long), 400, "This link is damaged")
    assert "10,000 characters long; at most 200" in body
    assert_friendly(client.post(link, {**long, "consent": "yes"}), 400, "10,000 characters long")
    assert not Participant.objects.exists()


def test_a_parameter_is_never_cut_short_to_fit(client):
    study = make_study()
    link = reverse("participant:welcome", kwargs={"slug": study.slug})
    assert client.get(link, {"PROLIFIC_PID": "p" * 200}).status_code == 200
    assert_friendly(client.get(link, {"PROLIFIC_PID": "p" * 201}), 400, "201 characters long")
    assert_friendly(client.get(link, {"PROLIFIC_PID": "a\x01b"}), 400, "control character")


def test_too_many_fields_get_a_clear_400(client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    p = enrol(client, make_unaided_study())
    data = {f"f{i}": "1" for i in range(100)}
    assert_friendly(client.post(item_url(p, 0, "submit"), data), 400, "could not be read")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
@pytest.mark.parametrize("confidence_format", ["likert", "slider", "distribution"])
def test_a_confidence_that_is_not_a_finite_number_is_refused(client, value, confidence_format):
    p = enrol(client, make_unaided_study(confidence_format=confidence_format))
    data = {"choice": "1", "confidence": value, "p0": value, "p1": "0", "p2": "0", "p3": "0"}
    assert_friendly(client.post(item_url(p, 0, "submit"), data), 400)
    assert client.post(item_url(p, 0, "select"), data).status_code == 400
    trial = p.trials.get(position=0)
    assert (trial.status, trial.selected_confidence, trial.distribution) == (Trial.Status.SHOWN, None, None)


# --- Out of order ---------------------------------------------------------------------------------------------


def test_submitting_an_item_not_yet_opened_leads_to_the_current_step_and_records_nothing(client):
    p = enrol(client, make_unaided_study())
    response = client.post(item_url(p, 2, "submit"), {"choice": "1", "confidence": "60"})
    assert (response.status_code, response["Location"]) == (303, item_url(p, 0))
    htmx = client.post(item_url(p, 2, "submit"), {"choice": "1", "confidence": "60"}, headers=HX)
    assert htmx.status_code == 200 and htmx["HX-Push-Url"] == item_url(p, 0)
    assert p.trials.get(position=2).status == Trial.Status.PENDING
    assert not Event.objects.filter(trial__participant=p, trial__position=2).exists()


def test_an_item_that_does_not_exist_is_not_found(client):
    p = enrol(client, make_unaided_study())
    assert_friendly(client.post(item_url(p, 99, "submit"), {"choice": "1"}), 404, "Page not found")
    assert_friendly(client.get(item_url(p, 10**30)), 404)


# --- Nothing unplanned reaches a participant ----------------------------------------------------------------


def test_an_unexpected_error_shows_the_friendly_page_even_with_debug_on(client, settings, monkeypatch, caplog):
    settings.DEBUG = True
    p = enrol(client, make_unaided_study())

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(steps, "apply_submit", broken)
    with caplog.at_level(logging.ERROR, logger="oversight.participant.errors"):
        response = client.post(item_url(p, 0, "submit"), {"choice": "1", "confidence": "60"})
    body = assert_friendly(response, 500, "Your answers so far are saved")
    assert "something nobody planned for" not in body
    record = next(r for r in caplog.records if r.name == "oversight.participant.errors")
    assert record.exc_info and "something nobody planned for" in str(record.exc_info[1])


def test_an_unknown_link_shows_the_friendly_404_even_with_debug_on(client, settings):
    settings.DEBUG = True
    assert_friendly(client.get("/s/p/not-a-token/"), 404, "Page not found")
    assert_friendly(client.get("/s/no-such-study/"), 404, "Study not found")


def test_every_participant_page_is_wrapped_so_no_participant_sees_a_traceback():
    patterns = [p for p in get_resolver().url_patterns if getattr(p, "app_name", "") == "participant"]
    views = [p.callback for r in patterns for p in r.url_patterns if isinstance(p, URLPattern)]
    assert len(views) >= 12
    assert all(getattr(view, "participant_page", False) for view in views), [v.__name__ for v in views]


def test_a_declined_participant_cannot_answer(client):
    study = make_unaided_study()
    join(client, study, {"pid": "no-thanks"}, consent="no")
    p = Participant.objects.get()
    assert client.get(url("next", p)).status_code == 200
    assert client.post(url("instructions", p)).status_code in {302, 303}
    assert not p.trials.exists()
