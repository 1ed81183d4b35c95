"""The Redis clients of the web and worker processes survive a restart of Redis (kill -9, started again).

Narrower and faster than tests/faults scenario b (no topology, ~10 s in all), each against a redis-server of its
own (never the machine's shared one):

* a real `celery worker` (the project's settings) holding an unacknowledged eta task — as every worker does
  during a study, one per shown trial's deadline — when its Redis restarts. With kombu 5.7's own Redis
  transport the worker exited ("Unrecoverable error: AttributeError('NoneType' object has no attribute
  'hostname')"; oversight/celery.py explains the path); settings.CELERY_BROKER_TRANSPORT fixes it;
* the channel layer as settings.CHANNEL_LAYERS configures it: with redis-py 8's defaults, the first command on
  each pooled connection failed after the restart (a streaming reply died with it); the hosts' `retry` fixes it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.topology import REDIS_SERVER, REPO, _settings_vars, free_port

pytestmark = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

BIN = Path(sys.executable).parent
SEND = """
import sys
from datetime import timedelta
from django.utils import timezone
from oversight.celery import app
eta = timezone.now() + timedelta(seconds=float(sys.argv[2])) if len(sys.argv) > 2 else None
print(app.send_task(sys.argv[1], args=[1], queue="worker-restart", eta=eta).id)
"""


def _start_redis(port: int, tmp: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait(
        lambda: (
            subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip()
            == "PONG"
        ),
        10,
        "redis-server did not start",
    )
    return proc


def _wait(check, timeout_s: float, message: str) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(message)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_a_worker_survives_a_redis_restart_and_keeps_processing(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _settings_vars() and not k.startswith("PYTEST_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "oversight.settings",
            "REDIS_URL": f"redis://127.0.0.1:{port}/3",
            "DATA_DIR": str(tmp_path / "data"),
            "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
            "CELERY_QUEUE": "worker-restart",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log_path = tmp_path / "worker.log"
    redis = worker = None
    try:
        redis = _start_redis(port, tmp_path)
        with open(log_path, "w") as log:
            worker = subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "oversight",
                    "worker",
                    "--pool=solo",
                    "--loglevel",
                    "INFO",
                    "--queues",
                    "worker-restart",
                    "--without-gossip",
                    "--without-mingle",
                    "--hostname",
                    "restart@%h",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def log_text() -> str:
            return log_path.read_text(errors="replace")

        def send(task: str, *eta_s: str) -> str:
            out = subprocess.run(
                [sys.executable, "-c", f"import django; django.setup()\n{SEND}", task, *eta_s],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr[-2000:]
            return out.stdout.strip().splitlines()[-1]

        _wait(
            lambda: re.search(r"\bready\.", log_text()) is not None or worker.poll() is not None,
            60,
            "the worker did not start",
        )
        assert worker.poll() is None, log_text()[-3000:]
        held = send("celery.accumulate", "600")  # an eta task: the worker holds it, unacknowledged
        _wait(lambda: f"[{held}] received" in log_text(), 20, "the eta task was not received")

        redis.kill()  # SIGKILL: no goodbye to its clients, everything in it lost (no persistence)
        redis.wait(10)
        _wait(
            lambda: "Connection to broker lost" in log_text() or worker.poll() is not None,
            20,
            "the worker did not notice the broker was gone",
        )
        time.sleep(2)
        redis = _start_redis(port, tmp_path)

        # It reconnects by itself and runs the next task.
        after = send("celery.accumulate")
        _wait(
            lambda: f"[{after}] succeeded" in log_text() or worker.poll() is not None,
            60,
            "the task sent after the restart did not run",
        )
        assert worker.poll() is None, f"the worker exited with {worker.returncode}:\n{log_text()[-4000:]}"
        assert "Unrecoverable error" not in log_text(), log_text()[-4000:]
        assert f"[{after}] succeeded" in log_text()
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                _stop(worker)
        _stop(redis)


def test_the_channel_layer_survives_a_redis_restart(tmp_path, settings):
    from channels_redis.core import RedisChannelLayer

    port = free_port()
    config = dict(settings.CHANNEL_LAYERS["default"]["CONFIG"])
    config["hosts"] = [{**host, "address": f"redis://127.0.0.1:{port}/0"} for host in config["hosts"]]
    redis = None
    try:
        redis = _start_redis(port, tmp_path)

        async def main() -> list:
            layer = RedisChannelLayer(**config)
            try:
                channel = await layer.new_channel()
                await layer.group_add("restart", channel)
                # Several pooled connections in use, as in a web process streaming replies to many pages.
                await asyncio.gather(*[layer.group_send(f"warm-{i}", {"type": "x"}) for i in range(8)])
                redis.kill()
                redis.wait(10)
                await asyncio.sleep(1)
                restarted = _start_redis(port, tmp_path)
                results = await asyncio.gather(
                    *[layer.group_send(f"after-{i}", {"type": "x"}) for i in range(8)], return_exceptions=True
                )
                # The groups were lost with Redis (no persistence): a page joins again when it reconnects.
                await layer.group_add("restart", channel)
                await layer.group_send("restart", {"type": "chat.delta", "text": "still here"})
                results.append(await asyncio.wait_for(layer.receive(channel), 10))
                return [restarted, results]
            finally:
                await layer.flush()

        restarted, results = asyncio.run(main())
        redis = restarted
        failed = [repr(r) for r in results if isinstance(r, BaseException)]
        assert not failed, f"{len(failed)} of 8 channel-layer sends failed after the restart: {failed[:3]}"
        assert results[-1] == {"type": "chat.delta", "text": "still here"}
    finally:
        _stop(redis)
