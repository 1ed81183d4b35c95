"""A reply whose web process died is known dead ~2 s after its last sign of life, and only then: the dead-reply
rule (services.reply_is_dead) over the process leases (assistant.lease) and the reply's heartbeat."""

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from oversight.assistant import lease
from oversight.assistant.models import ChatMessage
from oversight.assistant.services import DEAD_AFTER_S, STALE_AFTER_S, interrupt_stale_generations, reply_is_dead
from oversight.core import redisclient
from oversight.core.services.participants import participant_join
from tests.factories import make_study

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def reply(*, silent_s: float, owner: str, pk: int = 10**9) -> ChatMessage:
    """A streaming reply (unsaved) whose last heartbeat was `silent_s` ago."""
    beat = NOW - timedelta(seconds=silent_s)
    return ChatMessage(pk=pk, role="assistant", status="streaming", owner=owner, heartbeat_at=beat, created_at=beat)


@pytest.fixture
def hosting():
    lease.start()  # what a web process does when its first chat socket opens


@pytest.fixture
def leased():
    """Give a process a lease as its renewal thread would (Redis), for the length of the test."""
    owners = []

    def give(owner: str) -> str:
        redisclient.sync_client().set(lease._key(owner), b"1", px=int(lease.LEASE_TTL_S * 1000))
        owners.append(owner)
        return owner

    yield give
    for owner in owners:
        redisclient.sync_client().delete(lease._key(owner))


def test_a_reply_of_a_process_without_a_lease_is_dead_once_its_heartbeat_is_two_seconds_old(hosting):
    assert not reply_is_dead(reply(silent_s=DEAD_AFTER_S - 0.5, owner="a-dead-process"), NOW)
    assert reply_is_dead(reply(silent_s=DEAD_AFTER_S + 0.1, owner="a-dead-process"), NOW)


def test_a_reply_this_process_generates_is_alive_however_late_its_heartbeat_under_the_long_rule(hosting):
    lease.local_replies.add(10**9)
    try:
        assert not reply_is_dead(reply(silent_s=STALE_AFTER_S - 1, owner=lease.PROCESS_ID), NOW)
        assert reply_is_dead(reply(silent_s=STALE_AFTER_S + 1, owner=lease.PROCESS_ID), NOW)  # wedged
    finally:
        lease.local_replies.discard(10**9)


def test_a_reply_owned_by_this_process_whose_task_is_gone_is_dead(hosting):
    assert reply_is_dead(reply(silent_s=DEAD_AFTER_S + 0.1, owner=lease.PROCESS_ID), NOW)


def test_a_reply_from_before_owners_were_recorded_is_dead_only_after_the_long_silence(hosting):
    assert not reply_is_dead(reply(silent_s=STALE_AFTER_S - 1, owner=""), NOW)
    assert reply_is_dead(reply(silent_s=STALE_AFTER_S + 1, owner=""), NOW)


@pytest.mark.redis
def test_a_reply_of_another_process_that_renews_its_lease_is_alive_until_the_long_silence(leased):
    owner = leased("another-web-process")
    assert not reply_is_dead(reply(silent_s=10, owner=owner), NOW)  # a flush lagging under load
    assert reply_is_dead(reply(silent_s=STALE_AFTER_S + 1, owner=owner), NOW)


@pytest.mark.redis
def test_this_process_renews_its_lease_from_its_own_thread(hosting):
    assert lease.alive({lease.PROCESS_ID}) == {lease.PROCESS_ID}
    assert any(t.name == "chat-lease" and t.is_alive() for t in threading.enumerate())
    ttl_ms = redisclient.sync_client().pttl(lease._key(lease.PROCESS_ID))
    assert 0 < ttl_ms <= lease.LEASE_TTL_S * 1000


def test_without_redis_a_process_that_serves_no_chat_cannot_tell_and_keeps_to_the_long_rule(monkeypatch):
    if settings.REDIS_URL:
        pytest.skip("with Redis every process can read the leases")
    monkeypatch.setattr(lease, "_hosting", threading.Event())  # a Celery worker or a shell
    assert lease.alive({"a-dead-process"}) is None
    assert not reply_is_dead(reply(silent_s=DEAD_AFTER_S + 5, owner="a-dead-process"), NOW)


def test_the_sweep_interrupts_a_dead_processs_reply_and_leaves_a_quiet_live_one(hosting, leased):
    trial = participant_join(
        study=make_study(slug="lease", n_items=1), params={"pid": "p"}, consent=True
    ).trials.first()
    beat = timezone.now() - timedelta(seconds=DEAD_AFTER_S + 1)
    dead = ChatMessage.objects.create(
        trial=trial, seq=1, role="assistant", status="streaming", content="So far", owner="gone", heartbeat_at=beat
    )
    live_owner = lease.PROCESS_ID if not settings.REDIS_URL else leased("alive-elsewhere")
    quiet = ChatMessage.objects.create(
        trial=trial, seq=2, role="assistant", status="streaming", owner=live_owner, heartbeat_at=beat
    )
    lease.local_replies.add(quiet.pk)
    try:
        assert interrupt_stale_generations() == 1
    finally:
        lease.local_replies.discard(quiet.pk)
    dead.refresh_from_db()
    quiet.refresh_from_db()
    assert (dead.status, dead.content, dead.error_kind) == ("interrupted", "So far", "interrupted")
    assert quiet.status == "streaming"
