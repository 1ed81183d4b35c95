"""Shared fixtures: personas (researcher alice, collaborator bob, outsider charlie) and service markers."""

import os

import pytest

from tests.fixtures_worker import celery_worker  # noqa: F401 - real Celery worker fixture

REDIS_URL = os.environ.get("REDIS_URL", "")


def pytest_collection_modifyitems(config, items):
    # Tests that need the production parts are skipped, with the reason, on the embedded default.
    skip_redis = pytest.mark.skip(reason="needs REDIS_URL (Redis channel layer / broker); run by .ci/run's 2nd pass")
    for item in items:
        if not REDIS_URL and ("redis" in item.keywords or "worker" in item.keywords):
            item.add_marker(skip_redis)


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.org", "alice-password-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.org", "bob-password-1")


@pytest.fixture
def charlie(django_user_model):
    return django_user_model.objects.create_user("charlie", "charlie@example.org", "charlie-password-1")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness is for attackers, not for the test suite.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _jobs_in_place(settings):
    # Without a worker, imports and exports run in a background thread of the web process; tests run them in
    # the caller (as a worker would have by the time they look), except those about that thread.
    settings.JOBS_IN_THREAD = False


@pytest.fixture(autouse=True)
def _close_chat_threads_connections():
    """The chat's own database threads (PostgreSQL) keep their connections under channels' test communicator."""
    yield
    from oversight.assistant import executor

    executor.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _close_chat_threads_connections_at_the_end(django_db_setup):
    """A reply cancelled when its test's loop closed may finish on a fresh chat thread after the per-test
    shutdown; close that too before the test database is dropped (torn down before django_db_setup)."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from oversight.assistant import executor

    executor.shutdown()
    # channels' database_sync_to_async thread keeps its connection too now that DB_CONN_MAX_AGE defaults to 60
    # on PostgreSQL: close it there, or the test database cannot be dropped.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture
def tasks_inline():
    """Celery tasks run in-process, as on the embedded default, also on CI's Redis pass (no worker in the test
    process): for tests about a job's own behaviour rather than the broker."""
    from oversight.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def empty_cache():
    """Django's cache emptied before and after the test (cached reports are keyed by study pk, which a later
    test's database can reuse)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def with_broker(settings):
    """Tasks are published, as with a broker (REDIS_URL), not run in place: for tests about sending them."""
    from oversight.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    settings.CELERY_TASK_ALWAYS_EAGER = False
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def broker_unreachable(with_broker, monkeypatch):
    """`broker_unreachable(task)`: publishing `task` fails the way kombu fails when Redis is down."""
    from kombu.exceptions import OperationalError

    def refuse(task) -> None:
        def publish(*args, **kwargs):
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

        monkeypatch.setattr(task, "apply_async", publish)

    return refuse
