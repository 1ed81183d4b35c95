"""A real server for end-to-end tests: the web server in a subprocess on the embedded default, on a temp SQLite
file.

Used by tests/browser (Playwright) and tests/dev/test_bots.py (the HTTP bots). Not pytest-django's
`live_server`: that runs in the test process on the test database; this runs the same process as
production (`oversight_dev.servers.web_command`: the server `make run` and the image use, with the in-process
deadline sweeper) on its own database, which the tests prepare and inspect through `manage.py` subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from oversight_dev.servers import DEFAULT as DEFAULT_SERVER
from oversight_dev.servers import web_command

REPO = Path(__file__).resolve().parent.parent
# Anything that would switch on a production part (or point at another database) is removed.
SCRUBBED_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "DEADLINE_SWEEPER",
    "TGI_URL",
    "TGI_TOKEN",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECRET_KEY",
    "STATIC_ROOT",
    "MEDIA_ROOT",
    "DJANGO_SETTINGS_MODULE",
    "SECURE_SSL_REDIRECT",
    "SECURE_COOKIES",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV and not k.startswith("PYTEST_")}
    env.update(
        {
            "SQLITE_PATH": str(tmp / "db.sqlite3"),
            "DATA_DIR": str(tmp),
            "DEBUG": "1",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


@dataclass
class LiveServer:
    base_url: str
    port: int
    env: dict[str, str]
    tmp: Path
    log_path: Path

    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run `manage.py <args>` against the server's database."""
        return run_manage(self.env, *args, timeout=timeout, check=check)

    def query(self, code: str) -> object:
        """Run Python in `manage.py shell` against the server's database; the code sets `result` (JSON-able)."""
        wrapped = f"import json\nresult = None\n{code}\nprint('@@RESULT@@' + json.dumps(result, default=str))"
        out = self.manage("shell", "-c", wrapped).stdout
        line = next(x for x in reversed(out.splitlines()) if x.startswith("@@RESULT@@"))
        return json.loads(line.removeprefix("@@RESULT@@"))

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def run_manage(env: dict[str, str], *args: str, timeout: float = 120, check: bool = True):
    proc = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args[:2])} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def _wait_until_up(url: str, proc: subprocess.Popen, log_path: Path, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the web server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"the web server did not answer on {url} in {deadline_s} s:\n{log_path.read_text(errors='replace')}"
    )


@contextlib.contextmanager
def live_server(
    tmp: Path,
    *,
    seed_args: Sequence[str] | None = ("--mmlu-time-limit", "20", "--quality-time-limit", "20"),
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """Migrate a fresh SQLite database in `tmp`, run `seed_demo` (unless seed_args is None) and serve it.

    `{port}` in a seed argument is replaced by the server's port (e.g. a completion URL on the server).
    `extra_env` is merged into the server's environment after the scrub, so a test can switch on a part on
    purpose (e.g. `{"TGI_URL": tgi.url}` for the demo's "Demo TGI" endpoint); it applies to the seed too.
    The server's processes are always stopped on exit.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = server_env(tmp)
    if extra_env:
        env.update({k: str(v) for k, v in extra_env.items()})
    run_manage(env, "migrate", "--noinput", "-v", "0")
    if seed_args is not None:
        run_manage(env, "seed_demo", *[a.replace("{port}", str(port)) for a in seed_args])
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            web_command(DEFAULT_SERVER, "127.0.0.1", port),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_up(base_url, proc, log_path)
        yield LiveServer(base_url=base_url, port=port, env=env, tmp=tmp, log_path=log_path)
    finally:
        # The whole group: granian serves from a worker process of its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
