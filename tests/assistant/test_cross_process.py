"""With Redis, a reply generated in one web process streams to a page connected to another, without loss."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.db import connection

from oversight.assistant.models import ChatMessage
from oversight_dev.faketgi import FakeTGI
from tests.assistant.test_chat import connect, setup

pytestmark = [pytest.mark.redis, pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
# Plain words (one token each for the fake), well under the condition's max_tokens.
REPLY = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"] * 10)


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


async def test_a_reply_streams_from_the_process_generating_it_to_a_page_on_another_process():
    if connection.vendor != "postgresql":
        pytest.skip("two processes need a shared database: run on the PostgreSQL pass")
    with FakeTGI(ttft_ms=50, tokens_per_s=40, reply=REPLY) as tgi:
        trial = await setup(tgi.url)
        token = await sync_to_async(lambda: trial.participant.token)()
        env = {**os.environ, "DATABASE_URL": database_url()}
        process_a = subprocess.Popen(
            [sys.executable, "-m", "tests.assistant.process_a", token, str(trial.position)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process_a.stdout.readline().strip() == "DETACHED", process_a.stderr.read()
            ws, history = await connect(trial, reconnect=True)  # this process never generated anything
            streaming = history["messages"][-1]
            assert streaming["role"] == "assistant" and streaming["status"] == "streaming"
            text = streaming["text"]
            assert 0 < len(text) < len(REPLY)
            while True:
                frame = await ws.receive_json_from(timeout=15)
                if frame["type"] == "delta":
                    assert frame["offset"] <= len(text), "a gap between the snapshot and the stream"
                    text += frame["text"][len(text) - frame["offset"] :]
                elif frame["type"] == "message" and frame["message"]["status"] != "streaming":
                    assert frame["message"]["status"] == "complete"
                    break
            await ws.disconnect()
            assert process_a.stdout.readline().strip() == "DONE"
        finally:
            process_a.kill()
            process_a.wait()
    assert text == REPLY
    stored = await sync_to_async(ChatMessage.objects.get)(trial=trial, role="assistant")
    assert stored.content == REPLY and stored.status == "complete" and stored.finish_reason != "length"
