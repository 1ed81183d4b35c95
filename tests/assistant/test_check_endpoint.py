import pytest
from django.core.management import CommandError, call_command

from oversight.core.models import ModelEndpoint
from oversight_dev.faketgi import FakeTGI

pytestmark = pytest.mark.django_db


def test_it_shows_the_served_model_its_limits_and_a_reply(capsys):
    with FakeTGI(reply="Yes, I am here.", max_total_tokens=8192) as tgi:
        ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url)
        call_command("check_endpoint", "gpu")
    out = capsys.readouterr().out
    assert "healthy:  True" in out
    assert '"max_total_tokens": 8192' in out and "faketgi/" in out
    assert "'Yes, I am here.'" in out


def test_it_fails_clearly_when_the_server_is_down():
    with FakeTGI(down=True) as tgi:
        ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url, request_timeout_s=2)
        with pytest.raises(CommandError, match="not reachable"):
            call_command("check_endpoint", "gpu")


def test_it_names_the_known_endpoints_for_an_unknown_one():
    ModelEndpoint.objects.create(name="sim", kind="simulated")
    with pytest.raises(CommandError, match="No endpoint named 'nope' \\(known: sim\\)"):
        call_command("check_endpoint", "nope")


def test_it_lists_each_request_with_its_status_and_fails_when_the_server_is_unhealthy(capsys):
    with FakeTGI(unhealthy=True) as tgi:
        ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url=tgi.url)
        with pytest.raises(CommandError, match="not healthy"):
            call_command("check_endpoint", "gpu")
    out = capsys.readouterr().out
    assert f"GET   {tgi.url}/health → 503: HTTP 503 Service Unavailable" in out
    assert f"GET   {tgi.url}/info → 200: ok" in out
    assert f"POST  {tgi.url}/v1/chat/completions → 200: ok" in out
