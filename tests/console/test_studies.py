import pytest
from django.urls import reverse

from oversight.core.models import Collaborator, Study
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


@pytest.mark.parametrize("name,method", [("study", "get"), ("manifest", "get"), ("launch", "post"), ("close", "post")])
def test_it_hides_a_study_from_an_outsider(client, study, charlie, name, method):
    client.force_login(charlie)
    assert getattr(client, method)(url(name, study)).status_code == 404


@pytest.mark.parametrize("name", ["launch", "close"])
def test_it_forbids_a_viewer_to_change_the_study(client, study, bob, name):
    client.force_login(bob)
    assert client.get(url("study", study)).status_code == 200
    assert client.post(url(name, study)).status_code == 403
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


@pytest.mark.parametrize("name,method", [("study", "post"), ("manifest", "post"), ("launch", "get"), ("close", "get")])
def test_it_answers_only_its_methods(client, study, alice, name, method):
    client.force_login(alice)
    assert getattr(client, method)(url(name, study)).status_code == 405


def test_the_owner_launches_and_sees_the_manifest_hash(client, study, alice):
    client.force_login(alice)
    response = client.post(url("launch", study), follow=True)
    study.refresh_from_db()
    assert study.status == Study.Status.LIVE
    assert study.manifest_hash.encode() in response.content
    manifest = client.get(url("manifest", study)).json()
    assert manifest["manifest_hash"] == study.manifest_hash


def test_the_study_list_shows_only_the_users_studies(client, study, alice, charlie):
    make_study(slug="other", owner=charlie)
    client.force_login(alice)
    body = client.get(reverse("console:studies")).content.decode()
    assert study.title in body and "Study other" not in body
