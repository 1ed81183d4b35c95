"""The home page: says what the platform is and, once the demo is seeded, links to it."""

import io

import pytest
from django.core.management import call_command

from oversight.core.demo import DEMO_RESEARCHER, DEMO_STUDY_SLUG
from oversight.core.models import Study

DEMO_LINK = f"/s/{DEMO_STUDY_SLUG}/?PROLIFIC_PID=demo-participant"


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
    # `make run` relies on seed_demo printing the same link and the researcher login.
    assert DEMO_LINK in out.getvalue()
    assert DEMO_RESEARCHER[0] in out.getvalue() and DEMO_RESEARCHER[1] in out.getvalue()


def test_it_rejects_post(client):
    assert client.post("/").status_code == 405
