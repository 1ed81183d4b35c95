"""The home page: says what the platform is and, once the demo is seeded, links to it."""

import io
from urllib.parse import urlencode

import pytest
from django.core.management import call_command

from oversight.core.demo import DEMO_RESEARCHER, DEMO_STUDY_SLUG
from oversight.core.models import Study

DEMO_LINK = f"/s/{DEMO_STUDY_SLUG}/"


@pytest.mark.django_db
def test_it_says_what_the_platform_is(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "sandwiching" in html
    assert "scalable oversight" in html


@pytest.mark.django_db
def test_it_offers_no_demo_link_when_there_is_no_demo_study(client):
    assert DEMO_LINK not in client.get("/").content.decode()


@pytest.mark.django_db
def test_it_links_to_the_demo_study_when_it_exists(client):
    Study.objects.create(slug=DEMO_STUDY_SLUG, title="The demo study", status=Study.Status.LIVE)
    html = client.get("/").content.decode()
    assert f'href="{DEMO_LINK}"' in html


@pytest.mark.django_db
def test_it_links_to_the_demo_that_seed_demo_creates(client):
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    html = client.get("/").content.decode()
    assert f'href="{DEMO_LINK}"' in html
    assert 'href="/s/demo-debate/" id="debate-demo"' in html  # the debate demo is seeded too
    # `make run` relies on seed_demo printing the same link and the researcher login.
    assert (
        f"Participant demo link:  http://127.0.0.1:8000{DEMO_LINK}  (a new participant at each visit)" in out.getvalue()
    )
    assert DEMO_RESEARCHER[0] in out.getvalue() and DEMO_RESEARCHER[1] in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_prints_the_links_for_the_address_make_run_serves():
    out = io.StringIO()
    call_command("seed_demo", "--base-url", "http://0.0.0.0:9000/", stdout=out)
    assert f"http://0.0.0.0:9000{DEMO_LINK}  (a new participant" in out.getvalue()
    assert f"http://0.0.0.0:9000{DEMO_LINK}?PROLIFIC_PID=<any id>&STUDY_ID=demo-study" in out.getvalue()
    assert "http://0.0.0.0:9000/console/" in out.getvalue()


@pytest.mark.django_db
def test_the_demo_link_makes_a_new_participant_at_each_visit(client):
    call_command("seed_demo", stdout=io.StringIO())
    for _ in range(2):
        client.cookies.clear()
        assert "consent" in client.get(DEMO_LINK).content.decode().lower()
        response = client.post(DEMO_LINK, {"consent": "yes"})
        assert response.status_code == 303 and "/s/p/" in response["Location"]
    study = Study.objects.get(slug=DEMO_STUDY_SLUG)
    assert study.participants.filter(external_id="", status="active").count() == 2


@pytest.mark.django_db
def test_the_home_page_has_a_prolific_style_form_whose_id_resumes(client):
    call_command("seed_demo", stdout=io.StringIO())
    html = client.get("/").content.decode()
    assert f'<form method="get" action="{DEMO_LINK}" class="prolific-form">' in html
    assert 'name="PROLIFIC_PID" required' in html and 'name="STUDY_ID" value="demo-study"' in html
    query = {"PROLIFIC_PID": "alice-1", "STUDY_ID": "demo-study", "SESSION_ID": "demo-session"}
    first = client.post(DEMO_LINK + "?" + urlencode(query), {"consent": "yes", **query})
    client.cookies.clear()  # the same id, later, from another browser: back to where they were
    assert "Welcome back" in client.get(DEMO_LINK, query).content.decode()
    again = client.post(DEMO_LINK + "?" + urlencode(query), {"consent": "yes", **query})
    assert first.status_code == again.status_code == 303 and again["Location"] == first["Location"]
    assert Study.objects.get(slug=DEMO_STUDY_SLUG).participants.filter(external_id="prolific:alice-1").count() == 1


def test_it_rejects_post(client):
    assert client.post("/").status_code == 405
