"""Fixtures for the fake TGI: a server per test (its own thread and loop) and clients pointed at it."""

import pytest
from huggingface_hub import InferenceClient

from oversight_dev.faketgi import FakeTGI


@pytest.fixture
def tgi():
    with FakeTGI() as server:
        yield server


@pytest.fixture
def client(tgi):
    return InferenceClient(base_url=tgi.url, timeout=5)


@pytest.fixture
def messages():
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is deep learning?"},
    ]
