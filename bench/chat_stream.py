"""N concurrent assisted chats through the platform, against the fake TGI, compared with the fake TGI direct.

Topology (all on loopback): the fake TGI (`python -m oversight_dev.faketgi`, TTFT 100 ms, 50 tokens/s, a
fixed reply of --reply-tokens tokens) as its own process; one daphne process (--web N: N of them, with
PostgreSQL and Redis, the production topology without nginx: the clients are dealt round-robin to the
processes, as nginx would spread them) serving the app with TGI_URL pointing at the fake, on the embedded
default (a fresh temp SQLite file, in-memory channel layer, local-memory cache) unless --database-url /
--redis-url are given; this script as the participants.

For each N in --streams:

1. N participants join the demo study through the real HTTP join flow (join link, consent form) and land on
   their first item, which is assisted (the demo runs the assisted condition first); the page gives the chat's
   websocket path.
2. **Platform**: N websocket clients connect and say hello; at one moment (a barrier) each sends one message.
   Per client: TTFT = send → first `delta` frame with text; the reply is rebuilt from the delta offsets as the
   page does and compared with the stored `ChatMessage.content` afterwards (tokens lost).
3. **Direct**: the exact chat-completion bodies the platform sent to the fake (read back from the fake's request
   log) are sent straight to the fake, N at once, with the client the platform uses (huggingface_hub's
   AsyncInferenceClient, one per request): TTFT = request → first content chunk.
4. Server CPU per streamed token: utime+stime of the daphne processes (/proc/<pid>/stat) over the platform
   phase, divided by the tokens the fake delivered to them in that phase.

--py-spy PATH samples each daphne process with py-spy (if installed) during the platform phase of every N and
writes folded stacks to PATH-<N>-<process>.txt (py-spy's `raw` format, for flamegraph.pl or speedscope).

--instrument runs daphne through this script (`--serve`), which wraps the chat path's costs with timers (the
sync work and its wait for the single thread-sensitive executor thread, cache writes, group sends, event loop
lag) and reports them per N; --cprofile PATH additionally cProfiles the event loop thread and the executor
thread during the platform phase. Both slow the server: their TTFTs are not the benchmark's numbers.

    .venv/bin/python bench/chat_stream.py --streams 50 200
    .venv/bin/python bench/chat_stream.py --streams 200 --instrument --cprofile /tmp/chat.pstats
    .venv/bin/python bench/chat_stream.py --streams 200 \\
        --database-url postgres://postgres@127.0.0.1:5432/oversight_chatbench --redis-url redis://127.0.0.1:6379/15
    .venv/bin/python bench/chat_stream.py --streams 200 --web 2 \\
        --database-url postgres://postgres@127.0.0.1:5432/oversight_chatbench --redis-url redis://127.0.0.1:6379/15

Exit status 1 if any reply was lost, failed or incomplete; the TTFT ratio target (≤ 1.05 at p50 and p95) is
reported, not enforced. See bench/README.md ("Chat streaming").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from oversight_dev.servers import DEFAULT as DEFAULT_SERVER  # noqa: E402
from oversight_dev.servers import SERVERS, group_cpu_s  # noqa: E402

MESSAGE = "Which answer do you think is right, and why?"
WORDS = ("the", "passage", "suggests", "option", "because", "evidence", "story", "answer", "likely", "reason")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- Small helpers ------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank quantile; p = 0.5 is the median."""
    if not values:
        return None
    ordered = sorted(values)
    if p == 0.5:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, max(0, int(round(p * len(ordered))) - 1))]


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.0f}"


def proc_cpu_s(pid: int) -> float:
    """utime + stime of the process and the group it leads, in seconds."""
    return group_cpu_s(pid)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def reply_text(tokens: int) -> str:
    """A fixed reply of exactly `tokens` tokens of the fake's toy tokenizer (a word with its leading space
    is one token, each punctuation character is one)."""
    from oversight_dev.tgiwire import tokenize

    words = [WORDS[i % len(WORDS)] for i in range(tokens)]
    text = "The" + "".join(f" {w}" for w in words[1:-1]) + "."
    assert len(tokenize(text)) == tokens, (len(tokenize(text)), tokens)
    return text


def http_json(url: str, method: str = "GET", body: dict | None = None, timeout: float = 30) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
    with opener.open(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


# --- Processes -----------------------------------------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen
    url: str
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


def start_fake(tmp: Path, args, max_streams: int) -> Proc:
    log_path = tmp / "faketgi.log"
    cmd = [
        sys.executable,
        "-m",
        "oversight_dev.faketgi",
        "--port",
        "0",
        "--ttft-ms",
        str(args.ttft_ms),
        "--tokens-per-s",
        str(args.tokens_per_s),
        "--max-concurrent-requests",
        str(max_streams * 2 + 16),
        "--reply",
        reply_text(args.reply_tokens),
    ]
    log = open(log_path, "w")  # noqa: SIM115 - handed to the child; closed with the process
    popen = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"faketgi exited with {popen.returncode}: {log_path.read_text()}")
        if m := re.search(r"listening on (http://\S+)", log_path.read_text()):
            return Proc(popen, m.group(1), log_path)
        time.sleep(0.1)
    popen.kill()
    raise RuntimeError(f"faketgi did not start in 20 s: {log_path.read_text()}")


def start_daphne(tmp: Path, env: dict[str, str], port: int, *, instrument: bool, server: str = "daphne") -> Proc:
    from oversight_dev.servers import web_command
    from tests.live_server import _wait_until_up

    log_path = tmp / f"daphne-{port}.log"
    if instrument:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
    else:  # exactly as production and tests/live_server.py run it (--server: another server, to compare)
        cmd = web_command(server, "127.0.0.1", port)
    log = open(log_path, "w")  # noqa: SIM115 - handed to the child; closed with the process
    popen = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, popen, log_path, deadline_s=60)
    except Exception:
        popen.kill()
        raise
    return Proc(popen, url, log_path)


def start_py_spy(daphne: Proc, out: str) -> subprocess.Popen:
    """Sample a daphne process until stop_py_spy (py-spy from the venv or PATH)."""
    exe = Path(sys.executable).with_name("py-spy")
    cmd = [str(exe) if exe.exists() else "py-spy", "record", "-p", str(daphne.pid), "-r", "200", "-f", "raw"]
    return subprocess.Popen([*cmd, "--nonblocking", "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(spy: subprocess.Popen) -> None:
    import signal

    spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()


def create_postgres(url: str) -> None:
    """Create the (absent) database named in the URL; the bench drops it at the end."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_postgres(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Participants --------------------------------------------------------------------------------------------


async def join(base_url: str, pids: list[str], concurrency: int = 8) -> list[str]:
    """Each pid joins the demo through the HTTP join flow; returns each one's chat websocket path."""
    from oversight_dev.bots import httpx, parse_page

    semaphore = asyncio.Semaphore(concurrency)

    async def one(pid: str) -> str:
        async with (
            semaphore,
            httpx.AsyncClient(timeout=httpx.Timeout(60), trust_env=False, follow_redirects=True) as client,
        ):
            params = {"PROLIFIC_PID": pid, "STUDY_ID": "bench", "SESSION_ID": f"{pid}-s"}
            page = await client.get(f"{base_url}/s/demo/?{urlencode(params)}")
            consent = next(f for f in parse_page(page.text).forms if f.input("consent") is not None)
            action = urljoin(str(page.url), consent.attrs.get("action") or "")
            trial = await client.post(action, data={**consent.hidden(), "consent": "yes"})
            for _ in range(4):  # the study's instructions and the block's introduction come first: their button
                page = parse_page(trial.text)
                form = next((f for f in page.forms if f.attrs.get("id") == "continue-form"), None)
                if "chat" in page.ids or form is None or trial.status_code != 200:
                    break
                trial = await client.post(urljoin(str(trial.url), form.attrs.get("action") or ""), data=form.hidden())
            chat = parse_page(trial.text).ids.get("chat")
            if trial.status_code != 200 or chat is None:
                raise RuntimeError(f"{pid}: landed on {trial.url} (HTTP {trial.status_code}) without a chat pane")
            return chat["data-ws-path"]

    return list(await asyncio.wait_for(asyncio.gather(*(one(p) for p in pids)), timeout=60 + 2 * len(pids)))


# --- The platform phase --------------------------------------------------------------------------------------


@dataclass
class ClientResult:
    message_id: int | None = None
    sent: float = 0.0
    first: float | None = None
    final: float | None = None
    status: str = ""
    text: str = ""
    gaps: int = 0
    error: str = ""

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent


async def platform_round(
    base_urls: list[str], ws_paths: list[str], timeout_s: float, on_barrier, spread_s: float = 0.0
) -> list[ClientResult]:
    from websockets.asyncio.client import connect

    from oversight_dev.bots import ChatStream, ws_url

    results = [ClientResult() for _ in ws_paths]
    connected = 0
    all_connected = asyncio.Event()
    go = asyncio.Event()
    connect_gate = asyncio.Semaphore(16)

    async def client(i: int, path: str) -> None:
        nonlocal connected
        r = results[i]
        stream = ChatStream()
        base_url = base_urls[i % len(base_urls)]  # round-robin, as nginx deals new connections
        async with connect_gate:
            ws = await connect(
                ws_url(base_url, path),
                origin=base_url,
                proxy=None,
                open_timeout=60,
                close_timeout=2,
                max_size=8 * 2**20,
                ping_interval=None,
            )
        try:
            await ws.send(json.dumps({"type": "hello", "reconnect": False}))
            while json.loads(await ws.recv()).get("type") != "history":
                pass
            connected += 1
            if connected == len(ws_paths):
                all_connected.set()
            await go.wait()
            if spread_s:
                await asyncio.sleep(spread_s * i / len(ws_paths))
            r.sent = time.perf_counter()
            await ws.send(json.dumps({"type": "send", "text": MESSAGE, "client_id": f"bench-{i}"}))
            accepted = False
            while r.final is None:
                frame = json.loads(await ws.recv())
                now = time.perf_counter()
                kind = frame.get("type")
                if kind == "delta":
                    if not stream.delta(frame, now):
                        r.gaps += 1
                        await ws.send(json.dumps({"type": "hello", "reconnect": False}))
                elif kind == "history":
                    for m in frame.get("messages", []):
                        stream.snapshot(m)
                elif kind == "error":
                    r.status, r.error, r.final = "refused", frame.get("message", ""), now
                elif kind == "message":
                    m = frame["message"]
                    if m["role"] == "user":
                        accepted = True
                    elif m["role"] == "assistant" and accepted and r.message_id in (None, m["id"]):
                        r.message_id = m["id"]
                        stream.snapshot(m)
                        if m["status"] != "streaming":
                            r.status, r.final = m["status"], now
        finally:
            if r.message_id is not None:
                r.text = stream.text.get(r.message_id, "")
                r.first = stream.first_delta.get(r.message_id)
            await ws.close()

    tasks = [asyncio.create_task(client(i, p)) for i, p in enumerate(ws_paths)]
    try:
        waiter = asyncio.create_task(all_connected.wait())
        done, _ = await asyncio.wait([waiter, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            failed = [t for t in tasks if t.done() and t.exception()]
            raise RuntimeError(
                f"only {connected}/{len(ws_paths)} websockets connected"
                + (f": {failed[0].exception()!r}" if failed else "")
            )
        await asyncio.sleep(0.5)  # let the hellos settle: the barrier starts from a quiet server
        await on_barrier()
        go.set()
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for i, t in enumerate(tasks):
            if t.cancelled():
                results[i].status, results[i].error = "no_reply", f"no final reply in {timeout_s:g} s"
            elif t.exception():
                results[i].status, results[i].error = "error", repr(t.exception())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


# --- The direct phase ----------------------------------------------------------------------------------------

SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed", "frequency_penalty", "presence_penalty", "stop")


@dataclass
class DirectResult:
    sent: float = 0.0
    first: float | None = None
    final: float | None = None
    text: str = ""
    error: str = ""

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent


async def direct_round(
    fake_url: str, bodies: list[dict], timeout_s: float, client_kind: str, spread_s: float = 0.0
) -> list[DirectResult]:
    """The platform's requests, straight to the fake, all at once.

    `raw` (the baseline): the recorded bodies as they are, over one httpx2 client made before the barrier, the
    SSE read line by line. `hf`: huggingface_hub's AsyncInferenceClient made per request inside the timed
    region, exactly as the platform's backend does (its httpx2 client, SSL context included, is built then).
    """
    import httpx2
    from huggingface_hub import AsyncInferenceClient

    results = [DirectResult() for _ in bodies]
    go = asyncio.Event()
    shared = httpx2.AsyncClient(
        timeout=httpx2.Timeout(timeout_s), trust_env=False, limits=httpx2.Limits(max_connections=len(bodies) + 8)
    )

    async def raw(r: DirectResult, body: dict) -> None:
        async with shared.stream("POST", f"{fake_url}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                for choice in json.loads(data).get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text and r.first is None:
                        r.first = time.perf_counter()
                    r.text += text

    async def hf(r: DirectResult, body: dict) -> None:
        client = AsyncInferenceClient(base_url=fake_url, timeout=timeout_s)
        params = {k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None}
        try:
            stream = await client.chat_completion(
                body["messages"], stream=True, stream_options={"include_usage": True}, **params
            )
            async for chunk in stream:
                for choice in chunk.choices or []:
                    text = (choice.delta.content or "") if choice.delta else ""
                    if text and r.first is None:
                        r.first = time.perf_counter()
                    r.text += text
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def one(i: int, body: dict) -> None:
        r = results[i]
        await go.wait()
        if spread_s:
            await asyncio.sleep(spread_s * i / len(bodies))
        r.sent = time.perf_counter()
        try:
            await (raw if client_kind == "raw" else hf)(r, body)
            r.final = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - reported per request
            r.error = repr(exc)[:300]

    tasks = [asyncio.create_task(one(i, b)) for i, b in enumerate(bodies)]
    try:
        await asyncio.sleep(0.5)
        go.set()
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await shared.aclose()
    for r, t in zip(results, tasks, strict=True):
        if t.cancelled() and not r.error:
            r.error = f"no end of stream in {timeout_s:g} s"
    return results


# --- One N ---------------------------------------------------------------------------------------------------


@dataclass
class RoundResult:
    n: int
    platform_ttft: list[float] = field(default_factory=list)
    direct_ttft: list[float] = field(default_factory=list)
    server_ttft: list[float] = field(default_factory=list)  # ChatMessage.ttft_ms: the backend as daphne sees it
    platform_total: list[float] = field(default_factory=list)
    direct_total: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    incomplete: int = 0  # replies the client did not see complete, or not stored complete
    lost_chars: int = 0
    lost_replies: int = 0
    gaps: int = 0
    tokens: int = 0
    stored_tokens: int = 0
    server_cpu_s: float = 0.0
    fake_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0
    machine_busy: float = 0.0
    load_avg: float = 0.0  # 1-minute load average just before the barrier: other work on the machine
    phase_s: float = 0.0
    instrument: dict | None = None

    def summary(self) -> dict:
        p50p, p95p = pct(self.platform_ttft, 0.5), pct(self.platform_ttft, 0.95)
        p50d, p95d = pct(self.direct_ttft, 0.5), pct(self.direct_ttft, 0.95)
        return {
            "streams": self.n,
            "platform_ttft_ms": {"p50": _r(p50p), "p95": _r(p95p), "max": _r(max(self.platform_ttft, default=None))},
            "direct_ttft_ms": {"p50": _r(p50d), "p95": _r(p95d), "max": _r(max(self.direct_ttft, default=None))},
            "ratio": {
                "p50": round(p50p / p50d, 3) if p50p and p50d else None,
                "p95": round(p95p / p95d, 3) if p95p and p95d else None,
            },
            "server_ttft_ms": {"p50": _r(pct(self.server_ttft, 0.5)), "p95": _r(pct(self.server_ttft, 0.95))},
            "reply_ms": {
                "platform_p50": _r(pct(self.platform_total, 0.5)),
                "direct_p50": _r(pct(self.direct_total, 0.5)),
            },
            "failures": len(self.failures),
            "incomplete_replies": self.incomplete,
            "failure_details": self.failures[:20],
            "tokens_lost": {"chars": self.lost_chars, "replies": self.lost_replies, "gaps": self.gaps},
            "tokens_streamed": self.tokens,
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_cpu_ms_per_token": round(self.server_cpu_s * 1000 / self.tokens, 3) if self.tokens else None,
            "server_cpu_share": round(self.server_cpu_s / self.phase_s, 3) if self.phase_s else None,
            "fake_cpu_s": round(self.fake_cpu_s, 3),
            "bench_client_cpu_s": round(self.bench_cpu_s, 3),
            "machine_busy": round(self.machine_busy, 3),
            "load_avg_before": round(self.load_avg, 2),
            "phase_s": round(self.phase_s, 2),
            "instrument": self.instrument,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def stored_replies(env: dict[str, str], ids: list[int]) -> dict[int, dict]:
    from tests.live_server import run_manage

    code = (
        "import json\nfrom oversight.assistant.models import ChatMessage\n"
        f"ids = {ids!r}\n"
        "rows = ChatMessage.objects.filter(pk__in=ids).values('pk', 'status', 'content', 'ttft_ms', 'total_ms',"
        " 'completion_tokens', 'error')\n"
        "print('@@' + json.dumps({r['pk']: r for r in rows}))"
    )
    out = run_manage(env, "shell", "-c", code, timeout=120).stdout
    line = next(x for x in reversed(out.splitlines()) if x.startswith("@@"))
    return {int(k): v for k, v in json.loads(line[2:]).items()}


async def run_n(
    n: int, tag: str, *, args, env: dict, daphnes: list[Proc], fake: Proc, reply: str, report: bool = True
) -> RoundResult:
    result = RoundResult(n=n)
    daphne = daphnes[0]
    pids = [f"bench-{tag}-{i}" for i in range(n)]
    t = time.monotonic()
    ws_paths = await join(daphne.url, pids)
    if report:
        print(f"  N={n}: {n} participants joined in {time.monotonic() - t:.1f} s", flush=True)
    http_json(f"{fake.url}/__fake/requests", method="DELETE")
    marks: dict[str, float] = {}
    instrumented = args.instrument
    spies: list[subprocess.Popen] = []

    def server_cpu_s() -> float:
        return sum(proc_cpu_s(d.pid) for d in daphnes)

    async def on_barrier() -> None:
        if instrumented:
            http_json(f"{daphne.url}/__bench/reset", method="POST", body={"cprofile": bool(args.cprofile) and report})
        if args.py_spy and report:
            spies.extend(start_py_spy(d, f"{args.py_spy}-{n}-{k}.txt") for k, d in enumerate(daphnes))
        marks["server"], marks["fake"] = server_cpu_s(), proc_cpu_s(fake.pid)
        marks["bench"] = sum(os.times()[:2])
        marks["busy"], marks["total"] = machine_cpu()
        marks["tokens"] = http_json(f"{fake.url}/__fake/stats")["tokens_sent"]
        result.load_avg = os.getloadavg()[0]
        marks["t"] = time.perf_counter()

    clients = await platform_round([d.url for d in daphnes], ws_paths, args.timeout, on_barrier, args.spread)
    end = time.perf_counter()
    result.phase_s = end - marks["t"]
    result.server_cpu_s = server_cpu_s() - marks["server"]
    for spy in spies:
        stop_py_spy(spy)
    result.fake_cpu_s = proc_cpu_s(fake.pid) - marks["fake"]
    result.bench_cpu_s = sum(os.times()[:2]) - marks["bench"]
    busy, total = machine_cpu()
    result.machine_busy = (busy - marks["busy"]) / max(1, total - marks["total"])
    result.tokens = http_json(f"{fake.url}/__fake/stats")["tokens_sent"] - marks["tokens"]
    if instrumented:
        result.instrument = http_json(
            f"{daphne.url}/__bench/stats", method="POST", body={"cprofile_out": args.cprofile if report else None}
        )

    stored = stored_replies(env, [c.message_id for c in clients if c.message_id is not None])
    for i, c in enumerate(clients):
        row = stored.get(c.message_id) if c.message_id is not None else None
        if c.status != "complete" or row is None or row["status"] != "complete":
            result.incomplete += 1
            result.failures.append(
                f"client {i}: client saw {c.status or 'no final message'} {c.error}; stored "
                f"{row and row['status']} {row and row['error']}".strip()
            )
        elif row is not None:  # both final: the rebuilt text must be the stored text
            content = row["content"]
            common = len(os.path.commonprefix([c.text, content]))
            lost = (len(content) - common) + (len(c.text) - common)
            result.lost_chars += lost
            result.lost_replies += bool(lost)
            result.stored_tokens += row["completion_tokens"] or 0
            if row["ttft_ms"] is not None:
                result.server_ttft.append(row["ttft_ms"] / 1000)
            if content != reply:
                result.failures.append(f"client {i}: stored reply is not the fake's fixed reply")
        result.gaps += c.gaps
        if c.ttft is not None:
            result.platform_ttft.append(c.ttft)
        if c.final is not None and c.status == "complete":
            result.platform_total.append(c.final - c.sent)

    bodies = [
        r["json"] for r in http_json(f"{fake.url}/__fake/requests") if r["path"] == "/v1/chat/completions" and r["json"]
    ]
    if len(bodies) != n:
        result.failures.append(f"the fake logged {len(bodies)} chat requests for {n} messages")
    direct = await direct_round(fake.url, bodies, args.timeout, args.direct_client, args.spread)
    for d in direct:
        if d.error or d.text != reply:
            result.failures.append(f"direct: {d.error or 'reply differs from the fixed reply'}")
        if d.ttft is not None:
            result.direct_ttft.append(d.ttft)
        if d.final is not None:
            result.direct_total.append(d.final - d.sent)
    return result


# --- Main ----------------------------------------------------------------------------------------------------


def print_table(rows: list[dict], backend: str) -> None:
    print(f"\nbackend: {backend}")
    print(
        "| streams | platform TTFT p50 / p95 (ms) | direct TTFT p50 / p95 (ms) | ratio p50 / p95 | "
        "daphne's own TTFT p50 / p95 (ms) | tokens lost | failures | server CPU per token | daphne CPU | "
        "machine busy | load avg before |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in rows:
        print(
            f"| {s['streams']} | {s['platform_ttft_ms']['p50']} / {s['platform_ttft_ms']['p95']} | "
            f"{s['direct_ttft_ms']['p50']} / {s['direct_ttft_ms']['p95']} | "
            f"{s['ratio']['p50']} / {s['ratio']['p95']} | "
            f"{s['server_ttft_ms']['p50']} / {s['server_ttft_ms']['p95']} | {s['tokens_lost']['chars']} | "
            f"{s['failures']} | {s['server_cpu_ms_per_token']} ms ({s['tokens_streamed']} tokens) | "
            f"{s['server_cpu_share'] * 100:.0f}% of a core | "
            f"{s['machine_busy'] * 100:.0f}% of {os.cpu_count()} CPUs | "
            f"{s['load_avg_before']} |"
        )


def print_instrument(s: dict) -> None:
    inst = s.get("instrument")
    if not inst:
        return
    print(f"\nN={s['streams']}: where daphne's time went during the platform phase ({inst['wall_s']:.2f} s)")
    print(
        f"  event loop lag (10 ms ticks): p50 {inst['loop_lag_ms']['p50']} ms, p95 {inst['loop_lag_ms']['p95']} ms, "
        f"max {inst['loop_lag_ms']['max']} ms"
    )
    print("  | what | calls | total s | mean ms | p50 ms | p95 ms | max ms |")
    print("  |---|---:|---:|---:|---:|---:|---:|")
    for name, t in sorted(inst["timers"].items(), key=lambda kv: -kv[1]["total_s"]):
        print(
            f"  | {name} | {t['count']} | {t['total_s']:.3f} | {t['mean_ms']} | {t['p50_ms']} | {t['p95_ms']} | "
            f"{t['max_ms']} |"
        )
    if inst.get("cprofile"):
        print(f"  cProfile written to {inst['cprofile']}")


async def main_async(args) -> int:
    from tests.live_server import free_port, run_manage, server_env

    tmp = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    fake = None
    daphnes: list[Proc] = []
    created_pg = False
    try:
        fake = start_fake(tmp, args, max(args.streams))
        reply = reply_text(args.reply_tokens)
        env = server_env(tmp)
        env.update(
            {
                "TGI_URL": fake.url,
                "LOG_LEVEL": "WARNING",
                "DEBUG": "1" if args.debug else "0",
                "SECRET_KEY": "bench-" + "x" * 50,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "0",
                "SECURE_COOKIES": "0",
                "SECURE_HSTS_SECONDS": "0",
            }
        )
        backend = "SQLite (temp file, WAL)"
        if args.database_url:
            create_postgres(args.database_url)
            created_pg = True
            env["DATABASE_URL"] = args.database_url
            backend = "PostgreSQL (" + urlsplit(args.database_url).hostname + ")"
        if args.redis_url:
            env["REDIS_URL"] = args.redis_url
            backend += " + Redis channel layer and cache"
        else:
            backend += " + in-memory channel layer + local-memory cache"
        if not args.debug:  # production settings serve collected static files (whitenoise)
            env["STATIC_ROOT"] = str(tmp / "static")
            run_manage(env, "collectstatic", "--noinput", "-v", "0", timeout=180)
        run_manage(env, "migrate", "--noinput", "-v", "0", timeout=300)
        run_manage(env, "seed_demo", "--mmlu-time-limit", "0", "--quality-time-limit", "0", timeout=300)
        run_manage(
            env,
            "shell",
            "-c",
            "from oversight.core.models import ModelEndpoint\n"
            "assert ModelEndpoint.objects.filter(name='Demo TGI').update(max_concurrency=100000, "
            "request_timeout_s=300) == 1",
        )
        daphnes = [
            start_daphne(tmp, env, free_port(), instrument=args.instrument, server=args.server) for _ in range(args.web)
        ]
        servers = ", ".join(f"{d.url} (pid {d.pid})" for d in daphnes)
        print(
            f"chat_stream: fake TGI {fake.url} (TTFT {args.ttft_ms:g} ms, {args.tokens_per_s:g} tokens/s, "
            f"replies of {args.reply_tokens} tokens); {args.server} {servers}; {backend}; "
            f"DEBUG={int(args.debug)}; direct client {args.direct_client}; {os.cpu_count()} CPUs; "
            f"{f'sends spread over {args.spread:g} s; ' if args.spread else 'sends at one barrier; '}"
            f"{'instrumented; ' if args.instrument else ''}"
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        await run_n(
            min(5 * args.web, max(args.streams)),  # every process warmed up
            "warmup",
            args=args,
            env=env,
            daphnes=daphnes,
            fake=fake,
            reply=reply,
            report=False,
        )
        rows = []
        for rnd in range(args.rounds):
            for n in args.streams:
                result = await run_n(n, f"{rnd}-{n}", args=args, env=env, daphnes=daphnes, fake=fake, reply=reply)
                s = result.summary()
                rows.append(s)
                print(
                    f"  N={n}: platform TTFT p50 {s['platform_ttft_ms']['p50']} ms, p95 "
                    f"{s['platform_ttft_ms']['p95']} ms; direct p50 {s['direct_ttft_ms']['p50']} ms, p95 "
                    f"{s['direct_ttft_ms']['p95']} ms; ratio {s['ratio']['p50']} / {s['ratio']['p95']}; "
                    f"lost {s['tokens_lost']['chars']} chars; {s['failures']} failures",
                    flush=True,
                )
                for line in s["failure_details"][:5]:
                    print(f"    {line}")
        print_table(rows, backend)
        for s in rows:
            print_instrument(s)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "backend": backend,
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "cpus": os.cpu_count(),
                        "rows": rows,
                    },
                    indent=2,
                )
            )
        bad = any(s["failures"] or s["tokens_lost"]["chars"] or s["tokens_lost"]["gaps"] for s in rows)
        return 1 if bad else 0
    except Exception:
        for daphne in daphnes:
            print(f"--- daphne log ({daphne.url})\n{daphne.log_tail()}", file=sys.stderr)
        if fake is not None:
            print(f"--- faketgi log\n{fake.log_tail()}", file=sys.stderr)
        raise
    finally:
        for p in (*daphnes, fake):
            if p is not None:
                p.stop()
        if created_pg:
            drop_postgres(args.database_url)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[50, 200], help="concurrent chats [50 200]")
    parser.add_argument("--ttft-ms", type=float, default=100.0, help="the fake's time to first token [100]")
    parser.add_argument("--tokens-per-s", type=float, default=50.0, help="the fake's token rate [50]")
    parser.add_argument("--reply-tokens", type=int, default=100, help="reply length in tokens, both phases [100]")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every N this many times [1]")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a phase may take [120]")
    parser.add_argument(
        "--direct-client",
        choices=["raw", "hf"],
        default="raw",
        help="direct phase: one httpx2 client made before the barrier (raw), or huggingface_hub's "
        "client made per request as the platform does (hf) [raw]",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="seconds over which the N sends are spread evenly (0: all at the barrier) [0]",
    )
    parser.add_argument("--debug", action="store_true", help="run daphne with DEBUG=1 (default: DEBUG=0)")
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER, help=f"the web server [{DEFAULT_SERVER}]")
    parser.add_argument("--database-url", help="PostgreSQL: a database to create, use and drop")
    parser.add_argument("--redis-url", help="Redis for the channel layer and cache (e.g. redis://127.0.0.1:6379/15)")
    parser.add_argument("--instrument", action="store_true", help="time the server's chat path (slows it)")
    parser.add_argument("--cprofile", help="with --instrument: write a pstats file of the platform phase")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--web", type=int, default=1, help="daphne processes (2+: needs PostgreSQL and Redis) [1]")
    parser.add_argument("--py-spy", help="sample the daphne processes with py-spy: PATH-<N>-<process>.txt")
    args = parser.parse_args(argv)
    if args.web > 1 and not (args.database_url and args.redis_url):
        parser.error("--web 2+ needs --database-url and --redis-url (the processes share the chat through them)")
    if args.web > 1 and args.instrument:
        parser.error("--instrument times one process: use --web 1")
    if args.cprofile and not args.instrument:
        parser.error("--cprofile needs --instrument")
    if any(n < 1 for n in args.streams) or args.reply_tokens < 3:
        parser.error("streams must be positive and replies at least 3 tokens")
    return args


# --- The instrumented server (--serve PORT): daphne in this process, with timers around the chat path --------


class Timers:
    def __init__(self):
        import threading

        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {}
        self.lag: list[float] = []
        self.started = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            bucket = self.samples.setdefault(name, [])
            if len(bucket) < 500_000:
                bucket.append(seconds)

    def reset(self) -> None:
        with self.lock:
            self.samples, self.lag, self.started = {}, [], time.perf_counter()

    def view(self) -> dict:
        with self.lock:
            timers = {
                name: {
                    "count": len(v),
                    "total_s": round(sum(v), 4),
                    "mean_ms": round(sum(v) / len(v) * 1000, 3),
                    "p50_ms": round(pct(v, 0.5) * 1000, 3),
                    "p95_ms": round(pct(v, 0.95) * 1000, 3),
                    "max_ms": round(max(v) * 1000, 3),
                }
                for name, v in self.samples.items()
                if v
            }
            lag = list(self.lag)
        return {
            "wall_s": round(time.perf_counter() - self.started, 3),
            "timers": timers,
            "loop_lag_ms": {"p50": _r(pct(lag, 0.5)), "p95": _r(pct(lag, 0.95)), "max": _r(max(lag, default=None))},
        }


def serve(port: int) -> None:
    """Run daphne in this process with timers on the chat path; `/__bench/reset` and `/__bench/stats` (POST)."""
    import cProfile
    import functools
    import threading

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    import django

    django.setup()
    from asgiref.sync import SyncToAsync, sync_to_async
    from channels.db import DatabaseSyncToAsync

    from oversight.assistant import generation

    timers = Timers()
    profiles: dict[int, cProfile.Profile] = {}
    profiling = {"on": False}

    def thread_profile() -> None:
        if profiling["on"] and threading.get_ident() not in profiles:
            prof = cProfile.Profile()
            profiles[threading.get_ident()] = prof
            prof.enable()

    # Sync work: time inside the executor thread (the function alone; "[db call]" adds Django's
    # close_old_connections around it), and time awaited on the event loop (the wait for the thread included).
    def name_of(func) -> str:
        target = getattr(func, "func", func)
        return getattr(target, "__qualname__", getattr(target, "__name__", repr(target)))

    base_handler = SyncToAsync.thread_handler

    def thread_handler(self, loop, exc_info, task_context, func, child, *args, **kwargs):
        thread_profile()
        start = time.perf_counter()
        try:
            return base_handler(self, loop, exc_info, task_context, func, child, *args, **kwargs)
        finally:
            timers.add(f"sync run: {name_of(child)}", time.perf_counter() - start)

    SyncToAsync.thread_handler = thread_handler
    db_handler = DatabaseSyncToAsync.thread_handler

    def db_thread_handler(self, loop, exc_info, task_context, func, child, *args, **kwargs):
        start = time.perf_counter()
        try:
            return db_handler(self, loop, exc_info, task_context, func, child, *args, **kwargs)
        finally:
            timers.add(f"sync run [db call]: {name_of(child)}", time.perf_counter() - start)

    DatabaseSyncToAsync.thread_handler = db_thread_handler
    base_call = SyncToAsync.__call__

    async def call(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return await base_call(self, *args, **kwargs)
        finally:
            timers.add(f"awaited (queue + run): {name_of(self.func)}", time.perf_counter() - start)

    SyncToAsync.__call__ = call

    def timed_async(owner, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        async def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                timers.add(label, time.perf_counter() - start)

        setattr(owner, attr, wrapper)

    from oversight.assistant import live

    timed_async(live, "aset", "live.aset (a frame's live text)")
    from channels.layers import get_channel_layer

    layer_cls = type(get_channel_layer())
    timed_async(layer_cls, "group_send", "channel layer group_send")
    timed_async(generation, "run_generation", "run_generation (whole reply)")

    original_stream = generation.stream_reply

    def stream_reply(request):
        async def gen():
            start = time.perf_counter()
            first = True
            async for chunk in original_stream(request):
                if first and chunk.text:
                    first = False
                    timers.add("backend: stream opened → first token (in daphne)", time.perf_counter() - start)
                yield chunk

        return gen()

    generation.stream_reply = stream_reply

    from oversight.participant.consumers import ChatConsumer

    timed_async(ChatConsumer, "receive_json", "consumer receive_json (send: store, publish, start)")

    from oversight.asgi import application as app

    async def lag_monitor() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            timers.lag.append(time.perf_counter() - start - 0.01)
            if len(timers.lag) > 500_000:
                timers.lag.clear()

    lag_task = {}

    async def application(scope, receive, send):
        if "lag" not in lag_task:
            lag_task["lag"] = asyncio.get_running_loop().create_task(lag_monitor())
        if scope["type"] == "http" and scope["path"].startswith("/__bench/"):
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            data = json.loads(body or b"{}")
            out: dict = {}
            if scope["path"] == "/__bench/reset":
                timers.reset()
                if data.get("cprofile"):
                    profiles.clear()
                    profiling["on"] = True
                    thread_profile()  # the event loop's thread
            elif scope["path"] == "/__bench/stats":
                out = timers.view()
                if profiling["on"]:
                    profiling["on"] = False
                    for tid, prof in profiles.items():
                        if tid == threading.get_ident():
                            prof.disable()
                        else:  # a profiler is switched off in its own thread: the executor's
                            await sync_to_async(prof.disable, thread_sensitive=True)()
                    if data.get("cprofile_out"):
                        import pstats

                        stats = pstats.Stats(*profiles.values())
                        stats.dump_stats(data["cprofile_out"])
                        out["cprofile"] = data["cprofile_out"]
            payload = json.dumps(out).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await app(scope, receive, send)

    globals()["application"] = application
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(["-b", "127.0.0.1", "-p", str(port), "__main__:application"])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(int(argv[1]))
        return 0
    args = parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
