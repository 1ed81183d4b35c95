"""The production parts: the Redis channel layer across processes and a real Celery worker.

The `redis` and `worker` tests are skipped on the embedded default and run by .ci/run's second pass
(DATABASE_URL + REDIS_URL).
"""

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from celery.result import EagerResult
from django.conf import settings
from django.utils import timezone

from oversight.core.models import Condition, Participant, Study, Trial
from oversight.core.tasks import finalize_trial

# --- Redis channel layer -----------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.asyncio
async def test_it_delivers_a_group_message_between_two_redis_layer_instances():
    from channels_redis.core import RedisChannelLayer

    layer = settings.CHANNEL_LAYERS["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    # Two instances, as in two web processes: one holds the socket's channel, the other publishes.
    receiver = RedisChannelLayer(**layer["CONFIG"])
    sender = RedisChannelLayer(**layer["CONFIG"])
    group = f"test-{uuid.uuid4().hex}"
    channel = await receiver.new_channel()
    try:
        await receiver.group_add(group, channel)
        await sender.group_send(group, {"type": "monitor.update", "text": "hello from the other process"})
        message = await asyncio.wait_for(receiver.receive(channel), timeout=5)
    finally:
        await receiver.group_discard(group, channel)
        await receiver.close_pools()
        await sender.close_pools()
    assert message == {"type": "monitor.update", "text": "hello from the other process"}


# --- A real Celery worker ----------------------------------------------------------------------------------


def make_expired_trial() -> Trial:
    from oversight.banks.models import Bank, Item

    bank = Bank.objects.create(name=f"bank-{uuid.uuid4().hex[:8]}")
    item = Item.objects.create(
        bank=bank,
        external_id="q1",
        text="2 + 2 = ?",
        options=["3", "4", "5", "22"],
        gold_index=1,
        content_hash="x",
    )
    study = Study.objects.create(slug=f"s-{uuid.uuid4().hex[:8]}", title="Worker test", status=Study.Status.LIVE)
    condition = Condition.objects.create(study=study, kind=Condition.Kind.UNAIDED, name="Unaided")
    participant = Participant.objects.create(study=study, status=Participant.Status.ACTIVE)
    shown_at = timezone.now() - timedelta(seconds=90)
    return Trial.objects.create(
        participant=participant,
        condition=condition,
        item=item,
        position=0,
        time_limit_s=60,
        status=Trial.Status.SHOWN,
        shown_at=shown_at,
        deadline_at=shown_at + timedelta(seconds=60),
        selected_choice=1,
        selected_confidence=80,
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_it_runs_a_task_sent_through_the_broker_in_a_real_worker(celery_worker):
    trial = make_expired_trial()

    result = finalize_trial.apply_async((trial.pk,), queue=celery_worker.queue)

    assert not isinstance(result, EagerResult), "the task ran in-process instead of through the broker"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        trial.refresh_from_db()
        if trial.status != Trial.Status.SHOWN:
            break
        time.sleep(0.1)
    assert trial.status == Trial.Status.TIMED_OUT
    assert trial.submit_kind == Trial.SubmitKind.SERVER
    assert (trial.choice, trial.correct) == (1, True)
