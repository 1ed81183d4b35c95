import html
import re

import pytest
from django.urls import reverse

from oversight.core.models import Collaborator, Study
from oversight.core.services.participants import participant_join
from oversight.core.services.studies import study_launch
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(alice, bob):
    study = make_study(owner=alice, launch=False)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    return study


def url(name, study):
    return reverse(f"console:{name}", kwargs={"slug": study.slug})


@pytest.mark.parametrize("name", ["study", "manifest"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, study, name):
    response = client.get(url(name, study))
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")


@pytest.mark.parametrize(
    "name,method",
    [
        ("study", "get"),
        ("manifest", "get"),
        ("log", "get"),
        ("launch", "get"),
        ("launch", "post"),
        ("close", "get"),
        ("close", "post"),
    ],
)
def test_it_hides_a_study_from_an_outsider(client, study, charlie, name, method):
    client.force_login(charlie)
    assert getattr(client, method)(url(name, study), {"confirm": "yes"}).status_code == 404


@pytest.mark.parametrize("name", ["launch", "close"])
def test_it_forbids_a_viewer_to_change_the_study(client, study, bob, name):
    client.force_login(bob)
    assert client.get(url("study", study)).status_code == 200
    assert client.get(url(name, study)).status_code == 403
    assert client.post(url(name, study), {"confirm": "yes"}).status_code == 403
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


@pytest.mark.parametrize(
    "name,method", [("study", "post"), ("manifest", "post"), ("log", "post"), ("launch", "put"), ("close", "delete")]
)
def test_it_answers_only_its_methods(client, study, alice, name, method):
    client.force_login(alice)
    assert getattr(client, method)(url(name, study)).status_code == 405


def test_the_owner_launches_and_sees_the_manifest_hash(client, study, alice):
    client.force_login(alice)
    response = client.post(url("launch", study), {"confirm": "yes"}, follow=True)
    study.refresh_from_db()
    assert study.status == Study.Status.LIVE
    assert study.manifest_hash.encode() in response.content
    manifest = client.get(url("manifest", study)).json()
    assert manifest["manifest_hash"] == study.manifest_hash


# --- Launching and closing ask first ---------------------------------------------------------------------------


def test_the_study_page_links_to_a_confirmation_rather_than_launching(client, study, alice):
    client.force_login(alice)
    body = client.get(url("study", study)).content.decode()
    assert f'<a class="button" href="{url("launch", study)}">Launch…</a>' in body
    assert f'action="{url("launch", study)}"' not in body


def test_launching_asks_for_confirmation_and_says_what_freezes(client, study, alice):
    client.force_login(alice)
    body = html.unescape(client.get(url("launch", study)).content.decode())
    assert "Launching freezes the study" in body
    assert "The items are drawn now" in body and "3 per condition from “unit bank”" in body
    assert "The design can no longer be edited" in body and "clone the study" in body
    assert "SHA-256" in body and "The participant links open" in body
    assert '<input type="hidden" name="confirm" value="yes">' in body and "Launch now" in body
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


def test_a_launch_post_without_the_confirmation_asks_again(client, study, alice):
    client.force_login(alice)
    response = client.post(url("launch", study))
    assert response.status_code == 200 and "Launching freezes the study" in response.content.decode()
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


def test_the_confirmation_shows_what_stops_a_launch_and_offers_no_button(client, alice):
    study = make_study(owner=alice, launch=False, endpoint=False)
    client.force_login(alice)
    body = html.unescape(client.get(url("launch", study)).content.decode())
    assert "It cannot be launched yet" in body and "needs a model endpoint" in body
    assert "Launch now" not in body


def test_closing_asks_for_confirmation_and_counts_who_cannot_finish(client, alice):
    study = make_study(owner=alice)
    participant_join(study=study, params={"PROLIFIC_PID": "p1"}, consent=True)
    client.force_login(alice)
    body = client.get(url("close", study)).content.decode()
    assert "Closing cannot be undone" in body and "1 participant is in progress" in body
    assert Study.objects.get(pk=study.pk).status == Study.Status.LIVE
    client.post(url("close", study), {"confirm": "yes"})
    assert Study.objects.get(pk=study.pk).status == Study.Status.CLOSED


def test_a_launched_study_is_not_launched_again(client, alice):
    study = make_study(owner=alice)
    client.force_login(alice)
    response = client.get(url("launch", study), follow=True)
    assert "Only a draft study can be launched." in response.content.decode()


# --- The participant links -------------------------------------------------------------------------------------


def test_the_participant_links_are_absolute_and_ready_to_copy(client, study, alice):
    client.force_login(alice)
    body = client.get(url("study", study)).content.decode()
    prolific = "http://testserver/s/unit/?PROLIFIC_PID={{%PROLIFIC_PID%}}&amp;STUDY_ID={{%STUDY_ID%}}&amp;SESSION_ID={{%SESSION_ID%}}"
    assert f'<input id="link-prolific" type="text" readonly value="{prolific}"' in body
    assert '<input id="link-open" type="text" readonly value="http://testserver/s/unit/"' in body
    # The Copy buttons are hidden until console.js (no inline script) shows them.
    assert '<button type="button" class="secondary small copy-button" data-copy="link-prolific" hidden>' in body
    assert "/static/js/console.js" in body and "<script>" not in body


def test_the_participant_links_follow_the_proxy_s_scheme_and_host(client, study, alice, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["study.example.org"]
    client.force_login(alice)
    body = client.get(url("study", study), HTTP_HOST="study.example.org", HTTP_X_FORWARDED_PROTO="https").content
    assert b'value="https://study.example.org/s/unit/"' in body


# --- Conditions, in the order participants get them ----------------------------------------------------------


def conditions_html(client, study) -> str:
    body = client.get(url("study", study)).content.decode()
    return re.search(r"<h3>Conditions</h3>(.*?)<h3>Tasks</h3>", body, re.S).group(1)


def test_a_fixed_order_is_listed_as_participants_get_it(client, study, alice):
    # Positions, not creation order, decide (Unaided was created second but is moved first).
    study.conditions.filter(name="Unaided").update(position=0)
    study.conditions.filter(name="Assisted").update(position=5)
    client.force_login(alice)
    section = conditions_html(client, study)
    assert "in this order (fixed)" in section
    assert section.index("Unaided") < section.index("Assisted")
    p = participant_join(study=study_launch(study=study), params={}, consent=True)
    first = study.conditions.get(pk=p.condition_order[0])
    assert first.name == "Unaided"


def test_a_counterbalanced_order_says_so_and_lists_each_rotation(client, alice):
    study = make_study(owner=alice, order=Study.Order.COUNTERBALANCED)
    client.force_login(alice)
    section = conditions_html(client, study)
    assert "counterbalanced" in section
    orders = re.findall(r"<li>(\w+) → (\w+)</li>", section)
    assert orders == [("Assisted", "Unaided"), ("Unaided", "Assisted")]
    # ... which is what the 1st and 2nd participants to consent get.
    got = [participant_join(study=study, params={}, consent=True).condition_order for _ in range(2)]
    names = {c.pk: c.name for c in study.conditions.all()}
    assert [tuple(names[c] for c in order) for order in got] == orders


def test_a_between_subject_design_says_each_participant_does_one_condition(client, alice):
    study = make_study(owner=alice, design=Study.Design.BETWEEN)
    client.force_login(alice)
    assert "each participant does <strong>one</strong> of these conditions" in conditions_html(client, study)


def test_the_study_list_shows_only_the_users_studies(client, study, alice, charlie):
    make_study(slug="other", owner=charlie)
    client.force_login(alice)
    body = client.get(reverse("console:studies")).content.decode()
    assert study.title in body and "Study other" not in body
