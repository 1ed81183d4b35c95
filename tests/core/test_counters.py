"""Rate-limit counters: fixed windows, shared through Redis when there is one."""

import time

import pytest
from django.conf import settings

from oversight.core import counters, redisclient


@pytest.fixture(autouse=True)
def _fresh():
    counters.reset()
    if settings.REDIS_URL:
        redisclient.sync_client().delete(*[f"oversight:count:{k}" for k in ("a", "b", "w")])


def test_it_counts_events_per_key():
    assert [counters.hit("a", 60) for _ in range(3)] == [1, 2, 3]
    assert counters.hit("b", 60) == 1


def test_a_new_window_starts_from_one():
    assert counters.hit("w", 1) == 1
    assert counters.hit("w", 1) == 2
    time.sleep(1.1)
    assert counters.hit("w", 1) == 1
