"""The live monitor under load: 500 bot participants active on one study, 0, 1 and 3 researchers watching.

Topology (all on loopback): one daphne process serving the app exactly as production runs it (DEBUG=0), on
the embedded default (a fresh temp SQLite file, in-memory channel layer, local-memory cache) unless
--database-url / --redis-url are given; a second process of this script (`--role bots`) driving the bots;
this process as the researchers watching the monitor.

1. Setup: migrate, seed_demo (the researcher login), import MMLU's val split (../shared/datasets/mmlu; the
   demo bank if absent), and create and launch a study with one **unaided** condition (the default: no
   assistant, so the CPU goes to the monitor and the participant pages; --assisted adds an assisted condition
   on the seeded simulated assistant and the bots send --messages-per-item messages on its items) and a task
   of --items items without a time limit.
2. Bots: --participants bots (oversight_dev/bots.py, the same `Bot` as `run_bots`) join through the public
   link, staggered over --ramp seconds, and then answer at --think-ms mean thinking time per item, each in its
   own HTTP client. Every response is stamped (wall clock) by an httpx event hook: the answer's submit (its
   response, which follows the commit) is the **event**; the item's next trial page and the consent are events too
   (every one of them announces a monitor change on the server).
3. Phases, one after another over the same running bots, --duration seconds each: for each number of viewers
   in --viewers (e.g. 0 1 3), that many researchers (each logged in through the login form with its CSRF
   token; the session cookie and an Origin header go on the websocket) watch /ws/monitor/<slug>/ with the
   `websockets` client. A viewer stamps each message on arrival and records, per participant, when a row
   first shows each new `done` count.
4. Per phase: **update latency** (event → viewer) = when a viewer first saw a row with `done` ≥ n minus when
   that bot got the response to its n-th submit, p50/p95 over every answer in the phase (answers in the
   first 2 s after connecting and in the last 3 s are left out); messages/s and payload bytes/s per viewer
   (snapshot vs batched `rows`); events/s; daphne's CPU (utime+stime from /proc/<pid>/stat) and the
   machine's; the bots' request latency (does watching slow the participants?); the load averages.

    .venv/bin/python bench/monitor.py                               # 500 bots, viewers 0 1 3, 45 s each
    .venv/bin/python bench/monitor.py --participants 100 --viewers 1 --duration 20 --ramp 10   # quick
    .venv/bin/python bench/monitor.py --database-url postgres://postgres@127.0.0.1:5432/oversight_monitorbench \\
        --redis-url redis://127.0.0.1:6379/13

Exit status 1 if a bot failed, a viewer missed an update or lost its socket, or the monitor sent more than one
message a second per viewer on average (the batching promise). The temp folder is removed at the end unless
--keep (or --patch trace, whose trace.jsonl is in it). See bench/README.md ("Monitor").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MMLU_VAL = REPO.parent / "shared" / "datasets" / "mmlu" / "val"
SLUG = "monitor-bench"
RESEARCHER = ("researcher", "oversight-demo")  # seed_demo's login
CLK_TCK = os.sysconf("SC_CLK_TCK")
SUBMIT = re.compile(r"/s/p/(?P<token>[^/]+)/item/(?P<position>\d+)/submit$")
TRIAL = re.compile(r"/s/p/(?P<token>[^/]+)/item/(?P<position>\d+)/$")
# The monitor pushes its rows and summary as the page's rendered partials: a row's id and progress cell ("done/
# total"), and the summary's count per status.
ROW = re.compile(r'<tr data-id="(?P<id>\d+)".*?<td>(?P<done>\d+)/\d+</td>', re.S)
STATUS = re.compile(r'<td data-status="(?P<label>[^"]+)">(?P<n>\d+)</td>')


# --- Small helpers ------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank quantile; p = 0.5 is the median."""
    if not values:
        return None
    ordered = sorted(values)
    if p == 0.5:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, max(0, int(round(p * len(ordered))) - 1))]


def pushed_rows(html: str) -> list[tuple[int, int]]:
    """(participant id, done) of each row in a monitor message's rendered rows."""
    return [(int(m["id"]), int(m["done"])) for m in ROW.finditer(html)]


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.0f}"


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Proc:
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def log_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> Proc:
    log = open(log_path, "w")  # noqa: SIM115 - handed to the child; closed with the process
    popen = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(popen, log_path)


def create_postgres(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{parts.path.lstrip("/")}"')


def drop_postgres(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


SETUP = """
from pathlib import Path
from django.contrib.auth import get_user_model
from oversight.banks import importers
from oversight.banks.models import Bank
from oversight.core.models import Condition, ModelEndpoint, Study, Task
from oversight.core.services.studies import study_launch
val = Path({val!r})
if val.is_dir():
    bank = importers.import_mmlu(path=val, bank_name='MMLU val (monitor bench)').bank
else:
    bank = Bank.objects.get(name='Demo MMLU')
n = bank.items.filter(gold_index__isnull=False).count()
items = min({items}, n // {n_conditions})
study = Study.objects.create(slug={slug!r}, title='Monitor benchmark', owner=get_user_model().objects.get(
    username={user!r}), disjoint_samples=True, sample_seed=1, reveal_gold=False, completion_code='BENCH-DONE')
Condition.objects.create(study=study, kind='unaided', name='Unaided', position=0)
if {assisted!r}:
    Condition.objects.create(study=study, kind='assisted', name='Assisted', position=1,
                             endpoint=ModelEndpoint.objects.get(name='Simulated assistant'))
Task.objects.create(study=study, bank=bank, name='MMLU', position=0, sample_size=items, time_limit_s=None)
study_launch(study=study)
result = {{'bank': bank.name, 'bank_items': n, 'items': items}}
"""


AFTER = """
import time
from django.db import connection
from oversight.core.models import Study, Trial
from oversight.console.monitor import monitor_data, monitor_html, monitor_rows, monitor_summary
study = Study.objects.get(slug={slug!r})
committed = {{}}
for pid, at in (Trial.objects.filter(participant__study=study, submitted_at__isnull=False)
                .order_by('participant_id', 'submitted_at').values_list('participant_id', 'submitted_at')):
    committed.setdefault(pid, []).append(at.timestamp())
ids = list(study.participants.order_by('?').values_list('pk', flat=True)[:{batch}])
snapshot, batch = monitor_data(study, blind=False), monitor_data(study, blind=False, participant_ids=ids)
def best(f, n=5):
    times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return round(sorted(times)[len(times) // 2] * 1000, 1)
cost = {{'snapshot_rows_ms': best(lambda: monitor_rows(study)),
         'batch_rows_ms': best(lambda: monitor_rows(study, participant_ids=ids)),
         'summary_ms': best(lambda: monitor_summary(study)), 'batch': len(ids),
         'snapshot_render_ms': best(lambda: monitor_html(snapshot)),
         'batch_render_ms': best(lambda: monitor_html(batch)),
         'participants': study.participants.count(), 'trials': Trial.objects.filter(participant__study=study).count(),
         'vendor': connection.vendor}}
result = {{'committed': committed, 'cost': cost}}
"""


# --- A patched server (`--role serve`, with --patch): a proposed fix, monkeypatched, to measure it ------------

PATCHES = ("monitor-dispatch", "trace")


def serve_main(args) -> int:
    """daphne in this process, as `python -m daphne` runs it, with the proposed fixes in --patch applied."""
    import oversight.asgi  # noqa: F401 - sets Django up; the application daphne loads is this module's
    from oversight.console.consumers import MonitorConsumer

    if "monitor-dispatch" in args.patch:
        # channels' AsyncConsumer.dispatch runs close_old_connections() through the one thread-sensitive
        # executor thread before *every* channel-layer message; `monitor.changed` only adds an id to a set, so
        # it skips that hop (the flush's database_sync_to_async still closes old connections around its query).
        original = MonitorConsumer.dispatch

        async def dispatch(self, message):
            if message.get("type") == "monitor.changed":
                await self.monitor_changed(message)
                return
            await original(self, message)

        MonitorConsumer.dispatch = dispatch
        print("serve: patched MonitorConsumer.dispatch (monitor-dispatch)", file=sys.stderr, flush=True)
    if "trace" in args.patch:
        _trace(MonitorConsumer)
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(["-b", "127.0.0.1", "-p", str(args.port), "oversight.asgi:application"])
    return 0


def _trace(consumer_class) -> None:
    """Diagnostics (--patch trace): stamp each step of a monitor update into $BENCH_TRACE (JSON lines):
    the publish (before and after its group_send), the consumer's dispatch of it, and each flush."""
    import threading

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from oversight.core.services import monitor
    from oversight.core.services import participants as participants_service
    from oversight.core.services import trials as trials_service

    out = open(os.environ["BENCH_TRACE"], "a", buffering=1)  # noqa: SIM115 - lives as long as the server
    lock = threading.Lock()

    def log(**record) -> None:
        with lock:
            out.write(json.dumps({"t": time.time(), **record}) + "\n")

    def monitor_changed(*, study_id: int, participant_id: int) -> None:
        from django.db import transaction

        def publish():
            log(step="publish", pid=participant_id, thread=threading.get_ident())
            async_to_sync(get_channel_layer().group_send)(
                monitor.monitor_group(study_id), {"type": "monitor.changed", "participant_id": participant_id}
            )
            log(step="published", pid=participant_id)

        log(step="changed", pid=participant_id)
        transaction.on_commit(publish)

    for module in (monitor, trials_service, participants_service):
        module.monitor_changed = monitor_changed
    original_changed = consumer_class.monitor_changed

    async def changed(self, event):
        log(step="dispatched", pid=event["participant_id"], channel=self.channel_name)
        await original_changed(self, event)

    consumer_class.monitor_changed = changed
    original_send_json = consumer_class.send_json

    async def send_json(self, content, close=False):
        log(
            step="send",
            kind=content.get("type"),
            pids=[pid for pid, _ in pushed_rows(content.get("rows", ""))],
            channel=self.channel_name,
        )
        await original_send_json(self, content, close)

    consumer_class.send_json = send_json


# --- The bots (a process of their own: `--role bots`) ------------------------------------------------------


def bots_main(args) -> int:
    """Run the bots for --run-s seconds, stamping every response; then write the stamps as JSON."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    django.setup()

    from oversight.core.models import Participant

    stamps: dict = asyncio.run(_bots(args))
    tokens = {s["token"] for s in stamps["submits"]} | set(stamps["consents"])
    stamps["participants"] = dict(Participant.objects.filter(token__in=tokens).values_list("token", "pk"))
    Path(args.stamps).write_text(json.dumps(stamps))
    return 0


async def _bots(args) -> dict:
    from oversight_dev.bots import Bot, BotConfig, Slot, httpx

    for name in ("httpx2", "httpx", "httpcore2", "httpcore"):  # one INFO line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    config = BotConfig(
        slug=args.slug,
        participants=args.participants,
        seed=args.seed,
        concurrency=args.participants,
        base_url=args.base_url,
        timeout_rate=0.0,
        think_ms=args.think_ms,
        request_timeout_s=120.0,
        messages_per_item=args.messages_per_item,
        reply_timeout_s=120.0,
    )
    semaphore = asyncio.Semaphore(args.participants)
    submits: list[dict] = []
    shows: list[float] = []
    consents: dict[str, float] = {}
    requests: list[tuple[float, float]] = []  # (sent, seconds) of every HTTP request (each hop)
    errors: list[str] = []
    results = []

    async def on_request(request) -> None:
        request.extensions["bench_sent"] = time.time()

    async def on_response(response) -> None:
        now = time.time()
        request = response.request
        sent = request.extensions.get("bench_sent", now)
        requests.append((sent, now - sent))
        path = request.url.path
        if request.method == "POST" and (m := SUBMIT.search(path)):
            submits.append(
                {
                    "token": m.group("token"),
                    "position": int(m.group("position")),
                    "sent": sent,
                    "at": now,
                    "status": response.status_code,
                }
            )
        # With htmx (the bots' default) the next page comes in the POST's own response, named by HX-Push-Url.
        shown = response.headers.get("hx-push-url", "") if response.status_code == 200 else ""
        if TRIAL.search(shown) or (request.method == "GET" and response.status_code == 200 and TRIAL.search(path)):
            shows.append(now)
        if request.method == "POST" and not path.startswith("/s/p/"):  # the consent
            location = response.headers.get("location", "") or shown
            if m := re.search(r"/s/p/([^/]+)/", location):
                consents.setdefault(m.group(1), now)

    async def one(i: int) -> None:
        await asyncio.sleep(args.ramp * i / max(1, args.participants))
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(120.0),
            trust_env=False,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            event_hooks={"request": [on_request], "response": [on_response]},
        ) as client:
            bot = Bot(index=i, config=config, client=client, slot=Slot(semaphore), latencies=[])
            result = await bot.run()
            results.append(result)
            errors.extend(str(e) for e in result.errors)

    start = time.time()
    tasks = [asyncio.create_task(one(i)) for i in range(args.participants)]
    done, pending = await asyncio.wait(tasks, timeout=args.run_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {
        "start": start,
        "end": time.time(),
        "submits": submits,
        "shows": shows,
        "consents": consents,
        "requests": requests,
        "errors": errors,
        "finished": sum(r.finished for r in results),
        "still_running": len(pending),
    }


# --- The viewers (this process) ----------------------------------------------------------------------------


@dataclass
class Viewer:
    index: int
    cookie: str
    connected_at: float = 0.0
    closed_at: float = 0.0
    messages: list[tuple[float, str, int, int]] = field(default_factory=list)  # (at, type, bytes, rows)
    first_seen: dict[int, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))  # pid → done → at
    by_status: dict = field(default_factory=dict)
    error: str = ""
    keep_rows: bool = False  # --raw: also keep each message's (participant, done) pairs
    rows: list[list[tuple[int, int]]] = field(default_factory=list)


async def login(base_url: str, username: str, password: str) -> str:
    """Log in through the console's login form (CSRF token and all); returns the Cookie header for the socket."""
    from oversight_dev.bots import httpx, parse_page

    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), trust_env=False, follow_redirects=False) as client:
        page = await client.get(f"{base_url}/console/login/")
        form = next(f for f in parse_page(page.text).forms if f.input("username") is not None)
        response = await client.post(
            f"{base_url}/console/login/",
            data={**form.hidden(), "username": username, "password": password},
            headers={"Referer": f"{base_url}/console/login/"},
        )
        session = client.cookies.get("sessionid")
        if response.status_code != 302 or not session:
            raise RuntimeError(f"login failed: HTTP {response.status_code} {response.text[:300]}")
        return f"sessionid={session}"


async def watch(viewer: Viewer, base_url: str, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    url = base_url.replace("http://", "ws://") + f"/ws/monitor/{SLUG}/"
    try:
        async with connect(
            url,
            origin=base_url,
            additional_headers={"Cookie": viewer.cookie},
            proxy=None,
            open_timeout=60,
            close_timeout=2,
            max_size=64 * 2**20,
            ping_interval=None,
            compression=None,
        ) as ws:
            viewer.connected_at = time.time()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                at = time.time()
                data = json.loads(raw)
                rows = pushed_rows(data.get("rows", ""))
                viewer.messages.append((at, data.get("type", ""), len(raw.encode()), len(rows)))
                if viewer.keep_rows:
                    viewer.rows.append(rows)
                for participant, done in rows:
                    seen = viewer.first_seen[participant]
                    if done not in seen:
                        seen[done] = at
                by_status = {m["label"]: int(m["n"]) for m in STATUS.finditer(data.get("summary", ""))}
                viewer.by_status = by_status or viewer.by_status
    except Exception as exc:  # noqa: BLE001 - reported with the results
        viewer.error = f"{type(exc).__name__}: {exc}"
    viewer.closed_at = time.time()


async def phase(
    n_viewers: int,
    cookies: list[str],
    base_url: str,
    duration: float,
    daphne_pid: int,
    bots_pid: int,
    keep_rows: bool = False,
) -> dict:
    viewers = [Viewer(i, cookies[i], keep_rows=keep_rows) for i in range(n_viewers)]
    stop = asyncio.Event()
    load_before = loadavg()
    cpu0, bots0, machine0, t0 = proc_cpu_s(daphne_pid), proc_cpu_s(bots_pid), machine_cpu(), time.time()
    tasks = [asyncio.create_task(watch(v, base_url, stop)) for v in viewers]
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    cpu1, bots1, machine1, t1 = proc_cpu_s(daphne_pid), proc_cpu_s(bots_pid), machine_cpu(), time.time()
    return {
        "viewers": viewers,
        "start": t0,
        "end": t1,
        "load_before": load_before,
        "load_after": loadavg(),
        "daphne_cpu": (cpu1 - cpu0) / (t1 - t0),
        "bots_cpu": (bots1 - bots0) / (t1 - t0),
        "machine_busy": (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]),
    }


# --- Analysis ----------------------------------------------------------------------------------------------


def analyse(ph: dict, stamps: dict, committed: dict[int, list[float]], raw: list | None = None) -> dict:
    start, end = ph["start"], ph["end"]
    wall = end - start
    pk = stamps["participants"]
    answers = sorted((s for s in stamps["submits"] if s["status"] == 302), key=lambda s: s["at"])
    # n-th answer of each participant (no time limit, no timeouts: the n-th submit makes done = n)
    nth: list[tuple[int, int, dict]] = []
    count: Counter = Counter()
    for s in answers:
        count[s["token"]] += 1
        if s["token"] in pk:
            nth.append((pk[s["token"]], count[s["token"]], s))
    in_phase = [s for s in answers if start <= s["at"] < end]
    shows = sum(start <= t < end for t in stamps["shows"])
    consents = sum(start <= t < end for t in stamps["consents"].values())
    requests = [d for sent, d in stamps["requests"] if start <= sent < end]
    out = {
        "viewers": len(ph["viewers"]),
        "wall_s": round(wall, 1),
        "answers_per_s": round(len(in_phase) / wall, 1),
        "events_per_s": round((len(in_phase) + shows + consents) / wall, 1),
        "daphne_cpu": round(ph["daphne_cpu"], 3),
        "bots_cpu": round(ph["bots_cpu"], 3),
        "machine_busy": round(ph["machine_busy"], 3),
        "load_before": ph["load_before"],
        "load_after": ph["load_after"],
        "bot_request_ms": {"n": len(requests), "p50": ms(pct(requests, 0.5)), "p95": ms(pct(requests, 0.95))},
        "per_viewer": [],
    }
    latencies, upper, server, missed = [], [], [], 0
    for v in ph["viewers"]:
        msgs = [m for m in v.messages if start <= m[0] <= end]
        span = max(1e-9, (v.closed_at or end) - (v.connected_at or start))
        kinds = Counter(m[1] for m in msgs)
        rows_msgs = [m for m in msgs if m[1] == "rows"]
        out["per_viewer"].append(
            {
                "messages_per_s": round(len(msgs) / span, 2),
                "bytes_per_s": round(sum(m[2] for m in msgs) / span),
                "snapshots": kinds["snapshot"],
                "rows_messages": kinds["rows"],
                "mean_rows_per_update": round(statistics.mean(m[3] for m in rows_msgs), 1) if rows_msgs else 0,
                "mean_update_bytes": round(statistics.mean(m[2] for m in rows_msgs)) if rows_msgs else 0,
                "snapshot_bytes": max((m[2] for m in msgs if m[1] == "snapshot"), default=0),
                "active": v.by_status.get("In progress"),
                "error": v.error,
            }
        )
        lo, hi = v.connected_at + 2.0, (v.closed_at or end) - 3.0
        for participant, n, s in nth:
            if not lo <= s["at"] <= hi:
                continue
            seen = [at for done, at in v.first_seen.get(participant, {}).items() if done >= n]
            if not seen:
                missed += 1
                continue
            latencies.append(min(seen) - s["at"])
            upper.append(min(seen) - s["sent"])
            commits = committed.get(participant, [])
            if len(commits) >= n:
                server.append(min(seen) - commits[n - 1])
            if raw is not None:
                raw.append(
                    {
                        "viewers": len(ph["viewers"]),
                        "viewer": v.index,
                        "participant": participant,
                        "n": n,
                        "answer_at": s["at"],
                        "committed_at": commits[n - 1] if len(commits) >= n else None,
                        "seen_at": min(seen),
                    }
                )
    out["latency_ms"] = {
        "n": len(latencies),
        "p50": ms(pct(latencies, 0.5)),
        "p95": ms(pct(latencies, 0.95)),
        "max": ms(max(latencies, default=None)),
        "min": ms(min(latencies, default=None)),
        "from_submit_sent_p50": ms(pct(upper, 0.5)),
        "from_submit_sent_p95": ms(pct(upper, 0.95)),
        "from_commit_p50": ms(pct(server, 0.5)),
        "from_commit_p95": ms(pct(server, 0.95)),
        "from_commit_max": ms(max(server, default=None)),
    }
    out["missed"] = missed
    return out


def print_table(rows: list[dict], header: str) -> None:
    print(f"\n{header}")
    print(
        "| viewers | answers/s | events/s | update latency p50 / p95 (ms) | msgs/s per viewer | "
        "bytes/s per viewer | rows per update | daphne CPU | bots CPU | machine busy | bot request p50 / p95 (ms) "
        "| load avg before → after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        pv = r["per_viewer"]
        msgs = " / ".join(f"{v['messages_per_s']:.2f}" for v in pv) or "–"
        size = " / ".join(f"{v['bytes_per_s'] / 1000:.1f} kB" for v in pv) or "–"
        per = " / ".join(f"{v['mean_rows_per_update']}" for v in pv) or "–"
        lat = f"{r['latency_ms']['p50']} / {r['latency_ms']['p95']}" if pv else "–"
        print(
            f"| {r['viewers']} | {r['answers_per_s']} | {r['events_per_s']} | {lat} | {msgs} | {size} | {per} | "
            f"{r['daphne_cpu'] * 100:.0f}% of a core | {r['bots_cpu'] * 100:.0f}% | "
            f"{r['machine_busy'] * 100:.0f}% of 2 cores | {r['bot_request_ms']['p50']} / "
            f"{r['bot_request_ms']['p95']} | {r['load_before']} → {r['load_after']} |"
        )


# --- Main ----------------------------------------------------------------------------------------------------


async def main_async(args) -> int:
    from tests.live_server import _wait_until_up, free_port, run_manage, server_env

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    daphne = bots = None
    created_pg = False
    try:
        env = server_env(tmp)
        env.update(
            {
                "LOG_LEVEL": "WARNING",
                "DEBUG": "0",
                "SECRET_KEY": "bench-" + "x" * 50,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "0",
                "SECURE_COOKIES": "0",
                "SECURE_HSTS_SECONDS": "0",
                "STATIC_ROOT": str(tmp / "static"),
            }
        )
        backend = "SQLite (temp file, WAL)"
        if args.database_url:
            create_postgres(args.database_url)
            created_pg = True
            env["DATABASE_URL"] = args.database_url
            backend = f"PostgreSQL ({urlsplit(args.database_url).path.lstrip('/')})"
        if args.redis_url:
            import redis

            redis.Redis.from_url(args.redis_url).flushdb()  # this bench's own db number
            env["REDIS_URL"] = args.redis_url
            backend += f" + Redis channel layer and cache ({args.redis_url})"
        else:
            backend += " + in-memory channel layer + local-memory cache"
        print(f"monitor bench: setting up in {tmp} ({backend}); load average {loadavg()}", flush=True)
        run_manage(env, "collectstatic", "--noinput", "-v", "0", timeout=300)
        run_manage(env, "migrate", "--noinput", "-v", "0", timeout=300)
        run_manage(env, "seed_demo", "--mmlu-time-limit", "0", "--quality-time-limit", "0", timeout=300)
        code = SETUP.format(
            val=str(MMLU_VAL),
            items=args.items,
            n_conditions=2 if args.assisted else 1,
            slug=SLUG,
            user=RESEARCHER[0],
            assisted=args.assisted,
        )
        wrapped = f"import json\nresult = None\n{code}\nprint('@@' + json.dumps(result))"
        out = run_manage(env, "shell", "-c", wrapped, timeout=300).stdout
        study = json.loads(next(x for x in out.splitlines() if x.startswith("@@"))[2:])

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        if args.patch:
            backend += f"; patched: {','.join(args.patch)}"
            env["BENCH_TRACE"] = str(tmp / "trace.jsonl")
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                "serve",
                "--port",
                str(port),
                "--patch",
                *args.patch,
            ]
        else:  # exactly as production and tests/live_server.py run it
            cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "oversight.asgi:application"]
        daphne = spawn(cmd, env, tmp / "daphne.log")
        _wait_until_up(base_url, daphne.popen, daphne.log_path, deadline_s=60)
        cookies = [await login(base_url, *RESEARCHER) for _ in range(max(args.viewers, default=0))]

        run_s = args.ramp + args.settle + len(args.viewers) * (args.duration + 3) + 10
        stamps_path = tmp / "stamps.json"
        bots = spawn(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                "bots",
                "--slug",
                SLUG,
                "--base-url",
                base_url,
                "--participants",
                str(args.participants),
                "--think-ms",
                str(args.think_ms),
                "--ramp",
                str(args.ramp),
                "--run-s",
                str(run_s),
                "--seed",
                str(args.seed),
                "--messages-per-item",
                str(args.messages_per_item),
                "--stamps",
                str(stamps_path),
            ],
            env,
            tmp / "bots.log",
        )
        print(
            f"  daphne {base_url} (pid {daphne.pid}); bots pid {bots.pid}: {args.participants} participants, "
            f"{study['items']} unaided{' + assisted' if args.assisted else ''} items each from "
            f"“{study['bank']}” ({study['bank_items']} items), think {args.think_ms:g} ms, ramp {args.ramp:g} s; "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        await asyncio.sleep(args.ramp + args.settle)
        if bots.popen.poll() is not None:
            raise RuntimeError(f"the bots exited early:\n{bots.log_tail()}")

        phases = []
        for n in args.viewers:
            ph = await phase(n, cookies, base_url, args.duration, daphne.pid, bots.pid, keep_rows=bool(args.raw))
            phases.append(ph)
            print(
                f"  phase: {n} viewer(s), {ph['end'] - ph['start']:.0f} s, daphne CPU {ph['daphne_cpu']:.0%} "
                f"of a core, load average {ph['load_after']}",
                flush=True,
            )
            await asyncio.sleep(3)

        deadline = time.monotonic() + run_s + 120
        while bots.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        if bots.popen.poll() is None or bots.popen.returncode != 0 or not stamps_path.exists():
            raise RuntimeError(f"the bots did not finish cleanly:\n{bots.log_tail()}")
        stamps = json.loads(stamps_path.read_text())

        out = run_manage(
            env,
            "shell",
            "-c",
            "import json\nresult = None\n" + AFTER.format(slug=SLUG, batch=25) + "\nprint('@@' + json.dumps(result))",
            timeout=300,
        ).stdout
        after = json.loads(next(x for x in out.splitlines() if x.startswith("@@"))[2:])
        committed = {int(k): v for k, v in after["committed"].items()}
        raw: list | None = [] if args.raw else None
        rows = [analyse(ph, stamps, committed, raw) for ph in phases]
        header = (
            f"backend: {backend}; {args.participants} bots ({stamps['still_running']} still active at the end, "
            f"{stamps['finished']} finished, {len(stamps['errors'])} errors); think {args.think_ms:g} ms; "
            f"{args.duration:g} s per phase; {os.cpu_count()} CPUs"
        )
        print_table(rows, header)
        for r in rows:
            for i, v in enumerate(r["per_viewer"]):
                print(
                    f"  {r['viewers']} viewer(s), viewer {i}: {v['messages_per_s']} msg/s "
                    f"({v['rows_messages']} rows updates of {v['mean_rows_per_update']} rows, "
                    f"{v['mean_update_bytes']} bytes each; {v['snapshots']} snapshots of {v['snapshot_bytes']} "
                    f"bytes), {v['bytes_per_s']} bytes/s; {v['active']} in progress at the end"
                    f"{'; ERROR ' + v['error'] if v['error'] else ''}"
                )
            if r["per_viewer"]:
                lat = r["latency_ms"]
                print(
                    f"  {r['viewers']} viewer(s): latency over {lat['n']} (answer, viewer) pairs: p50 {lat['p50']} "
                    f"ms, p95 {lat['p95']} ms, min {lat['min']} ms, max {lat['max']} ms; from the submit's "
                    f"request p50 {lat['from_submit_sent_p50']} ms, p95 {lat['from_submit_sent_p95']} ms; "
                    f"from the commit (Trial.submitted_at) p50 {lat['from_commit_p50']} ms, p95 "
                    f"{lat['from_commit_p95']} ms, max {lat['from_commit_max']} ms; missed {r['missed']}"
                )
                gaps = [
                    b[0] - a[0]
                    for v in phases[rows.index(r)]["viewers"]
                    for a, b in zip(v.messages, v.messages[1:], strict=False)
                ]
                print(
                    f"  {r['viewers']} viewer(s): gap between a viewer's messages p50 {ms(pct(gaps, 0.5))} ms, "
                    f"p95 {ms(pct(gaps, 0.95))} ms, max {ms(max(gaps, default=None))} ms"
                )
        c = after["cost"]
        print(
            f"  query cost after the run ({c['vendor']}, {c['participants']} participants, {c['trials']} trials, "
            f"median of 5, while nothing else runs in daphne): full snapshot rows {c['snapshot_rows_ms']} ms; "
            f"a batch of {c['batch']} rows {c['batch_rows_ms']} ms; summary {c['summary_ms']} ms; rendering them "
            f"(the page's partials): snapshot {c['snapshot_render_ms']} ms, batch {c['batch_render_ms']} ms"
        )
        for e in stamps["errors"][:5]:
            print(f"  bot error: {e}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "backend": backend,
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "cpus": os.cpu_count(),
                        "phases": rows,
                        "query_cost": after["cost"],
                        "bot_errors": stamps["errors"],
                    },
                    indent=2,
                )
            )
        if args.raw:
            messages = [
                {
                    "viewers": len(ph["viewers"]),
                    "viewer": v.index,
                    "at": m[0],
                    "type": m[1],
                    "bytes": m[2],
                    "rows": m[3],
                    "done": rows,
                }
                for ph in phases
                for v in ph["viewers"]
                for m, rows in zip(v.messages, v.rows, strict=True)
            ]
            args.raw.write_text(
                json.dumps(
                    {
                        "latencies": raw,
                        "messages": messages,
                        "committed": committed,
                        "answers": stamps["submits"],
                        "participants": stamps["participants"],
                    }
                )
            )
        too_chatty = any(v["messages_per_s"] > 1.05 for r in rows for v in r["per_viewer"])
        bad = (
            stamps["errors"]
            or any(r["missed"] for r in rows)
            or too_chatty
            or any(v["error"] for r in rows for v in r["per_viewer"])
        )
        return 1 if bad else 0
    except Exception:
        if daphne is not None:
            print(f"--- daphne log\n{daphne.log_tail()}", file=sys.stderr)
        if bots is not None:
            print(f"--- bots log\n{bots.log_tail()}", file=sys.stderr)
        raise
    finally:
        for p in (bots, daphne):
            if p is not None:
                p.stop()
        if created_pg:
            drop_postgres(args.database_url)
        if args.keep or "trace" in args.patch:
            print(f"  kept {tmp} (daphne.log, bots.log, stamps.json{', trace.jsonl' if args.patch else ''})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=500, help="bots active at once [500]")
    parser.add_argument("--items", type=int, default=30, help="items per participant (enough to stay active) [30]")
    parser.add_argument("--think-ms", type=float, default=30000.0, help="mean thinking time per item [30000]")
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds over which the bots join [60]")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the ramp before measuring [5]")
    parser.add_argument(
        "--viewers",
        type=int,
        nargs="+",
        default=[0, 1, 3],
        help="one phase per entry: that many researchers watch the monitor [0 1 3]",
    )
    parser.add_argument("--duration", type=float, default=45.0, help="seconds per phase [45]")
    parser.add_argument("--assisted", action="store_true", help="add an assisted condition (simulated assistant)")
    parser.add_argument("--messages-per-item", type=int, default=1, help="with --assisted: chat messages per item")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="PostgreSQL: a database to (re)create, use and drop")
    parser.add_argument("--redis-url", help="Redis for the channel layer and cache (its db is flushed first)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, database, stamps)")
    parser.add_argument("--raw", type=Path, help="also write every (answer, viewer) latency and message as JSON")
    parser.add_argument(
        "--patch",
        nargs="+",
        default=[],
        choices=PATCHES,
        help="experiment: serve with a proposed fix monkeypatched in (see bench/README.md)",
    )
    # internal: the bots' process and the patched server
    parser.add_argument("--role", choices=["main", "bots", "serve"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--slug", default=SLUG, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--run-s", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--stamps", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.participants < 1 or args.items < 1 or any(n < 0 for n in args.viewers):
        parser.error("participants and items must be positive, viewers non-negative")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.role == "bots":
        return bots_main(args)
    if args.role == "serve":
        return serve_main(args)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
