"""Load benchmark: simulated participants against the production topology on loopback (tests/topology.py).

Not a test: run it by hand and record the results in bench/README.md ("Load") and docs/topology.md (sizing).

    .venv/bin/python bench/load.py                      # the knee (1 web process) and the main run (2)
    .venv/bin/python bench/load.py --quick              # a smoke run: small steps, short caps

What it starts: nginx → daphne web processes, 1 Celery worker, beat, a private Redis, a fresh PostgreSQL database,
the fake TGI (TTFT 100 ms, 50 tokens/s, max 1024 concurrent). What drives it: `oversight_dev.bots.Bot`, the
participant bots of `manage.py run_bots` (real pages, forms, CSRF, redirects; the chat over the real websocket),
all in this one process, started over a short ramp and cut off at a time cap. A share of the bots chat (one
message per assisted item, as `--messages-per-item 1`); the others answer without chatting.

What it measures, per run:
* answers/s: answers committed (and acknowledged to the bot) per second of the run;
* page latency: every HTTP request the bots made (pages, selections, submits, redirects), as nginx timed it
  (`$request_time`, from the access log) and as the bots saw it (their event loop adds to it under load);
* chat: time to first token as the bot sees it (send → first delta with text) ÷ the fake's own TTFT measured
  directly with the same number of concurrent streams; replies failed; characters lost (the reply rebuilt from
  the frames vs the stored reply) and gaps;
* errors: bots stopped by a non-2xx/3xx answer, a transport error or an unexpected page;
* CPU (% of one core, average and 1-s peak) and peak RSS of each process, from /proc (a process group each);
* PostgreSQL: pg_stat_database deltas (transactions committed, tuples written and read) per answer, minus the
  bots' own look-ups (counted) and the deadline probe's (measured alone beforehand); connections in use (peak);
* Redis: used memory (peak); deadline lag: 20 trials made to expire mid-run, deadline → finalisation.

Everything is bounded: each run has a cap (bots still going are cancelled; what they did counts), the whole
script a budget. Numbers depend on the machine: record `uptime` (printed per run) and what else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.topology import Topology, topology  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) \d+ rt=(?P<rt>[\d.]+)')
PROBE_TRIALS = 20
PROBE = """
from datetime import timedelta
from django.utils import timezone
from oversight.core.models import Study, Trial
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
study = Study.objects.get(slug="demo")
people = [participant_join(study=study, params={"PROLIFIC_PID": f"%(prefix)s-{i}"}, consent=True) for i in range(%(n)d)]
trials = [Trial.objects.filter(participant=p, time_limit_s__isnull=False, status="pending").order_by("position").first()
          for p in people]
target = timezone.now() + timedelta(seconds=%(in_s)f)
result = [trial_show(trial=t, now=target - timedelta(seconds=t.time_limit_s)).pk for t in trials]
"""


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- /proc sampling ------------------------------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, str, int, int]]:
    """pid -> (pgid, comm, cpu ticks, rss bytes) for every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is state (field 3); pgrp is field 5, utime 14, stime 15, rss 24
        table[int(entry.name)] = (int(fields[2]), comm, int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE)
    return table


class Sampler(threading.Thread):
    """Every second: CPU and RSS per role (process groups), PostgreSQL connections, Redis memory."""

    def __init__(self, topo: Topology):
        super().__init__(daemon=True)
        self.topo = topo
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.pg_conns: list[int] = []
        self.redis_mem: list[int] = []
        self.statements = 0  # our own queries against the topology's database

    def groups(self) -> dict[str, int]:
        roles = {role: proc.pid for role, proc in self.topo.procs.items() if proc.alive()}
        roles["driver (bots)"] = os.getpgrp()
        return roles

    def snapshot(self) -> dict[str, tuple[int, int]]:
        table = proc_table()
        out = {}
        for role, pgid in self.groups().items():
            members = (
                [v for pid, v in table.items() if v[0] == pgid]
                if role != "driver (bots)"
                else [table[os.getpid()]]
                if os.getpid() in table
                else []
            )
            out[role] = (sum(m[2] for m in members), sum(m[3] for m in members))
        pg = [v for v in table.values() if v[1].startswith("postgres")]
        out["postgres (whole server, shared)"] = (sum(m[2] for m in pg), sum(m[3] for m in pg))
        return out

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.samples.append((time.monotonic(), self.snapshot()))
            try:
                rows = self.topo.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.topo.db_name,))
                self.statements += 1
                self.pg_conns.append(rows[0][0] - 1)  # not this query's own connection
                info = self.topo.redis_cmd("INFO", "memory")
                m = re.search(r"used_memory:(\d+)", info)
                if m:
                    self.redis_mem.append(int(m.group(1)))
            except Exception:  # noqa: BLE001, S110 - a missed sample is fine
                pass
            self.stop_event.wait(1.0)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)
        self.samples.append((time.monotonic(), self.snapshot()))

    def report(self) -> dict:
        if len(self.samples) < 2:
            return {}
        (t0, first), (t1, last) = self.samples[0], self.samples[-1]
        out = {}
        for role in last:
            if role not in first:
                continue
            avg = (last[role][0] - first[role][0]) / TICKS / (t1 - t0) * 100
            peaks = []
            for (ta, a), (tb, b) in zip(self.samples, self.samples[1:], strict=False):
                if role in a and role in b and tb > ta:
                    peaks.append((b[role][0] - a[role][0]) / TICKS / (tb - ta) * 100)
            rss = max(s[role][1] for _, s in self.samples if role in s)
            out[role] = {
                "cpu_avg_pct": round(avg, 1),
                "cpu_peak_pct": round(max(peaks or [0]), 1),
                "rss_max_mb": round(rss / 2**20, 1),
            }
        return {
            "processes": out,
            "pg_connections_max": max(self.pg_conns or [0]),
            "redis_used_memory_max_mb": round(max(self.redis_mem or [0]) / 2**20, 2),
        }


# --- PostgreSQL counters ----------------------------------------------------------------------------------------

PG_COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "sessions",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
)  # `sessions` (connections opened) needs PostgreSQL >= 14


def pg_counters(topo: Topology) -> dict[str, int]:
    time.sleep(1.2)  # backends report their counters when idle, at most once a second
    row = topo.sql(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = %s", (topo.db_name,))[0]
    return dict(zip(PG_COUNTERS, row, strict=True))


def count_statements() -> list[int]:
    """Count the statements this process's Django connections run (the bots' answer-key look-ups)."""
    from django.db.backends.signals import connection_created

    counter = [0]

    def wrapper(execute, sql, params, many, context):
        counter[0] += 1
        return execute(sql, params, many, context)

    def on_connect(sender, connection, **kwargs):
        if wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)

    connection_created.connect(on_connect, weak=False)
    return counter


# --- The fake's own TTFT, directly ------------------------------------------------------------------------------


async def direct_ttft(tgi_url: str, n: int) -> list[float]:
    """n concurrent streaming chat requests straight to the fake TGI: its TTFT with no platform in between."""
    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx
    body = {
        "model": "tgi",
        "stream": True,
        "max_tokens": 400,
        "temperature": 0.7,
        "top_p": 0.95,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Which answer do you think is right, and why?"},
        ],
    }
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:

        async def one() -> float:
            t0, ttft = time.perf_counter(), float("nan")
            async with client.stream("POST", f"{tgi_url}/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():  # read to the end, as the platform does
                    if (
                        ttft != ttft
                        and line.startswith("data:")
                        and '"content":"' in line
                        and '"content":""' not in line
                    ):
                        ttft = time.perf_counter() - t0
            return ttft

        return [t for t in await asyncio.gather(*(one() for _ in range(n))) if t == t]


# --- Chat capacity: concurrent streams on one web process, nothing else going on -------------------------------

CHAT_SETUP = """
from oversight.core.models import Study, Trial
from oversight.core.services.participants import participant_join
from oversight.core.services.trials import trial_show
study = Study.objects.get(slug="demo")
result = []
for i in range(%(n)d):
    p = participant_join(study=study, params={"PROLIFIC_PID": f"%(prefix)s-{i}"}, consent=True)
    t = trial_show(trial=Trial.objects.get(participant=p, position=0))  # position 0: the assisted block
    result.append(f"/ws/chat/{p.token}/{t.position}/")
"""


async def chat_burst(base_url: str, paths: list[str]) -> list[dict]:
    """Each path: open the chat socket through nginx, hello, send one message, read until the final reply."""
    from websockets.asyncio.client import connect

    async def one(path: str) -> dict:
        url = base_url.replace("http://", "ws://") + path
        try:
            async with connect(
                url, origin=base_url, proxy=None, open_timeout=60, close_timeout=2, max_size=2**23
            ) as ws:
                await ws.send(json.dumps({"type": "hello", "reconnect": False}))
                while json.loads(await asyncio.wait_for(ws.recv(), 60)).get("type") != "history":
                    pass
                t0, first = time.perf_counter(), None
                await ws.send(
                    json.dumps(
                        {
                            "type": "send",
                            "text": "Which answer do you think is right, and why?",
                            "client_id": secrets.token_hex(8),
                        }
                    )
                )
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 90))
                    if frame.get("type") == "delta" and frame.get("text") and first is None:
                        first = time.perf_counter() - t0
                    if (
                        frame.get("type") == "message"
                        and frame["message"].get("role") == "assistant"
                        and frame["message"].get("status") != "streaming"
                    ):
                        return {"ttft": first, "total": time.perf_counter() - t0, "status": frame["message"]["status"]}
        except Exception as exc:  # noqa: BLE001 - counted and reported
            return {"error": f"{type(exc).__name__}: {exc}"[:160]}

    return list(await asyncio.gather(*(one(p) for p in paths)))


def chat_capacity(topo: Topology, levels: list[int]) -> list[dict]:
    rows = []
    for n in levels:
        paths = topo.shell(CHAT_SETUP % {"n": n, "prefix": f"cap{n}"}, timeout=300)
        direct = asyncio.run(direct_ttft(topo.tgi_url, n))
        print(f"\n== chat capacity: {n} concurrent replies, 1 web process; load average {loadavg()}", flush=True)
        row = {"concurrent_replies": n, "loadavg_before": loadavg()}
        sampler = Sampler(topo)
        sampler.start()
        t0 = time.perf_counter()
        results = asyncio.run(chat_burst(topo.base_url, paths))
        wall = time.perf_counter() - t0
        sampler.stop()
        ok = [r for r in results if r.get("status") == "complete"]
        ttft = [r["ttft"] for r in ok if r.get("ttft") is not None]
        total = [r["total"] for r in ok]
        errors = sorted({r.get("error") or r.get("status") for r in results if r.get("status") != "complete"})
        procs = sampler.report().get("processes", {})
        row.update(
            {
                "wall_s": round(wall, 1),
                "complete": len(ok),
                "failed": n - len(ok),
                "failures": errors[:4],
                "ttft_ms": {"p50": ms(pct(ttft, 0.5)), "p95": ms(pct(ttft, 0.95))},
                "ttft_direct_ms": {"p50": ms(pct(direct, 0.5)), "p95": ms(pct(direct, 0.95))},
                "reply_ms": {"p50": ms(pct(total, 0.5)), "p95": ms(pct(total, 0.95))},
                "web1": procs.get("web1"),
                "pg_connections_max": sampler.report().get("pg_connections_max"),
            }
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
        time.sleep(3)
    return rows


def chat_table(rows: list[dict]) -> str:
    lines = [
        "| concurrent replies (1 web) | load avg before | complete / failed | TTFT p50/p95 ms "
        "| direct TTFT p50/p95 ms | reply p50/p95 ms | web CPU avg/peak % | failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w = r.get("web1") or {}
        lines.append(
            f"| {r['concurrent_replies']} | {r['loadavg_before']} | {r['complete']} / {r['failed']} "
            f"| {r['ttft_ms']['p50']}/{r['ttft_ms']['p95']} "
            f"| {r['ttft_direct_ms']['p50']}/{r['ttft_direct_ms']['p95']} "
            f"| {r['reply_ms']['p50']}/{r['reply_ms']['p95']} "
            f"| {w.get('cpu_avg_pct')}/{w.get('cpu_peak_pct')} "
            f"| {'; '.join(r['failures'])[:150]} |"
        )
    return "\n".join(lines)


# --- One run ----------------------------------------------------------------------------------------------------


async def population(
    base_url: str,
    *,
    n: int,
    chatting: int,
    seed: int,
    think_ms: float,
    cap_s: float,
    ramp_s: float,
    request_timeout_s: float,
):
    """n bots (the first `chatting` chat once per assisted item), started over ramp_s, cancelled at cap_s."""
    from oversight_dev.bots import Bot, BotConfig, Slot

    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx
    chat_cfg = BotConfig(
        slug="demo",
        participants=n,
        seed=seed,
        concurrency=n,
        base_url=base_url,
        timeout_rate=0.0,
        think_ms=think_ms,
        request_timeout_s=request_timeout_s,
        messages_per_item=1,
        reply_timeout_s=60.0,
    )
    quiet_cfg = dataclasses.replace(chat_cfg, messages_per_item=0)
    semaphore = asyncio.Semaphore(n)
    latencies: list[float] = []
    bots: list = []
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)

    async def one(i: int):
        await asyncio.sleep(ramp_s * i / max(1, n))
        async with httpx.AsyncClient(timeout=httpx.Timeout(request_timeout_s), limits=limits, trust_env=False) as c:
            bot = Bot(
                index=i,
                config=chat_cfg if i < chatting else quiet_cfg,
                client=c,
                slot=Slot(semaphore),
                latencies=latencies,
            )
            bots.append(bot)
            return await bot.run()

    start = time.perf_counter()
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    _, pending = await asyncio.wait(tasks, timeout=cap_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return bots, latencies, time.perf_counter() - start, len(pending)


def answers_missing(topo: Topology, bots) -> int:
    """Answers a bot got acknowledged (its submit returned 2xx/3xx) that are not in the database."""
    expected = [(b.result.token, o.position, o.choice) for b in bots for o in b.result.outcomes if b.result.token]
    if not expected:
        return 0
    rows = topo.sql(
        "SELECT p.token, t.position, t.status, t.choice FROM core_trial t JOIN core_participant p "
        "ON p.id = t.participant_id WHERE p.token = ANY(%s)",
        (list({e[0] for e in expected}),),
    )
    stored = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    return sum(
        stored.get((tok, pos), ("", None))[0] not in {"answered", "timed_out"}
        or (stored[(tok, pos)][0] == "answered" and stored[(tok, pos)][1] != choice)
        for tok, pos, choice in expected
    )


def run_step(
    topo: Topology,
    *,
    n: int,
    chatting: int,
    webs: int,
    seed: int,
    args,
    direct: list[float],
    probe_cost: dict,
    statements: list[int],
    cap_s: float | None = None,
) -> dict:
    time.sleep(args.settle_s)  # let the previous run's tail (and its load average) settle
    cap_s = cap_s or args.cap_s
    print(f"\n== {n} participants ({chatting} chatting), {webs} web process(es); load average {loadavg()}", flush=True)
    row = {"participants": n, "chatting": chatting, "web_processes": webs, "loadavg_before": loadavg()}
    log_offset = topo.access_log_path().stat().st_size
    before = pg_counters(topo)
    bot_statements_before = statements[0]
    sampler = Sampler(topo)
    sampler.start()
    probe: dict = {}

    def deadline_probe() -> None:  # mid-run: 20 trials made to expire together, to see the finalisation lag
        time.sleep(min(20.0, cap_s / 4))
        try:
            probe["ids"] = topo.shell(PROBE % {"prefix": f"probe-{seed}", "n": PROBE_TRIALS, "in_s": 8.0})
        except Exception as exc:  # noqa: BLE001
            probe["error"] = repr(exc)[:300]

    prober = threading.Thread(target=deadline_probe, daemon=True)
    prober.start()
    bots, latencies, wall, cut = asyncio.run(
        population(
            topo.base_url,
            n=n,
            chatting=chatting,
            seed=seed,
            think_ms=args.think_ms,
            cap_s=cap_s,
            ramp_s=min(args.ramp_s, n / 25),
            request_timeout_s=args.request_timeout_s,
        )
    )
    prober.join(60)
    sampler.stop()
    after = pg_counters(topo)
    bot_statements = statements[0] - bot_statements_before

    # nginx's view of every HTTP request (websockets and static files aside)
    with open(topo.access_log_path()) as f:
        f.seek(log_offset)
        lines = f.read().splitlines()
    rts, statuses = [], {}
    for line in lines:
        m = ACCESS.search(line)
        if not m or m["path"].startswith(("/ws/", "/static/", "/healthz")):
            continue
        rts.append(float(m["rt"]))
        statuses[m["status"]] = statuses.get(m["status"], 0) + 1
    answers = sum(len(b.result.outcomes) for b in bots)
    replies = [c for b in bots for c in b.result.replies]
    ttft = [c.ttft_s for c in replies if c.ttft_s is not None]
    errors = [str(e) for b in bots for e in b.result.errors]
    lag = None
    if probe.get("ids"):
        ids = probe["ids"]
        end = time.monotonic() + 30
        while time.monotonic() < end:
            left = topo.sql("SELECT count(*) FROM core_trial WHERE id = ANY(%s) AND status = 'shown'", (ids,))[0][0]
            if not left:
                break
            time.sleep(0.5)
        lags = [
            r[0]
            for r in topo.sql(
                "SELECT extract(epoch FROM submitted_at - deadline_at) FROM core_trial "
                "WHERE id = ANY(%s) AND status = 'timed_out'",
                (ids,),
            )
        ]
        lag = {
            "finalised": len(lags),
            "of": len(ids),
            "p95_s": round(float(pct(lags, 0.95) or 0), 2),
            "max_s": round(float(max(lags or [0])), 2),
        }
    delta = {k: after[k] - before[k] for k in PG_COUNTERS}
    ours = bot_statements + sampler.statements + 2  # + the two counter reads
    app_xacts = delta["xact_commit"] - ours - (probe_cost.get("xact_commit", 0) if probe.get("ids") else 0)
    writes = (
        delta["tup_inserted"]
        + delta["tup_updated"]
        + delta["tup_deleted"]
        - (probe_cost.get("writes", 0) if probe.get("ids") else 0)
    )
    d50, d95 = pct(direct, 0.5), pct(direct, 0.95)
    t50, t95 = pct(ttft, 0.5), pct(ttft, 0.95)
    row.update(
        {
            "wall_s": round(wall, 1),
            "bots_cut_at_cap": cut,
            "bots_finished": sum(b.result.finished for b in bots),
            "answers": answers,
            "answers_per_s": round(answers / wall, 2),
            "answers_missing_in_db": answers_missing(topo, bots),
            "http_requests": len(rts),
            "http_per_s": round(len(rts) / wall, 1),
            "page_ms_nginx": {"p50": ms(pct(rts, 0.5)), "p95": ms(pct(rts, 0.95)), "p99": ms(pct(rts, 0.99))},
            "page_ms_client": {
                "p50": ms(pct(latencies, 0.5)),
                "p95": ms(pct(latencies, 0.95)),
                "p99": ms(pct(latencies, 0.99)),
            },
            "http_statuses": statuses,
            "chat": {
                "replies": len(replies),
                "complete": sum(c.status == "complete" for c in replies),
                "failed": sum(c.failed and c.status != "" for c in replies),
                "cut_at_cap": sum(c.status == "" for c in replies),
                "failed_by_status": dict(
                    sorted(
                        {
                            c.status: sum(x.status == c.status for x in replies)
                            for c in replies
                            if c.failed and c.status
                        }.items()
                    )
                ),
                "ttft_ms": {"p50": ms(t50), "p95": ms(t95)},
                "ttft_direct_ms": {"p50": ms(d50), "p95": ms(d95)},
                "ttft_ratio": {
                    "p50": round(t50 / d50, 2) if t50 and d50 else None,
                    "p95": round(t95 / d95, 2) if t95 and d95 else None,
                },
                "chars": sum(len(c.received) for c in replies),
                "lost_chars": sum(c.lost_chars for c in replies),
                "gaps": sum(c.gaps for c in replies),
                "mismatched": sum(c.mismatched for c in replies),
            },
            "errors": len(errors),
            "error_examples": sorted({re.sub(r"bot-\d+-\d+|/p/[^/]+/", "…", e)[:200] for e in errors})[:5],
            "postgres": {
                "delta": delta,
                "bot_statements": bot_statements,
                "app_xacts_per_answer": round(app_xacts / answers, 1) if answers else None,
                "connections_opened_per_answer": round(delta["sessions"] / answers, 1) if answers else None,
                "tuples_written_per_answer": round(writes / answers, 1) if answers else None,
                "tuples_read_per_answer": round((delta["tup_fetched"]) / answers, 1) if answers else None,
            },
            "deadline_lag": lag or probe.get("error"),
            **sampler.report(),
        }
    )
    print(json.dumps({k: row[k] for k in ("answers_per_s", "page_ms_nginx", "page_ms_client", "errors")}), flush=True)
    return row


def measure_probe_cost(topo: Topology) -> dict:
    """The deadline probe's own transactions (manage.py shell creating 20 participants, then their finalisation),
    measured on the idle topology, so they can be subtracted from a run's counters."""
    before = pg_counters(topo)
    ids = topo.shell(PROBE % {"prefix": "probe-cost", "n": PROBE_TRIALS, "in_s": 3.0})
    end = time.monotonic() + 30
    while (
        time.monotonic() < end
        and topo.sql("SELECT count(*) FROM core_trial WHERE id = ANY(%s) AND status = 'shown'", (ids,))[0][0]
    ):
        time.sleep(0.5)
    time.sleep(2)
    after = pg_counters(topo)
    # the sweeps ran meanwhile too (≈ 1 transaction a second): left in, a small overestimate of the probe
    return {
        "xact_commit": after["xact_commit"] - before["xact_commit"],
        "writes": sum(after[k] - before[k] for k in ("tup_inserted", "tup_updated", "tup_deleted")),
    }


# --- Reporting ----------------------------------------------------------------------------------------------------


def table(rows: list[dict]) -> str:
    head = (
        "| "
        + " | ".join(
            (
                "web",
                "DB_POOL",
                "participants (chatting)",
                "load avg before",
                "answers/s",
                "HTTP req/s",
                "page p50/p95/p99 ms (nginx)",
                "page p95 ms (client)",
                "chat TTFT p50/p95 ms (÷ direct)",
                "replies ok/failed/cut",
                "chars lost",
                "bot errors",
                "web CPU avg/peak %",
                "web RSS MB",
                "worker CPU %",
                "PG xacts/answer",
                "PG conns opened/answer",
                "PG conns max",
                "Redis MB",
                "deadline lag max s",
            )
        )
        + " |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        procs = r.get("processes", {})
        webs = [v for k, v in procs.items() if k.startswith("web")]
        workers = [v for k, v in procs.items() if k.startswith("worker")]
        chat = r["chat"]
        lag = r["deadline_lag"]
        lines.append(
            "| "
            + " | ".join(
                str(x)
                for x in (
                    r["web_processes"],
                    r.get("db_pool", "0"),
                    f"{r['participants']} ({r['chatting']})",
                    r["loadavg_before"],
                    r["answers_per_s"],
                    r["http_per_s"],
                    "/".join(str(r["page_ms_nginx"][k]) for k in ("p50", "p95", "p99")),
                    r["page_ms_client"]["p95"],
                    f"{chat['ttft_ms']['p50']}/{chat['ttft_ms']['p95']} "
                    f"(×{chat['ttft_ratio']['p50']}/×{chat['ttft_ratio']['p95']})",
                    f"{chat['complete']}/{chat['failed']}/{chat['cut_at_cap']}",
                    chat["lost_chars"],
                    r["errors"],
                    " + ".join(f"{w['cpu_avg_pct']}/{w['cpu_peak_pct']}" for w in webs),
                    " + ".join(str(w["rss_max_mb"]) for w in webs),
                    " + ".join(str(w["cpu_avg_pct"]) for w in workers),
                    r["postgres"]["app_xacts_per_answer"],
                    r["postgres"]["connections_opened_per_answer"],
                    r.get("pg_connections_max"),
                    r.get("redis_used_memory_max_mb"),
                    lag.get("max_s") if isinstance(lag, dict) else lag,
                )
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", default="10,25,50,100,200,300,500", help="participants per knee step (1 web process)"
    )
    parser.add_argument("--main", type=int, default=500, help="participants in the main run (2 web processes)")
    parser.add_argument("--chat-share", type=float, default=0.4, help="share of bots that chat [0.4: 200 of 500]")
    parser.add_argument("--think-ms", type=float, default=4000, help="bots' mean thinking time per item [4000]")
    parser.add_argument("--cap-s", type=float, default=90, help="each knee step is cut off after this long [90]")
    parser.add_argument("--main-cap-s", type=float, default=120, help="the main runs' cap [120]")
    parser.add_argument("--settle-s", type=float, default=15, help="pause before each run [15]")
    parser.add_argument(
        "--chat-levels",
        default="10,25,50,100",
        help="concurrent replies for the chat-capacity phase (1 web process) [10,25,50,100]",
    )
    parser.add_argument(
        "--db-connection-limit",
        type=int,
        default=None,
        help="run the platform as a PostgreSQL role limited to this many connections (on a shared "
        "server, so that an overloaded run cannot use up max_connections for everyone)",
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy every process's log here at the end")
    parser.add_argument("--ramp-s", type=float, default=10, help="bots start over this long [10]")
    parser.add_argument("--request-timeout-s", type=float, default=30)
    parser.add_argument(
        "--endpoint-concurrency",
        type=int,
        default=256,
        help="the demo endpoint's max_concurrency (per web process) [256; the app's default is 32]",
    )
    parser.add_argument("--budget-s", type=float, default=1800, help="stop starting runs after this long [1800]")
    parser.add_argument(
        "--compare-pool",
        action="store_true",
        help="also repeat the main run with DB_POOL=1 (psycopg's pool) in the web processes",
    )
    parser.add_argument("--quick", action="store_true", help="steps 20,40, main 60, cap 45 s")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.main, args.cap_s, args.main_cap_s, args.ramp_s = "20,40", 60, 45.0, 45.0, 5.0
        args.chat_levels, args.settle_s = "5,10", 2.0
    steps = [int(x) for x in args.steps.split(",") if x.strip()]
    started = time.monotonic()

    with (
        tempfile.TemporaryDirectory(prefix="oversight-load-") as tmp,
        topology(
            Path(tmp),
            web_workers=2,
            celery_workers=1,
            nginx_worker_connections=8192,
            db_connection_limit=args.db_connection_limit,
            tgi_args=("--ttft-ms", "100", "--tokens-per-s", "50", "--max-concurrent-requests", "1024"),
            seed_args=("--mmlu-time-limit", "1800", "--quality-time-limit", "1800"),
        ) as topo,
    ):
        # This process reads the bots' answer key from the topology's database (one persistent connection).
        for key in ("REDIS_URL", "CELERY_QUEUE", "DEADLINE_SWEEPER", "TGI_URL"):
            os.environ.pop(key, None)
        os.environ.update(
            {
                "DATABASE_URL": topo.database_url,
                "DB_CONN_MAX_AGE": "600",
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(40),
                "ALLOWED_HOSTS": "127.0.0.1",
                "DJANGO_SETTINGS_MODULE": "oversight.settings",
                "DATA_DIR": str(Path(tmp) / "driver"),
            }
        )
        import logging

        import django

        django.setup()
        for name in ("httpx2", "httpx", "httpcore2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        statements = count_statements()
        topo.sql("UPDATE core_modelendpoint SET max_concurrency = %s", (args.endpoint_concurrency,))
        print(
            f"topology up in {topo.timings['ready_s']:.0f} s at {topo.base_url}; load average {loadavg()}", flush=True
        )
        chatting_main = round(args.main * args.chat_share)
        direct = asyncio.run(direct_ttft(topo.tgi_url, max(1, chatting_main)))
        print(
            f"fake TGI direct TTFT with {chatting_main} concurrent streams: p50 {ms(pct(direct, 0.5))} ms, "
            f"p95 {ms(pct(direct, 0.95))} ms",
            flush=True,
        )
        probe_cost = measure_probe_cost(topo)
        rows = []
        topo.set_web_upstreams(["web1"])
        topo.kill("web2", signal.SIGTERM)
        levels = [int(x) for x in args.chat_levels.split(",") if x.strip()]
        capacity = chat_capacity(topo, levels) if levels else []
        for k, n in enumerate(steps):
            if time.monotonic() - started > args.budget_s:
                print("budget spent: no more runs", flush=True)
                break
            rows.append(
                run_step(
                    topo,
                    n=n,
                    chatting=round(n * args.chat_share),
                    webs=1,
                    seed=100 + k,
                    args=args,
                    direct=direct,
                    probe_cost=probe_cost,
                    statements=statements,
                )
            )
        if args.main and time.monotonic() - started <= args.budget_s:
            topo.restart("web2")
            topo.set_web_upstreams(["web1", "web2"])
            rows.append(
                run_step(
                    topo,
                    n=args.main,
                    chatting=chatting_main,
                    webs=2,
                    seed=200,
                    args=args,
                    direct=direct,
                    probe_cost=probe_cost,
                    statements=statements,
                    cap_s=args.main_cap_s,
                )
            )
        if args.compare_pool and args.main and time.monotonic() - started <= args.budget_s:
            for role in ("web1", "web2"):
                topo.procs[role].env = {**topo.env, "DB_POOL": "1"}
                topo.restart(role)
            row = run_step(
                topo,
                n=args.main,
                chatting=chatting_main,
                webs=2,
                seed=300,
                args=args,
                direct=direct,
                probe_cost=probe_cost,
                statements=statements,
                cap_s=args.main_cap_s,
            )
            rows.append({**row, "db_pool": "1"})
        knee = next(
            (r["participants"] for r in rows if r["web_processes"] == 1 and (r["page_ms_nginx"]["p95"] or 0) > 200),
            None,
        )
        result = {
            "machine": {"cpus": os.cpu_count(), "loadavg_end": loadavg()},
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "direct_ttft_ms": {"p50": ms(pct(direct, 0.5)), "p95": ms(pct(direct, 0.95))},
            "probe_cost": probe_cost,
            "knee_participants_1_web": knee,
            "chat_capacity": capacity,
            "runs": rows,
            "wall_s": round(time.monotonic() - started),
        }
        from django.db import connections

        connections.close_all()  # before the topology drops its database (and role)
        if capacity:
            print("\n" + chat_table(capacity))
        print("\n" + table(rows))
        print(
            f"\nknee (1 web process, p95 page latency through nginx > 200 ms): "
            f"{knee if knee else 'not reached at ' + str(steps[-1] if steps else 0)} participants"
        )
        if args.out:
            args.out.write_text(json.dumps(result, indent=1, default=str))
            print(f"results: {args.out}")
        if args.keep_logs:
            import shutil

            shutil.copytree(Path(tmp) / "logs", args.keep_logs / "logs", dirs_exist_ok=True)
            shutil.copytree(Path(tmp) / "nginx" / "logs", args.keep_logs / "nginx", dirs_exist_ok=True)
            print(f"logs: {args.keep_logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
