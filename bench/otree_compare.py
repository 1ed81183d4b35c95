"""The participant path side by side with oTree: the same flow, the same client, in the same run, interleaved.

Each participant joins through the public link (the platform: the consent page and its POST, as a Prolific
participant does; oTree: its session-wide link with a participant label) and then answers 20 unaided
MMLU-style items, each with an answer and a 5-point confidence, with a 300 s limit per item and **zero think
time**: every participant sends its next request as soon as the previous one is answered, so N participants
keep N requests in flight. The items are generated here (never ../shared data) and given to both sides.

Targets, each started fresh for every run (a new database each time), one after another for every N and
repetition (`--targets` chooses, in this order):

* `otree`: oTree 6.0.15 (`pip install otree==6.0.15` into a throwaway venv under --cache, once) serving
  bench/otree_app/ with `otree prodserver`, its default server, on its default database (SQLite).
* `embedded`: the platform as `make run` serves it (no environment but its own temp SQLite file; the server
  command is `--server`'s: daphne, uvicorn or granian, installed in .venv).
* `topology`: the production topology on one machine (tests/topology.py: nginx, `--web` web processes,
  one Celery worker and beat, PostgreSQL, Redis), as docs/topology.md describes.

The client is this process: one asyncio loop, one keep-alive HTTP/1.1 connection and cookie jar per
participant, written on asyncio streams (no HTTP library: it must stay cheap on a 2-core box, and its own CPU
time is reported). Redirects are followed as a browser does. `--mode htmx` sends the platform's answer POST with
`HX-Request: true` and takes the next item from its answer (one round trip per answer) instead of following
POST → 303 → GET; the client detects which the server did, so it works against either version of the platform.
A 503 with Retry-After (the server's back-pressure) is waited out and retried, as the page does, and counted
separately; any other status ≥ 400 or a failed connection is an **error** (the participant then retries the
step after a second, up to 5 times, as a person reloading would).

For each run: answers/s (answers acknowledged ÷ wall time from the first request to the last participant
done), p50/p95/p99 of GET and of POST latency, errors, answers stored in the database checked against 20·N,
the server's CPU (its process group, /proc) and the client's own CPU per answer, the load average before.

    .venv/bin/python bench/otree_compare.py                        # N = 10 50 200 500, 3 repetitions, all targets
    .venv/bin/python bench/otree_compare.py --n 50 --reps 1        # a subset
    .venv/bin/python bench/otree_compare.py --n 50 --targets embedded otree --server uvicorn
    .venv/bin/python bench/otree_compare.py --n 200 --targets topology --web 1     # cores: 1 vs 2 web processes

The table (medians over the repetitions) is printed and, with --out, written as JSON with every run's numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# What the embedded target serves: this checkout, or with --app another one (a "before" row from an older commit:
# `git archive <commit> | tar -x -C /tmp/before`), run with this checkout's virtualenv.
APP_DIR = REPO

from oversight_dev.servers import DEFAULT as DEFAULT_SERVER  # noqa: E402
from oversight_dev.servers import SERVERS, group_cpu_s, web_command  # noqa: E402

OTREE_VERSION = "6.0.15"
OTREE_APP = Path(__file__).resolve().parent / "otree_app"
ITEMS_PER_PARTICIPANT = 20
TIME_LIMIT_S = 300
LIKERT = (25, 42, 60, 80, 100)
SLUG = "otree-compare"

# --- the items: generated, the same for both sides ----------------------------------------------------------


def generate_items(n: int = ITEMS_PER_PARTICIPANT, seed: int = 15) -> list[dict]:
    """MMLU-shaped arithmetic items (a question, four options, one gold answer), as long as MMLU's typical ones."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        gold = a * b
        options = {gold}
        while len(options) < 4:
            options.add(gold + rng.choice([-1, 1]) * rng.randint(1, 40))
        options = sorted(options)
        items.append(
            {
                "id": f"gen-{i:03d}",
                "question": (
                    f"A warehouse stores {a} crates on each of {b} shelves. Every crate holds exactly one unit of "
                    "stock, and no shelf is empty or over-full. How many units of stock are stored in total?"
                ),
                "options": [str(x) for x in options],
                "answer": options.index(gold),
                "subject": "elementary_mathematics",
            }
        )
    return items


# --- a small HTTP/1.1 client ----------------------------------------------------------------------------------


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str
    url: str


class Connection:
    """One keep-alive connection and cookie jar: what a browser tab holds for one site."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.cookies: dict[str, str] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, method: str, url: str, data: dict | None = None, headers: dict | None = None) -> Response:
        try:
            return await asyncio.wait_for(self._request(method, url, data, headers), self.timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, HttpError) as exc:
            await self.close()
            raise HttpError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    async def _request(self, method: str, url: str, data: dict | None, headers: dict | None) -> Response:
        path = urlsplit(url)
        target = (path.path or "/") + (f"?{path.query}" if path.query else "")
        body = urlencode(data).encode() if data is not None else b""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: text/html"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if data is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
            lines += [f"Origin: {self.base_url}", f"Referer: {self.base_url}{target}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        for attempt in (0, 1):
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(raw)
            try:
                await self.writer.drain()
                status_line = await self.reader.readline()
            except (ConnectionResetError, BrokenPipeError):
                status_line = b""
            if status_line:
                break
            # The server closed an idle keep-alive connection: once more on a new one (as browsers do).
            await self.close()
            if fresh or attempt:
                raise HttpError("connection closed before a response")
        parts = status_line.decode("latin-1").split(" ", 2)
        status = int(parts[1])
        response_headers: dict[str, str] = {}
        while True:
            line = (await self.reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                cookie = value.split(";", 1)[0]
                key, _, val = cookie.partition("=")
                if val and "expires=thu, 01 jan 1970" not in value.lower():
                    self.cookies[key.strip()] = val.strip()
                else:
                    self.cookies.pop(key.strip(), None)
            response_headers[name] = value
        if response_headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            content = b"".join(chunks)
        elif "content-length" in response_headers:
            content = await self.reader.readexactly(int(response_headers["content-length"]))
        elif method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            content = b""
        else:
            content = await self.reader.read()
            await self.close()
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, response_headers, content.decode("utf-8", "replace"), url)


# --- pages: just enough HTML reading for the two flows --------------------------------------------------------

FORM = re.compile(r"<form\b(?P<attrs>[^>]*)>(?P<body>.*?)</form>", re.S | re.I)
INPUT = re.compile(r"<input\b(?P<attrs>[^>]*)>", re.I)
ATTR = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')


@dataclass
class PageForm:
    action: str
    hidden: dict[str, str]
    radios: dict[str, list[str]]


def post_form(page: str, url: str) -> PageForm | None:
    """The page's first POST form that asks for an answer (radio buttons named choice), or any POST form."""
    found = None
    for match in FORM.finditer(page):
        attrs = dict(ATTR.findall(match.group("attrs")))
        if attrs.get("method", "get").lower() != "post":
            continue
        hidden: dict[str, str] = {}
        radios: dict[str, list[str]] = {}
        for inp in INPUT.finditer(match.group("body")):
            a = dict(ATTR.findall(inp.group("attrs")))
            kind, name = a.get("type", "text").lower(), a.get("name")
            if not name:
                continue
            if kind == "hidden":
                hidden[name] = html.unescape(a.get("value", ""))
            elif kind == "radio":
                radios.setdefault(name, []).append(html.unescape(a.get("value", "")))
        form = PageForm(urljoin(url, html.unescape(attrs.get("action", "")) or url), hidden, radios)
        if "choice" in radios:
            return form
        found = found or form
    return found


# --- one participant ------------------------------------------------------------------------------------------


@dataclass
class Stats:
    get_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    answers: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    retried_503: int = 0
    requests: int = 0
    one_trip_answers: int = 0  # answers whose POST itself returned the next item (htmx)
    finished: int = 0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 8:
            self.error_samples.append(message[:300])


class Participant:
    MAX_RETRIES = 5

    def __init__(self, base_url: str, stats: Stats, rng: random.Random, timeout_s: float, htmx: bool) -> None:
        self.conn = Connection(base_url, timeout_s)
        self.stats = stats
        self.rng = rng
        self.htmx = htmx
        self.base_url = base_url

    async def send(self, method: str, url: str, data: dict | None = None, headers: dict | None = None) -> Response:
        """One request, waiting out back-pressure (503 + Retry-After) the way the page does."""
        while True:
            t0 = time.perf_counter()
            response = await self.conn.request(method, url, data, headers)
            elapsed = (time.perf_counter() - t0) * 1000
            self.stats.requests += 1
            (self.stats.post_ms if method == "POST" else self.stats.get_ms).append(elapsed)
            if response.status == 503 and "retry-after" in response.headers:
                self.stats.retried_503 += 1
                await asyncio.sleep(min(float(response.headers["retry-after"] or 1), 10))
                continue
            if response.status >= 400:
                raise HttpError(f"{method} {urlsplit(url).path}: HTTP {response.status}: {response.body[:200]!r}")
            return response

    async def follow(self, response: Response) -> Response:
        hops = 0
        while 300 <= response.status < 400 and "location" in response.headers:
            hops += 1
            if hops > 10:
                raise HttpError(f"redirect loop at {response.url}")
            response = await self.send("GET", urljoin(response.url, response.headers["location"]))
        for header in ("hx-redirect", "hx-location"):
            if header in response.headers:
                target = response.headers[header]
                if target.startswith("{"):
                    target = json.loads(target)["path"]
                return await self.follow(await self.send("GET", urljoin(response.url, target)))
        return response

    async def step(self, action):
        """Run one step (a function returning the page it ends on), retrying after an error as a person would."""
        for attempt in range(self.MAX_RETRIES + 1):
            try:
                return await action()
            except HttpError as exc:
                self.stats.error(str(exc))
                if attempt == self.MAX_RETRIES:
                    raise
                await asyncio.sleep(1)

    def answer(self, form: PageForm) -> dict:
        data = dict(form.hidden)
        data["choice"] = self.rng.choice(form.radios["choice"])
        data["confidence"] = self.rng.choice(form.radios.get("confidence") or [str(x) for x in LIKERT])
        data.pop("auto", None)
        return data

    async def answer_all(self, page: Response) -> None:
        while True:
            form = post_form(page.body, page.url)
            if form is None or "choice" not in form.radios:
                self.stats.finished += 1
                return
            data = self.answer(form)
            current = page

            async def submit(form=form, data=data, current=current) -> Response:
                headers = {"HX-Request": "true", "HX-Current-URL": current.url} if self.htmx else None
                response = await self.send("POST", form.action, data, headers)
                self.stats.answers += 1
                if response.status == 200 and self.htmx:
                    self.stats.one_trip_answers += 1
                return await self.follow(response)

            page = await self.step(submit)


async def platform_participant(base_url: str, i: int, stats: Stats, rng, timeout_s: float, htmx: bool) -> None:
    p = Participant(base_url, stats, rng, timeout_s, htmx)
    try:
        link = f"{base_url}/s/{SLUG}/?" + urlencode(
            {"PROLIFIC_PID": f"bench{i:05d}", "STUDY_ID": "bench", "SESSION_ID": f"s{i}"}
        )

        async def join() -> Response:
            welcome = await p.send("GET", link)
            form = post_form(welcome.body, welcome.url)
            if form is None:
                raise HttpError(f"no consent form at {link}")
            return await p.follow(await p.send("POST", form.action, {**form.hidden, "consent": "yes"}))

        await p.answer_all(await p.step(join))
    except HttpError:
        pass  # counted; the participant gave up after MAX_RETRIES
    finally:
        await p.conn.close()


async def otree_participant(base_url: str, join_path: str, i: int, stats: Stats, rng, timeout_s: float) -> None:
    p = Participant(base_url, stats, rng, timeout_s, htmx=False)
    try:
        link = f"{base_url}{join_path}?participant_label=bench{i:05d}"

        async def join() -> Response:
            return await p.follow(await p.send("GET", link))

        await p.answer_all(await p.step(join))
    except HttpError:
        pass
    finally:
        await p.conn.close()


async def drive(participants) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*participants)
    return time.perf_counter() - t0


# --- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_up(url: str, proc: subprocess.Popen, log: Path, deadline_s: float = 90) -> None:
    import urllib.error
    import urllib.request

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server not up after {deadline_s} s:\n{log.read_text()[-3000:]}")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def speed_probe_ms() -> float:
    """A fixed pure-Python workload, timed (best of 3) just before a run. On the shared 2-vCPU VM the same work
    has cost anywhere between 1× and 2× its quietest time over a few minutes; this says which kind of minute a
    run had, so rows measured minutes apart are not read as if the machine were the same."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        sum(len(str(i)) for i in range(300_000))
        best = min(best, time.process_time() - start)
    return round(best * 1000, 1)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


# --- the platform's study ---------------------------------------------------------------------------------

STUDY = """
import json
from pathlib import Path
from django.contrib.auth import get_user_model
from oversight.banks.importers import import_custom
from oversight.core.models import Condition, Study, Task
from oversight.core.services.studies import study_launch
bank = import_custom(path=Path({path!r}), bank_name='Generated (otree_compare)', format='jsonl').bank
owner, _ = get_user_model().objects.get_or_create(username='bench-researcher')
study = Study.objects.create(slug={slug!r}, title='oTree comparison', owner=owner, sample_seed=1,
    reveal_gold=False, completion_code='BENCH-DONE', confidence_format='likert')
Condition.objects.create(study=study, kind='unaided', name='Unaided', position=0)
Task.objects.create(study=study, bank=bank, name='MMLU-style', position=0, sample_size={n}, time_limit_s={limit})
study_launch(study=study)
result = study.pk
"""

STORED = """
from oversight.core.models import Trial
result = Trial.objects.filter(participant__study__slug={slug!r}, status='answered').count()
"""


def write_items_jsonl(items: list[dict], path: Path) -> None:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": it["id"],
                    "question": it["question"],
                    "options": it["options"],
                    "answer": "ABCD"[it["answer"]],
                    "subject": it["subject"],
                }
            )
            + "\n"
            for it in items
        )
    )


def embedded_env(tmp: Path) -> dict[str, str]:
    """What `make run` runs with: the caller's environment without any of the settings' variables."""
    from tests.live_server import SCRUBBED_ENV

    scrub = set(SCRUBBED_ENV) | {
        "SERVE_LOCALLY",
        "WEB_THREADS",
        "WEB_QUEUE_S",
        "DEBUG",
        "DB_CONN_MAX_AGE",
        "DB_POOL",
        "SQLITE_PATH",
        "DATA_DIR",
        "LOG_LEVEL",
    }
    env = {k: v for k, v in os.environ.items() if k not in scrub}
    env.update(
        {
            "DATA_DIR": str(tmp / "var"),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "oversight.settings",
            "SERVE_LOCALLY": "1",  # as the Makefile's run target exports it
        }
    )
    return env


def manage(env: dict, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:2])}: {proc.stderr[-3000:]}")
    return proc.stdout


def shell(env: dict, code: str) -> object:
    wrapped = f"import json\nresult = None\n{code}\nprint('@@' + json.dumps(result))"
    out = manage(env, "shell", "-c", wrapped)
    return json.loads(next(x for x in reversed(out.splitlines()) if x.startswith("@@"))[2:])


# --- the targets ----------------------------------------------------------------------------------------------


@dataclass
class Served:
    base_url: str
    pgid: int | None  # the server's process group (CPU), None for the topology (measured per role)
    cpu_pids: list[int]  # process groups whose CPU counts as the server's
    participant: object  # coroutine factory (i, stats, rng) -> coroutine
    stored: object  # () -> int
    note: str = ""


def otree_venv(cache: Path) -> Path:
    venv = cache / f"otree-{OTREE_VERSION}"
    otree_bin = venv / "bin" / "otree"
    if not otree_bin.exists():
        print(f"  installing otree=={OTREE_VERSION} into {venv} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", f"otree=={OTREE_VERSION}"],
            check=True,
        )
    return venv


@contextlib.contextmanager
def serve_otree(tmp: Path, n: int, items: list[dict], args):
    venv = otree_venv(Path(args.cache))
    project = tmp / "otree"
    shutil.copytree(OTREE_APP, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "mmlu" / "items.json").write_text(json.dumps(items))
    (project / "_static").mkdir(exist_ok=True)  # oTree refuses to start without it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "OTREE"))}
    env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "OTREE_PRODUCTION": "1",
            "OTREE_ADMIN_PASSWORD": "bench",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [str(venv / "bin" / "otree"), "create_session", "mmlu", str(n)],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    with sqlite3.connect(project / "db.sqlite3") as db:
        (anonymous_code,) = db.execute("SELECT _anonymous_code FROM otree_session").fetchone()
    port = free_port()
    log = tmp / "otree.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "otree"), "prodserver", f"127.0.0.1:{port}"],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_up(base_url + "/", proc, log)

        def stored() -> int:
            with sqlite3.connect(project / "db.sqlite3") as db:
                return db.execute("SELECT count(*) FROM mmlu_player WHERE choice IS NOT NULL").fetchone()[0]

        yield Served(
            base_url,
            proc.pid,
            [proc.pid],
            lambda i, stats, rng: otree_participant(base_url, f"/join/{anonymous_code}", i, stats, rng, args.timeout),
            stored,
            note=f"otree {OTREE_VERSION} prodserver (uvicorn), SQLite",
        )
    finally:
        stop_group(proc)


@contextlib.contextmanager
def serve_embedded(tmp: Path, n: int, items: list[dict], args):
    env = {**embedded_env(tmp), **dict(kv.split("=", 1) for kv in args.env)}
    items_path = tmp / "items.jsonl"
    write_items_jsonl(items, items_path)
    manage(env, "migrate", "--noinput", "-v", "0")
    shell(env, STUDY.format(path=str(items_path), slug=SLUG, n=ITEMS_PER_PARTICIPANT, limit=TIME_LIMIT_S))
    port = free_port()
    log = tmp / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            web_command(args.server, "127.0.0.1", port),
            cwd=APP_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_up(base_url + "/healthz", proc, log)
        yield Served(
            base_url,
            proc.pid,
            [proc.pid],
            lambda i, stats, rng: platform_participant(base_url, i, stats, rng, args.timeout, args.mode == "htmx"),
            lambda: shell(env, STORED.format(slug=SLUG)),
            note=f"embedded default: {args.server}, SQLite",
        )
    finally:
        stop_group(proc)
        if args.keep_logs:
            shutil.copy(log, Path(args.keep_logs) / f"embedded-{n}-{int(time.time())}.log")


@contextlib.contextmanager
def serve_topology(tmp: Path, n: int, items: list[dict], args):
    from tests.topology import topology

    items_path = tmp / "items.jsonl"
    write_items_jsonl(items, items_path)
    extra_env = {"LOG_LEVEL": "WARNING", **dict(kv.split("=", 1) for kv in args.env)}
    # nginx needs two connections per participant in flight (theirs and the upstream's): at N = 500 the
    # topology's default of 1,024 dropped new connections ("connection closed before a response").
    with topology(
        tmp / "topo", web_workers=args.web, celery_workers=1, extra_env=extra_env, nginx_worker_connections=4096
    ) as topo:
        topo.shell(STUDY.format(path=str(items_path), slug=SLUG, n=ITEMS_PER_PARTICIPANT, limit=TIME_LIMIT_S))
        pids = [topo.procs[role].popen.pid for role in topo.web_roles()]

        def stored() -> int:
            return topo.sql(
                "SELECT count(*) FROM core_trial t JOIN core_participant p ON p.id = t.participant_id "
                "JOIN core_study s ON s.id = p.study_id WHERE s.slug = %s AND t.status = 'answered'",
                (SLUG,),
            )[0][0]

        yield Served(
            topo.base_url,
            None,
            pids,
            lambda i, stats, rng: platform_participant(topo.base_url, i, stats, rng, args.timeout, args.mode == "htmx"),
            stored,
            note=f"topology: nginx + {args.web} web ({topo.procs['web1'].argv[2]}), PostgreSQL + Redis",
        )


TARGETS = {"otree": serve_otree, "embedded": serve_embedded, "topology": serve_topology}


def run_once(target: str, n: int, rep: int, items: list[dict], args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"otree-compare-{target}-"))
    try:
        with TARGETS[target](tmp, n, items, args) as served:
            time.sleep(args.settle)
            load_before = loadavg()
            probe_ms = speed_probe_ms()
            stats = Stats()
            rng = random.Random(rep * 100_003 + n)
            cpu0 = sum(group_cpu_s(pid) for pid in served.cpu_pids)
            client0 = os.times()
            wall = asyncio.run(drive([served.participant(i, stats, random.Random(rng.random())) for i in range(n)]))
            client1 = os.times()
            cpu1 = sum(group_cpu_s(pid) for pid in served.cpu_pids)
            time.sleep(0.5)
            stored = served.stored()
            note = served.note
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    client_cpu = (client1.user - client0.user) + (client1.system - client0.system)
    row = {
        "target": target,
        "n": n,
        "rep": rep,
        "note": note,
        "load_before": load_before,
        "speed_probe_ms": probe_ms,
        "wall_s": round(wall, 2),
        "answers": stats.answers,
        "answers_per_s": round(stats.answers / wall, 2) if wall else 0,
        "stored": stored,
        "expected": ITEMS_PER_PARTICIPANT * n,
        "finished": stats.finished,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "retried_503": stats.retried_503,
        "requests": stats.requests,
        "requests_per_answer": round(stats.requests / max(stats.answers, 1), 2),
        "one_trip_answers": stats.one_trip_answers,
        "get_ms": [pct(stats.get_ms, p) for p in (50, 95, 99)],
        "post_ms": [pct(stats.post_ms, p) for p in (50, 95, 99)],
        "server_cpu_ms_per_answer": round((cpu1 - cpu0) * 1000 / max(stats.answers, 1), 1),
        "server_cpu_share": round((cpu1 - cpu0) / wall, 2) if wall else 0,
        "client_cpu_ms_per_answer": round(client_cpu * 1000 / max(stats.answers, 1), 2),
        "client_cpu_share": round(client_cpu / wall, 2) if wall else 0,
    }
    return row


def fmt_ms(values) -> str:
    return " / ".join("–" if v is None else f"{v:,.0f}" for v in values)


def summarise(rows: list[dict], targets: list[str], ns: list[int]) -> str:
    out = [
        "| N | target | answers/s (median; runs) | ÷ oTree | GET p50/p95/p99 ms | POST p50/p95/p99 ms | errors | "
        "stored / 20·N | req/answer | server CPU ms/answer | client CPU ms/answer (share of a core) | "
        "load avg before | speed probe ms |",
        "|---:|---|---|---:|---|---|---:|---|---:|---:|---|---|---|",
    ]
    for n in ns:
        medians = {}
        for target in targets:
            runs = [r for r in rows if r["target"] == target and r["n"] == n]
            if runs:
                medians[target] = statistics.median(r["answers_per_s"] for r in runs)
        for target in targets:
            runs = sorted((r for r in rows if r["target"] == target and r["n"] == n), key=lambda r: r["answers_per_s"])
            if not runs:
                continue
            mid = runs[len(runs) // 2]
            ratio = (
                f"{medians[target] / medians['otree']:.2f}×"
                if "otree" in medians and medians["otree"] and target != "otree"
                else "–"
            )
            rates = ", ".join(f"{r['answers_per_s']:.1f}" for r in runs)
            stored = ", ".join(f"{r['stored']}/{r['expected']}" for r in runs)
            errors = ", ".join(str(r["errors"]) for r in runs)
            loads = "; ".join(r["load_before"].split()[0] for r in runs)
            probes = "; ".join(str(r.get("speed_probe_ms", "–")) for r in runs)
            out.append(
                f"| {n} | {target} | {medians[target]:.1f} ({rates}) | {ratio} | {fmt_ms(mid['get_ms'])} | "
                f"{fmt_ms(mid['post_ms'])} | {errors} | {stored} | {mid['requests_per_answer']} | "
                f"{mid['server_cpu_ms_per_answer']} | {mid['client_cpu_ms_per_answer']} "
                f"({mid['client_cpu_share']:.0%}) | {loads} | {probes} |"
            )
    return "\n".join(out)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10, 50, 200, 500], help="participants per run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--targets", nargs="+", choices=list(TARGETS), default=["otree", "embedded", "topology"])
    ap.add_argument("--server", choices=SERVERS, default=None, help="the embedded default's server (make run's)")
    ap.add_argument("--web", type=int, default=2, help="web processes in the topology")
    ap.add_argument(
        "--env", nargs="*", default=[], metavar="NAME=VALUE", help="extra settings for the platform's targets"
    )
    ap.add_argument(
        "--mode",
        choices=["classic", "htmx"],
        default="htmx",
        help="htmx: answer POSTs carry HX-Request (one round trip where the server supports it)",
    )
    ap.add_argument("--timeout", type=float, default=120, help="seconds one request may take before it is an error")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between a server's start and its run")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "oversight-bench-cache"))
    ap.add_argument("--out", help="write every run's numbers here (JSON)")
    ap.add_argument("--app", help="serve this checkout of oversight as the embedded target (default: this one)")
    ap.add_argument("--keep-logs", help="copy the embedded server's log into this folder")
    args = ap.parse_args(argv)
    if args.server is None:
        args.server = DEFAULT_SERVER
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    global APP_DIR
    if args.app:
        APP_DIR = Path(args.app).resolve()
    items = generate_items()
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    print(
        f"otree_compare: N={args.n}, reps={args.reps}, targets={args.targets}, server={args.server}, "
        f"mode={args.mode}, web={args.web}; {os.cpu_count()} CPUs; load average {loadavg()}",
        flush=True,
    )
    try:
        for rep in range(args.reps):
            for n in args.n:
                for target in args.targets:
                    row = run_once(target, n, rep, items, args)
                    rows.append(row)
                    print(
                        f"  rep {rep} N={n:>4} {target:<9} {row['answers_per_s']:7.1f} answers/s  "
                        f"GET {fmt_ms(row['get_ms'])}  POST {fmt_ms(row['post_ms'])} ms  errors {row['errors']} "
                        f"(503 waited {row['retried_503']})  stored {row['stored']}/{row['expected']}  "
                        f"{row['requests_per_answer']} req/answer  server {row['server_cpu_ms_per_answer']} ms/answer "
                        f"({row['server_cpu_share']:.0%})  client {row['client_cpu_ms_per_answer']} ms/answer "
                        f"({row['client_cpu_share']:.0%})  load {row['load_before']}  "
                        f"probe {row['speed_probe_ms']} ms  [{row['note']}]",
                        flush=True,
                    )
                    for sample in row["error_samples"][:3]:
                        print(f"      error: {sample}", flush=True)
    finally:
        if args.out:
            Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print()
    print(summarise(rows, args.targets, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
