"""Fixtures for the baseline tests: small banks written per test, endpoints, and a fake TGI per test."""

import math

import pytest

from oversight.banks.models import Bank, Item, Passage, content_hash
from oversight.baselines.runner import create_run, execute
from oversight.core.models import ModelEndpoint
from oversight_dev.faketgi import FakeTGI

# Every option letter in the top 5, the way a GPT-2/Llama-3 style tokeniser spells them after "Assistant:".
SCRIPTED = {" A": -1.2, " B": -0.4, " C": -2.5, " D": -0.9}


def softmax(values):
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    return [w / sum(weights) for w in weights]


def make_items(bank, n, *, subjects=("physics",), split="test", passage=None, prefix="q", gold=None):
    stored = None
    if passage is not None:
        stored = Passage.objects.create(
            bank=bank,
            external_id=f"{prefix}-story",
            title="A story",
            text=passage,
            content_hash=content_hash({"text": passage}),
        )
    items = []
    for i in range(n):
        items.append(
            Item.objects.create(
                bank=bank,
                external_id=f"{prefix}{i}",
                subject=subjects[i % len(subjects)],
                split=split,
                text=f"Question {prefix}{i}: which is right?",
                options=[f"first {i}", f"second {i}", f"third {i}", f"fourth {i}"],
                gold_index=(i % 4) if gold is None else gold,
                passage=stored,
                content_hash=content_hash({"i": i, "prefix": prefix}),
            )
        )
    return items


@pytest.fixture
def bank():
    return Bank.objects.create(name="Unit MMLU", format=Bank.Format.MMLU)


@pytest.fixture
def tgi():
    with FakeTGI(letter_logprobs=SCRIPTED) as server:
        yield server


@pytest.fixture
def endpoint(tgi):
    return ModelEndpoint.objects.create(
        name="fake-tgi", kind="tgi", base_url=tgi.url, request_timeout_s=5, max_concurrency=8
    )


@pytest.fixture
def run_baseline():
    """run_baseline(endpoint=…, bank=…, method=…, params=…) -> the finished run (executed in this thread)."""

    def run(**kwargs):
        kwargs.setdefault("method", "zero-shot")
        params = {"retry_base_s": 0.01, "retry_cap_s": 0.05, **kwargs.pop("params", {})}
        run = create_run(params=params, **kwargs)
        result = execute(run.pk)
        run.refresh_from_db()
        run.execution = result
        return run

    return run


def generation_requests(tgi):
    return [r for r in tgi.requests if r.method == "POST"]
