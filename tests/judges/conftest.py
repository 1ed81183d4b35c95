"""Fixtures for the model-judge tests: a study judged by bots, whose trials a model judge replays."""

import pytest

from oversight_dev.bots import BotConfig, check_run, run_bots_in_process
from tests.factories import make_protocol_study


@pytest.fixture
def bot_study():
    study = make_protocol_study(
        slug="replay",
        conditions=(("unaided", {}), ("debate", {"transcripts": "static", "rounds": 2})),
        n_items=3,
        disjoint=False,
        confidence_format="slider",
    )
    run = run_bots_in_process(BotConfig(slug="replay", participants=2, seed=3, timeout_rate=0.0, messages_per_item=0))
    assert run.errors == [] and check_run(run).ok
    return study
