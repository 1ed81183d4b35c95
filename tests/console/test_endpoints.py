import html
import json
import re

import pytest
from django.urls import reverse

from oversight.core.models import Collaborator, ModelEndpoint, StudyLogEntry
from oversight.core.services.studies import study_close, study_launch
from oversight_dev.faketgi import FakeTGI
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(alice):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    return alice


@pytest.fixture
def endpoint():
    return ModelEndpoint.objects.create(
        name="gpu",
        kind=ModelEndpoint.Kind.TGI,
        base_url="http://127.0.0.1:9",
        token="s3cret-token",
        request_timeout_s=2,
    )


def urls(endpoint):
    return {
        "endpoints": reverse("console:endpoints"),
        "endpoint_create": reverse("console:endpoint_create"),
        "endpoint_edit": reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk}),
        "endpoint_test": reverse("console:endpoint_test", kwargs={"pk": endpoint.pk}),
    }


def form_data(**overrides):
    data = {
        "name": "sim",
        "kind": "simulated",
        "base_url": "",
        "token": "",
        "model_label": "",
        "request_timeout_s": 60,
        "max_concurrency": 32,
        "simulation": '{"accuracy": 0.8, "seed": 3}',
    }
    return {**data, **overrides}


# --- Who may do what -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["endpoints", "endpoint_create", "endpoint_edit", "endpoint_test"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, endpoint, name):
    response = client.get(urls(endpoint)[name])
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")


@pytest.mark.parametrize(
    "name,method",
    [
        ("endpoints", "get"),
        ("endpoint_create", "get"),
        ("endpoint_create", "post"),
        ("endpoint_edit", "get"),
        ("endpoint_edit", "post"),
        ("endpoint_test", "post"),
    ],
)
def test_it_forbids_accounts_that_are_not_staff(client, charlie, endpoint, name, method):
    client.force_login(charlie)
    assert getattr(client, method)(urls(endpoint)[name], form_data(name="taken")).status_code == 403
    assert not ModelEndpoint.objects.filter(name="taken").exists()


@pytest.mark.parametrize(
    "name,method",
    [("endpoints", "post"), ("endpoint_test", "get"), ("endpoint_create", "put"), ("endpoint_edit", "delete")],
)
def test_it_answers_only_its_methods(client, staff, endpoint, name, method):
    client.force_login(staff)
    assert getattr(client, method)(urls(endpoint)[name]).status_code == 405


# --- Adding and editing --------------------------------------------------------------------------------------


def test_staff_add_a_simulated_endpoint(client, staff):
    client.force_login(staff)
    assert client.get(reverse("console:endpoint_create")).status_code == 200
    response = client.post(reverse("console:endpoint_create"), form_data())
    assert response.status_code == 302 and response["Location"] == reverse("console:endpoints")
    endpoint = ModelEndpoint.objects.get(name="sim")
    assert endpoint.simulation == {"accuracy": 0.8, "seed": 3}
    assert "simulated" in client.get(reverse("console:endpoints")).content.decode()


@pytest.mark.parametrize(
    "simulation,message",
    [
        ('{"accuracy": 1.5}', "simulation setting &#x27;accuracy&#x27; must be between 0 and 1, got 1.5"),
        ('{"sycophany": 0.2}', "unknown simulation setting(s) sycophany"),
        ("[1, 2]", "simulation settings must be an object"),
        ("{not json", "Enter a valid JSON."),
    ],
)
def test_it_shows_why_simulation_settings_are_invalid(client, staff, simulation, message):
    client.force_login(staff)
    response = client.post(reverse("console:endpoint_create"), form_data(simulation=simulation))
    assert response.status_code == 200 and message in response.content.decode()
    assert not ModelEndpoint.objects.exists()


def test_a_served_endpoint_needs_a_base_url_and_no_simulation(client, staff):
    client.force_login(staff)
    body = client.post(reverse("console:endpoint_create"), form_data(kind="tgi")).content.decode()
    assert "needs the server&#x27;s base URL" in body and "Only a simulated endpoint takes simulation settings" in body


def test_a_token_is_never_shown_and_kept_when_left_empty(client, staff, endpoint):
    client.force_login(staff)
    page = client.get(reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk})).content.decode()
    assert "s3cret-token" not in page and "A token is stored." in page
    data = form_data(name="gpu", kind="tgi", base_url="http://gpu.lab:8080", simulation="", model_label="m")
    assert client.post(reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk}), data).status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.base_url, endpoint.token) == ("http://gpu.lab:8080", "s3cret-token")
    client.post(reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk}), {**data, "clear_token": "on"})
    endpoint.refresh_from_db()
    assert endpoint.token == ""


def test_a_live_study_s_endpoint_keeps_what_the_manifest_froze(client, staff):
    study = make_study(owner=staff)
    endpoint = study.conditions.get(kind="assisted").endpoint
    client.force_login(staff)
    edit = reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk})
    assert "Live studies use this endpoint" in client.get(edit).content.decode()
    data = form_data(name=endpoint.name, simulation='{"accuracy": 0.3, "seed": 1}')
    body = client.post(edit, data).content.decode()
    assert "their manifests froze this setting" in body
    endpoint.refresh_from_db()
    assert endpoint.simulation == {"accuracy": 0.8, "seed": 1}
    # The same settings written out with their defaults are no change; the timeout may change.
    data = form_data(
        name=endpoint.name,
        request_timeout_s=30,
        simulation='{"accuracy": 0.8, "seed": 1, "ttft_ms": 400, "sycophancy": 0.3}',
    )
    assert client.post(edit, data).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.request_timeout_s == 30


# --- Testing an endpoint -------------------------------------------------------------------------------------


def test_testing_shows_health_info_the_reply_and_latency(client, staff):
    client.force_login(staff)
    with FakeTGI(reply="Hi", max_total_tokens=8192) as tgi:
        endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        response = client.post(reverse("console:endpoint_test", kwargs={"pk": endpoint.pk}))
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body  # without JS: the list page, with the result
    assert "healthy" in body and "not healthy" not in body
    assert "faketgi/zephyr-7b-fake" in body and "max_total_tokens" in body and "8192" in body
    assert "max_input_tokens" in body and "version" in body
    assert "Reply: “Hi”" in body and " ms</span>" in body


def test_testing_a_server_that_is_down_shows_the_error(client, staff):
    client.force_login(staff)
    with FakeTGI(down=True) as tgi:
        endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url, request_timeout_s=2)
        response = client.post(reverse("console:endpoint_test", kwargs={"pk": endpoint.pk}), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response["HX-Trigger"] == "endpointTested" and "<html" not in body
    assert "not healthy" in body and "not reachable" in body and "Reply:" not in body


def test_testing_a_simulated_endpoint_says_so(client, staff):
    endpoint = ModelEndpoint.objects.create(name="sim", kind="simulated", simulation={"seed": 1})
    client.force_login(staff)
    body = client.post(
        reverse("console:endpoint_test", kwargs={"pk": endpoint.pk}), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "simulated — no model is called" in body and "(simulated)" in body


def probe_page(client, endpoint) -> str:
    return client.post(
        reverse("console:endpoint_test", kwargs={"pk": endpoint.pk}), HTTP_HX_REQUEST="true"
    ).content.decode()


def failed_request(body: str, request: str) -> str:
    """The cells after a failed request's row head ("GET http://…/health")."""
    row = re.search(rf'<tr class="bad"><td><code>{re.escape(request)}</code></td>(.*?)</tr>', body, re.S)
    assert row, body
    return row.group(1)


def test_a_failed_reply_shows_the_status_the_error_and_the_url_tried(client, staff):
    client.force_login(staff)
    with FakeTGI(http_status=500, error_message="CUDA out of memory") as tgi:
        endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        body = probe_page(client, endpoint)
    assert "probe bad" in body
    # Each request with what came back: health and /info answered, the chat route failed with a 500.
    assert f"GET {tgi.url}/health</code></td>\n            <td>200</td><td>ok</td>" in body
    assert f"GET {tgi.url}/info</code></td>\n            <td>200</td><td>ok</td>" in body
    row = failed_request(body, f"POST {tgi.url}/v1/chat/completions")
    assert "<td>500</td>" in row and "CUDA out of memory" in row


def test_an_unhealthy_server_shows_what_its_health_check_answered(client, staff):
    client.force_login(staff)
    with FakeTGI(unhealthy=True) as tgi:
        endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url, request_timeout_s=5)
        body = probe_page(client, endpoint)
    assert "not healthy" in body and "probe bad" in body
    row = failed_request(body, f"GET {tgi.url}/health")
    assert "<td>503</td>" in row and "HTTP 503 Service Unavailable" in row


def test_an_unreachable_server_shows_the_url_tried_and_the_connection_error(client, staff):
    client.force_login(staff)
    with FakeTGI(down=True) as tgi:
        endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url + "/", request_timeout_s=2)
        body = probe_page(client, endpoint)
    row = failed_request(body, f"GET {tgi.url}/health")
    assert "<td>—</td>" in row and "not reachable" in row and "Connection refused" in row
    assert "/info" not in body  # nothing more is tried once the server cannot be reached


def test_the_health_check_sends_the_endpoint_s_token(client, staff):
    client.force_login(staff)
    with FakeTGI() as tgi:
        endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url, token="s3cret")
        probe_page(client, endpoint)
        requests = tgi.requests
    assert {r.path: r.headers.get("authorization") for r in requests if r.method == "GET"} == {
        "/health": "Bearer s3cret",
        "/info": "Bearer s3cret",
    }


# --- An endpoint a live study uses: only its owners change it, and every change is in the study's log ------------


@pytest.fixture
def alices_live_study(staff, bob, charlie):
    """alice (staff) owns a live study on an endpoint; bob (staff) edits it with her; charlie (staff) is outside."""
    study = make_study(slug="alices", owner=staff)
    for user in (bob, charlie):
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.EDITOR)
    endpoint = study.conditions.get(kind="assisted").endpoint
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(
        kind="tgi", base_url="http://gpu-a.lab:8080", token="old-secret", simulation={}
    )
    return study


def served(**overrides):
    defaults = {"name": "alices sim", "kind": "tgi", "base_url": "http://gpu-b.lab:8080", "simulation": ""}
    return form_data(**{**defaults, **overrides})


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_only_the_owner_of_a_live_study_changes_its_endpoint(client, alices_live_study, who, request):
    endpoint = alices_live_study.conditions.get(kind="assisted").endpoint
    client.force_login(request.getfixturevalue(who))
    edit = reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk})
    page = client.get(edit)
    assert page.status_code == 403
    assert "Only a study&#x27;s owner can change the endpoint" in page.content.decode()
    assert (
        "“Study alices” (alice)" in html.unescape(page.content.decode())
        and 'name="base_url"' not in page.content.decode()
    )
    assert client.post(edit, served()).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.base_url == "http://gpu-a.lab:8080" and endpoint.token == "old-secret"
    assert not alices_live_study.log_entries.filter(action="endpoint").exists()
    # The list says it is locked instead of linking to the form.
    listing = client.get(reverse("console:endpoints")).content.decode()
    assert "locked" in listing and f'href="{edit}"' not in listing


def test_the_owner_changes_it_and_the_change_is_in_the_study_s_log_without_the_token(client, alices_live_study, staff):
    endpoint = alices_live_study.conditions.get(kind="assisted").endpoint
    client.force_login(staff)
    edit = reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk})
    assert f'href="{edit}"' in client.get(reverse("console:endpoints")).content.decode()
    assert client.post(edit, served(token="new-secret")).status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.base_url, endpoint.token) == ("http://gpu-b.lab:8080", "new-secret")
    entry = alices_live_study.log_entries.get(action="endpoint")
    assert (entry.actor_name, entry.summary) == ("alice", "Model endpoint “alices sim” changed: Base URL, Token")
    assert entry.changes == [
        {"field": "base_url", "label": "Base URL", "before": "http://gpu-a.lab:8080", "after": "http://gpu-b.lab:8080"},
        {"field": "token", "label": "Token", "before": "set", "after": "replaced"},
    ]
    page = client.get(reverse("console:study", kwargs={"slug": "alices"})).content.decode()
    assert "http://gpu-b.lab:8080" in page and "secret" not in page
    assert "secret" not in json.dumps(list(StudyLogEntry.objects.values()), default=str)


def test_a_superuser_may_change_any_endpoint(client, alices_live_study, django_user_model):
    endpoint = alices_live_study.conditions.get(kind="assisted").endpoint
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "root-password-1")
    client.force_login(admin)
    assert client.post(reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk}), served()).status_code == 302
    assert alices_live_study.log_entries.get(action="endpoint").actor_name == "root"


def test_the_owner_of_one_of_two_live_studies_may_not_change_their_shared_endpoint(
    client, alices_live_study, staff, charlie
):
    endpoint = alices_live_study.conditions.get(kind="assisted").endpoint
    other = make_study(slug="charlies", owner=charlie, endpoint=False, launch=False)
    other.conditions.filter(kind="assisted").update(endpoint=endpoint)
    study_launch(study=other)
    client.force_login(staff)
    page = client.post(reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk}), served())
    assert page.status_code == 403 and "“Study charlies” (charlie)" in html.unescape(page.content.decode())


def test_an_endpoint_of_drafts_and_closed_studies_is_any_staff_s_and_drafts_log_the_change(
    client, alices_live_study, charlie
):
    endpoint = alices_live_study.conditions.get(kind="assisted").endpoint
    study_close(study=alices_live_study)
    draft = make_study(slug="draft", owner=charlie, launch=False, endpoint=False)
    draft.conditions.filter(kind="assisted").update(endpoint=endpoint)
    client.force_login(charlie)
    assert client.post(reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk}), served()).status_code == 302
    assert draft.log_entries.get(action="endpoint").summary == "Model endpoint “alices sim” changed: Base URL"
    assert not alices_live_study.log_entries.filter(action="endpoint").exists()  # a closed study calls no model


def test_saving_an_endpoint_unchanged_records_nothing(client, alices_live_study, staff):
    endpoint = alices_live_study.conditions.get(kind="assisted").endpoint
    client.force_login(staff)
    unchanged = served(base_url="http://gpu-a.lab:8080")  # the token left empty keeps the stored one
    assert client.post(reverse("console:endpoint_edit", kwargs={"pk": endpoint.pk}), unchanged).status_code == 302
    assert not alices_live_study.log_entries.filter(action="endpoint").exists()
