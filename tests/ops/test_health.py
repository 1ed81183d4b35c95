"""The probes: /healthz says the process answers, /readyz that the database does too."""

import pytest
from django.db import OperationalError


def test_it_answers_healthz_without_touching_the_database(client):
    # No django_db mark: pytest-django would fail the request if the view touched the database.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_answers_readyz_when_the_database_is_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_it_answers_readyz_503_when_the_database_is_down(client, monkeypatch):
    from django.db import connection

    def refuse():
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_it_rejects_post_on_health_endpoints(client, path):
    assert client.post(path).status_code == 405
