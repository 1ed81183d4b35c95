import pytest
from django.core.cache import cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


def test_a_researcher_logs_in_and_reaches_the_console(client, alice):
    response = client.post("/console/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302 and response["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_it_locks_a_username_after_five_wrong_passwords_even_with_the_right_one(client, alice):
    for _ in range(5):
        assert client.post("/console/login/", {"username": "alice", "password": "wrong"}).status_code == 200
    locked = client.post("/console/login/", {"username": "alice", "password": "alice-password-1"})
    assert locked.status_code == 429
    assert b"Too many failed attempts" in locked.content
    assert "_auth_user_id" not in client.session


def test_other_accounts_are_not_locked_by_someone_elses_failures(client, alice, bob):
    for _ in range(5):
        client.post("/console/login/", {"username": "alice", "password": "wrong"})
    assert client.post("/console/login/", {"username": "bob", "password": "bob-password-1"}).status_code == 302
