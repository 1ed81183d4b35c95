"""With Redis, a reply generated in one web process streams to a page connected to another, without loss; and
when that process is killed mid-reply, the page's next message is answered by the other ~2 s later."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.db import connection

from oversight.assistant.models import ChatMessage
from oversight_dev.faketgi import FakeTGI
from tests.assistant.test_chat import connect, send, setup

pytestmark = [pytest.mark.redis, pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
# Plain words (one token each for the fake), well under the condition's max_tokens.
REPLY = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"] * 10)


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def start_process_a(token: str, position: int, *args: str) -> subprocess.Popen:
    if connection.vendor != "postgresql":
        pytest.skip("two processes need a shared database: run on the PostgreSQL pass")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.assistant.process_a", token, str(position), *args],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": database_url()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_a_reply_streams_from_the_process_generating_it_to_a_page_on_another_process():
    with FakeTGI(ttft_ms=50, tokens_per_s=40, reply=REPLY) as tgi:
        trial = await setup(tgi.url)
        token = await sync_to_async(lambda: trial.participant.token)()
        process_a = start_process_a(token, trial.position)
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


async def test_when_the_generating_process_is_killed_a_message_sent_at_once_is_answered_about_two_seconds_later():
    with FakeTGI(ttft_ms=50, tokens_per_s=10, reply=REPLY) as tgi:
        trial = await setup(tgi.url)
        token = await sync_to_async(lambda: trial.participant.token)()
        process_a = start_process_a(token, trial.position, "hold")
        try:
            assert process_a.stdout.readline().strip() == "DETACHED", process_a.stderr.read()
            ws, history = await connect(trial, reconnect=True)
            reply = history["messages"][-1]
            assert reply["status"] == "streaming"
            process_a.send_signal(signal.SIGKILL)  # as a web process dies: no goodbye, no final write
            process_a.wait()
            killed_at = time.monotonic()
            tgi.configure(reply="Yes, still here.", tokens_per_s=0)
            await send(ws, "Hello? Are you still there?", client_id="after-kill")
            statuses = {}
            while "answered" not in statuses:
                frame = await ws.receive_json_from(timeout=10)
                if frame["type"] != "message":
                    continue
                message = frame["message"]
                if message["id"] == reply["id"] and message["status"] == "interrupted":
                    statuses["interrupted"] = time.monotonic() - killed_at
                elif message["role"] == "user":
                    statuses[message["status"]] = time.monotonic() - killed_at
                elif message["role"] == "assistant" and message["status"] == "complete":
                    statuses["answered"] = time.monotonic() - killed_at
            await ws.disconnect()
        finally:
            process_a.kill()
            process_a.wait()
    # Sent while the dead reply still looked alive: stored at once, as queued ...
    assert statuses["queued"] < 1.0, statuses
    # ... and sent ~2 s later, when the reply's silence and its process's lapsed lease show it dead.
    assert statuses["interrupted"] <= 3.5, statuses
    assert statuses["complete"] <= 3.5, statuses
    stored = await sync_to_async(lambda: list(ChatMessage.objects.filter(trial=trial).order_by("seq")))()
    assert [(m.role, m.status) for m in stored] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert stored[1].content and REPLY.startswith(stored[1].content)
    print(f"seconds after the kill: {statuses}")
