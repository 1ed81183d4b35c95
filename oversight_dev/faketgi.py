"""A fake text-generation-inference (TGI) server that speaks TGI v3's wire format, for tests and benchmarks.

Standard library only: asyncio streams and a small hand-written HTTP/1.1 server (keep-alive, Content-Length
bodies, chunked Server-Sent Events as axum/hyper send them). See docs/faketgi.md for the knobs, the fault
catalogue, the scripted log-probabilities and which huggingface_hub exception each fault produces.

    # a test, server on its own thread and event loop
    with FakeTGI(ttft_ms=0, tokens_per_s=0) as tgi:
        InferenceClient(base_url=tgi.url).chat_completion(...)

    # inside an async test, on the test's loop
    async with AsyncFakeTGI() as tgi: ...

    # a process, for benchmarks and harnesses
    python -m oversight_dev.faketgi --port 8089 --ttft-ms 100 --tokens-per-s 50 --fault http_status=429
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.utils
import http
import json
import signal
import socket
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oversight_dev import tgiwire as wire

DEFAULT_GENERATION_LENGTH = 1024  # validation.rs: the cap on max_new_tokens when a request leaves it unset
CORS_HEADERS = (  # tower-http's CorsLayer as TGI configures it
    ("access-control-allow-origin", "*"),
    ("vary", "origin, access-control-request-method, access-control-request-headers"),
)
GENERATION_ROUTES = {"/generate", "/generate_stream", "/", "/v1/chat/completions"}


@dataclass(frozen=True)
class FakeTGIConfig:
    """Everything that shapes the fake's answers. Every field is a constructor keyword, a CLI flag or fault, and
    settable at runtime (``configure(...)`` / ``POST /__fake/config``)."""

    # What /info says, and what validation enforces.
    model_id: str = "faketgi/zephyr-7b-fake"
    version: str = "3.3.6-dev0"
    docker_label: str | None = None
    compute_type: str = "gpu+optimized"
    max_input_tokens: int = 4095
    max_total_tokens: int = 4096
    max_concurrent_requests: int = 128
    max_top_n_tokens: int = 5
    max_stop_sequences: int = 4
    max_best_of: int = 2
    max_client_batch_size: int = 4
    payload_limit: int = 2_000_000
    # Speed: time to first token, then a steady token rate (0 = as fast as possible).
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    # Replies: a fixed text or token list (None = the default generator); queued replies go first.
    reply: str | list[Any] | None = None
    # Scripted logprobs for scoring requests: token text -> logprob (see docs/faketgi.md).
    letter_logprobs: dict[str, float] | None = None
    # Faults.
    down: bool = False  # stop listening: connection refused
    down_for_s: float | None = None  # with down: come back up by itself after this long
    hang: bool = False  # read the request, never answer
    unhealthy: bool = False  # /health answers 503
    http_status: int | None = None  # answer generation routes with this status and TGI's body
    stream_error_after: int | None = None  # fail after N tokens (in-stream event, or HTTP error when not streaming)
    stream_error_type: str = "generation"  # generation | overloaded | validation | incomplete_generation[_stream]
    chat_error_shape: str = "openai"  # chat stream errors: "openai" (TGI >= 2.4.1) or "legacy" ({error, error_type})
    malformed_json_after: int | None = None  # a truncated JSON data line after N tokens (or a truncated body)
    stall_after: int | None = None  # stop sending after N tokens, keep the connection open (mid-stream stall)
    error_message: str | None = None  # replaces the default text of any injected error
    fault_times: int | None = None  # apply hang/http_status/stream/malformed faults to this many requests, then clear

    @property
    def fingerprint(self) -> str:
        return f"{self.version}-{self.docker_label or 'native'}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FAULT_FIELDS = ("hang", "http_status", "stream_error_after", "malformed_json_after", "stall_after")
_FIELD_NAMES = {f.name for f in dataclasses.fields(FakeTGIConfig)}
_OPTIONAL_INTS = {"http_status", "stream_error_after", "malformed_json_after", "stall_after", "fault_times"}


def _coerce(name: str, value: Any) -> Any:
    """Check and convert one config value (from Python, JSON or a CLI string)."""
    default = getattr(FakeTGIConfig, name)
    if value is None:
        if default is not None:
            raise ValueError(f"{name} cannot be null")
        return None
    if name == "letter_logprobs":
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, Mapping) or not all(isinstance(v, (int, float)) for v in value.values()):
            raise ValueError("letter_logprobs must map token text to a number")
        return {str(k): float(v) for k, v in value.items()}
    if name == "reply" and isinstance(value, list):
        return value
    if name == "stream_error_type" and value not in wire.ERROR_KINDS:
        raise ValueError(f"stream_error_type must be one of {wire.ERROR_KINDS}")
    if name == "chat_error_shape" and value not in ("openai", "legacy"):
        raise ValueError("chat_error_shape must be 'openai' or 'legacy'")
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on", "")
        return bool(value)
    if name in _OPTIONAL_INTS or isinstance(default, int):
        return int(value)
    if name == "down_for_s" or isinstance(default, float):
        return float(value)
    return str(value)


@dataclass
class RecordedRequest:
    """One request the fake received (control routes excluded)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    time: float  # time.time() when it arrived
    status: int | None = None  # the HTTP status answered (200 for streams, even when an error event followed)


@dataclass
class ReplyContext:
    """What a ``reply_fn`` gets to decide the reply text."""

    route: str
    messages: list[dict[str, Any]]
    prompt: str
    body: dict[str, Any]


# --------------------------------------------------------------------------------------------------------------
# HTTP/1.1


class _BadRequest(Exception):
    pass


@dataclass
class _Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


async def _read_request(reader: asyncio.StreamReader, payload_limit: int) -> _Request | None:
    line = await reader.readline()
    while line in (b"\r\n", b"\n"):
        line = await reader.readline()
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
    except ValueError as exc:
        raise _BadRequest("malformed request line") from exc
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest("malformed header")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    path, _, query = target.partition("?")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        size = 0
        while True:
            length = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if length == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            size += length
            if size > payload_limit:
                raise _PayloadTooLarge
            chunks.append(await reader.readexactly(length))
            await reader.readline()
        body = b"".join(chunks)
    else:
        length = int(headers.get("content-length", "0") or 0)
        if length > payload_limit:
            raise _PayloadTooLarge
        body = await reader.readexactly(length) if length else b""
    return _Request(method.upper(), path, query, version, headers, body)


class _PayloadTooLarge(Exception):
    pass


class _Responder:
    """Writes one response, with hyper's framing: Content-Length for whole bodies, chunked for event streams."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
        record: RecordedRequest | None = None,
        reader: asyncio.StreamReader | None = None,
    ):
        self.writer = writer
        self.reader = reader
        self.keep_alive = keep_alive
        self.record = record
        self.started = False

    def _head(self, status: int, headers: Iterable[tuple[str, str]]) -> bytes:
        if self.record is not None:
            self.record.status = status
        self.started = True
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not self.keep_alive:
            lines.append("connection: close")
        lines.append(f"date: {email.utils.formatdate(usegmt=True)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(
        self,
        status: int,
        body: bytes | str = b"",
        *,
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        cors: bool = True,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        hdrs = [("content-type", content_type)] if content_type else []
        hdrs += list(headers)
        if cors:
            hdrs += CORS_HEADERS
        hdrs.append(("content-length", str(len(data))))
        self.writer.write(self._head(status, hdrs) + data)
        await self.writer.drain()

    async def send_json(self, status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        await self.send(status, wire.dumps(obj), content_type="application/json", headers=headers)

    async def send_error(self, err: wire.InferError) -> None:
        await self.send_json(err.status, err.body())

    async def start_events(self, headers: Iterable[tuple[str, str]]) -> None:
        hdrs = [("content-type", "text/event-stream"), ("cache-control", "no-cache"), *headers, *CORS_HEADERS]
        hdrs.append(("transfer-encoding", "chunked"))
        self.writer.write(self._head(200, hdrs))
        await self.writer.drain()

    async def chunk(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def event(self, data: str) -> None:
        """One SSE event as axum writes it: ``data: <payload>\\n\\n`` (TGI >= 2.1 puts a space after the colon)."""
        await self.chunk(b"data: " + data.encode() + b"\n\n")

    async def end_events(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()


# --------------------------------------------------------------------------------------------------------------
# The server


@dataclass
class _Params:
    """A generation request after the chat→generate translation, as validation sees it."""

    prompt: str
    messages: list[dict[str, Any]]
    max_new_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    top_n: int | None = None
    details: bool = False
    decoder_input_details: bool = False
    do_sample: bool = False
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    truncate: int | None = None
    best_of: int | None = None
    return_full_text: bool = False


@dataclass
class _Faults:
    hang: bool = False
    http_status: int | None = None
    stream_error_after: int | None = None
    malformed_json_after: int | None = None
    stall_after: int | None = None


class AsyncFakeTGI:
    """The fake TGI server on the running event loop. ``async with AsyncFakeTGI(...) as tgi: tgi.url``."""

    def __init__(
        self,
        config: FakeTGIConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = None,
        replies: Iterable[wire.Reply] = (),
        reply_fn: Callable[[ReplyContext], wire.Reply] | None = None,
        logprobs_fn: Callable[[ReplyContext], Mapping[str, float]] | None = None,
        reward_fn: Callable[[Any], float | list[dict[str, Any]]] | None = None,
        **settings: Any,
    ):
        base = config or FakeTGIConfig()
        unknown = set(settings) - _FIELD_NAMES
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        self.config = dataclasses.replace(base, **{k: _coerce(k, v) for k, v in settings.items()})
        self._initial = self.config
        self.host = host
        self.port = port
        self.control_port = control_port
        self.reply_fn = reply_fn
        # Scoring requests (top_n_tokens): letter logprobs per request, e.g. after a chain of thought's reasoning.
        self.logprobs_fn = logprobs_fn
        # POST /predict, the sequence-classification route of text-embeddings-inference (TEI) that reward models are
        # served on; TGI itself has none (404 without a reward_fn). Called with one input (a text, or a [text,
        # text_pair] pair); returns its score (answered as one "LABEL_0" prediction) or a list of predictions.
        self.reward_fn = reward_fn
        self._replies: deque[wire.Reply] = deque(replies)
        self._requests: list[RecordedRequest] = []
        self.tokens_sent = 0
        self.in_flight = 0
        self._metrics: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self._conns: dict[asyncio.Task, tuple[asyncio.StreamWriter, bool]] = {}
        self._up_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str | None:
        return None if self.control_port is None else f"http://{self.host}:{self.control_port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._requests)

    def clear_requests(self) -> None:
        self._requests.clear()

    def push_reply(self, *texts: wire.Reply) -> None:
        """Queue replies: each generation request takes the next one before falling back to ``reply``."""
        self._replies.extend(texts)

    async def __aenter__(self) -> AsyncFakeTGI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sock = self._listen(self.port)
        self.port = sock.getsockname()[1]
        if self.config.down:
            sock.close()  # the port number is reserved in name only: connection refused until up
            self._schedule_up(self.config)
        else:
            self._server = await asyncio.start_server(self._serve_tgi, sock=sock)
        if self.control_port is not None:
            csock = self._listen(self.control_port)
            self.control_port = csock.getsockname()[1]
            self._control = await asyncio.start_server(self._serve_control, sock=csock)

    async def stop(self) -> None:
        if self._up_timer:
            self._up_timer.cancel()
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        self._server = self._control = None
        tasks = list(self._conns)
        for task, (writer, _) in list(self._conns.items()):
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        current = asyncio.current_task()
        for task, (writer, control) in list(self._conns.items()):
            if not control and task is not current:  # a crashed server resets the connections it had
                writer.transport.abort()
                task.cancel()

    async def _go_up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve_tgi, sock=self._listen(self.port))

    def _schedule_up(self, cfg: FakeTGIConfig) -> None:
        if self._up_timer:
            self._up_timer.cancel()
            self._up_timer = None
        if cfg.down and cfg.down_for_s is not None and self._loop is not None:
            loop = self._loop

            def come_back() -> None:
                loop.create_task(self.configure(down=False, down_for_s=None))

            self._up_timer = loop.call_later(cfg.down_for_s, come_back)

    async def configure(
        self, *, replies: Iterable[wire.Reply] | None = None, reset: bool = False, **changes: Any
    ) -> FakeTGIConfig:
        """Change settings at runtime; new requests see them. ``replies`` replaces the queue, ``reset`` restores
        the constructor's settings (and empties the queue) before applying the rest."""
        unknown = set(changes) - _FIELD_NAMES
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        base = self._initial if reset else self.config
        if reset:
            self._replies.clear()
        new = dataclasses.replace(base, **{k: _coerce(k, v) for k, v in changes.items()})
        if replies is not None:
            self._replies = deque(replies)
        was_down = self.config.down
        self.config = new
        if new.down and not was_down:
            await self._go_down()
        elif was_down and not new.down:
            await self._go_up()
        if new.down != was_down or "down_for_s" in changes:
            self._schedule_up(new)
        return new

    # -- connections --------------------------------------------------------------------------------------------

    async def _serve_tgi(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, control=False)

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, control=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, control: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = (writer, control)
        try:
            while True:
                try:
                    req = await _read_request(reader, self.config.payload_limit)
                except _PayloadTooLarge:
                    await _Responder(writer, False).send(
                        413,
                        "Failed to buffer the request body: length limit exceeded",
                        content_type="text/plain; charset=utf-8",
                    )
                    break
                except _BadRequest:
                    await _Responder(writer, False).send(400, b"", cors=False)
                    break
                if req is None:
                    break
                if not await self._handle(req, reader, writer, control=control) or not req.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # stop() / down cancel connection tasks; finishing quietly keeps asyncio's stream callback from
            # logging the cancellation as an error.
            pass
        finally:
            self._conns.pop(task, None)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(
        self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, control: bool
    ) -> bool:
        """Answer one request; False closes the connection."""
        if req.path.startswith("/__fake/"):
            await self._control_route(req, _Responder(writer, req.keep_alive and (control or not self.config.down)))
            return control or not self.config.down  # a control call that took this port down closes it
        if control:
            await _Responder(writer, req.keep_alive).send(404, cors=False)
            return True
        record = RecordedRequest(
            req.method, req.path, req.query, dict(req.headers), req.body, _lenient_json(req.body), time.time()
        )
        self._requests.append(record)
        resp = _Responder(writer, req.keep_alive, record, reader)
        is_generation = req.method == "POST" and req.path in GENERATION_ROUTES
        faults = self._claim_faults(is_generation)
        if faults.hang:
            await _wait_for_hangup(reader)
            return False
        cfg = self.config
        routes: dict[tuple[str, str], Callable[[], Any]] = {
            ("GET", "/health"): lambda: self._health(resp, cfg),
            ("GET", "/ping"): lambda: self._health(resp, cfg),
            ("GET", "/"): lambda: self._health(resp, cfg),
            ("GET", "/info"): lambda: resp.send_json(200, self._info(cfg)),
            ("GET", "/v1/models"): lambda: resp.send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": cfg.model_id, "object": "model", "created": 0, "owned_by": cfg.model_id}],
                },
            ),
            ("GET", "/metrics"): lambda: resp.send(200, self._metrics_text(), content_type="text/plain; charset=utf-8"),
            ("POST", "/tokenize"): lambda: self._tokenize(req, resp),
            ("POST", "/generate"): lambda: self._generation(req, resp, cfg, faults, route="generate"),
            ("POST", "/generate_stream"): lambda: self._generation(req, resp, cfg, faults, route="generate_stream"),
            ("POST", "/"): lambda: self._generation(req, resp, cfg, faults, route="compat"),
            ("POST", "/v1/chat/completions"): lambda: self._generation(req, resp, cfg, faults, route="chat"),
        }
        if self.reward_fn is not None:
            routes["POST", "/predict"] = lambda: self._predict(req, resp)
        handler = routes.get((req.method, req.path))
        if handler is not None:
            await handler()
        elif any(path == req.path for _, path in routes):
            allowed = ",".join(sorted({m for m, p in routes if p == req.path}))
            await resp.send(405, headers=[("allow", allowed)])
        else:
            await resp.send(404)
        return True

    def _claim_faults(self, is_generation: bool) -> _Faults:
        cfg = self.config
        faults = _Faults(
            hang=cfg.hang,
            http_status=cfg.http_status if is_generation else None,
            stream_error_after=cfg.stream_error_after if is_generation else None,
            malformed_json_after=cfg.malformed_json_after if is_generation else None,
            stall_after=cfg.stall_after if is_generation else None,
        )
        if faults == _Faults():
            return faults
        if cfg.fault_times is not None:
            if cfg.fault_times <= 0:
                return _Faults()
            left = cfg.fault_times - 1
            cleared = dict.fromkeys(_FAULT_FIELDS) | {"hang": False} if left == 0 else {}
            self.config = dataclasses.replace(cfg, fault_times=left, **cleared)
        return faults

    # -- simple routes ------------------------------------------------------------------------------------------

    async def _health(self, resp: _Responder, cfg: FakeTGIConfig) -> None:
        if cfg.unhealthy:
            await resp.send_json(503, {"error": "unhealthy", "error_type": "healthcheck"})
        else:
            await resp.send(200)

    def _info(self, cfg: FakeTGIConfig) -> dict[str, Any]:
        return wire.info_json(
            model_id=cfg.model_id,
            max_concurrent_requests=cfg.max_concurrent_requests,
            max_input_tokens=cfg.max_input_tokens,
            max_total_tokens=cfg.max_total_tokens,
            version=cfg.version,
            max_best_of=cfg.max_best_of,
            max_stop_sequences=cfg.max_stop_sequences,
            max_client_batch_size=cfg.max_client_batch_size,
            docker_label=cfg.docker_label,
        )

    def _metrics_text(self) -> str:
        lines = [
            f"tgi_request_count {self._metrics['count']}",
            f"tgi_request_success {self._metrics['success']}",
            f"tgi_queue_size {self.in_flight}",
            f"faketgi_tokens_sent {self.tokens_sent}",
        ]
        lines += [
            f'tgi_request_failure{{err="{key[8:]}"}} {n}'
            for key, n in sorted(self._metrics.items())
            if key.startswith("failure:")
        ]
        return "\n".join(lines) + "\n"

    async def _tokenize(self, req: _Request, resp: _Responder) -> None:
        try:
            body = wire.parse_body(req.body, req.headers.get("content-type"), wire.GENERATE_REQUEST)
        except wire.Rejection as rej:
            await resp.send(rej.status, rej.text, content_type="text/plain; charset=utf-8")
            return
        out, pos = [], 0
        for tok in wire.tokenize(body["inputs"]):
            out.append({"id": tok.id, "text": tok.text, "start": pos, "stop": pos + len(tok.text)})
            pos += len(tok.text)
        await resp.send_json(200, out)

    # -- control API --------------------------------------------------------------------------------------------

    async def _control_route(self, req: _Request, resp: _Responder) -> None:
        if req.path == "/__fake/config" and req.method == "GET":
            await resp.send(200, json.dumps(self._config_view()), content_type="application/json")
        elif req.path == "/__fake/config" and req.method == "POST":
            try:
                changes = json.loads(req.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                if changes.pop("clear_requests", False):
                    self.clear_requests()
                await self.configure(**changes)
            except (ValueError, TypeError) as exc:
                await resp.send(400, json.dumps({"error": str(exc)}), content_type="application/json")
                return
            await resp.send(200, json.dumps(self._config_view()), content_type="application/json")
        elif req.path == "/__fake/requests" and req.method == "GET":
            view = [
                {"method": r.method, "path": r.path, "json": r.json, "time": r.time, "status": r.status}
                for r in self._requests
            ]
            await resp.send(200, json.dumps(view), content_type="application/json")
        elif req.path == "/__fake/requests" and req.method == "DELETE":
            self.clear_requests()
            await resp.send(204, cors=False)
        elif req.path == "/__fake/stats" and req.method == "GET":
            stats = {"requests": len(self._requests), "tokens_sent": self.tokens_sent, "in_flight": self.in_flight}
            await resp.send(200, json.dumps(stats), content_type="application/json")
        else:
            await resp.send(404, cors=False)

    def _config_view(self) -> dict[str, Any]:
        return {**self.config.to_json(), "replies_queued": len(self._replies)}

    # -- generation ---------------------------------------------------------------------------------------------

    async def _generation(
        self, req: _Request, resp: _Responder, cfg: FakeTGIConfig, faults: _Faults, *, route: str
    ) -> None:
        spec = {
            "generate": wire.GENERATE_REQUEST,
            "generate_stream": wire.GENERATE_REQUEST,
            "compat": wire.COMPAT_GENERATE_REQUEST,
            "chat": wire.CHAT_REQUEST,
        }[route]
        try:
            body = wire.parse_body(req.body, req.headers.get("content-type"), spec)
        except wire.Rejection as rej:
            await resp.send(rej.status, rej.text, content_type="text/plain; charset=utf-8")
            return
        self._metrics["count"] += 1
        stream = route == "generate_stream" or (route != "generate" and bool(body.get("stream", False)))
        if faults.http_status is not None:
            content_type, err_body = wire.error_for_status(faults.http_status, cfg.error_message)
            self._metrics[f"failure:{(err_body or {}).get('error_type', 'http')}"] += 1
            if err_body is None:
                await resp.send(faults.http_status, cfg.error_message or "", content_type=content_type)
            else:
                await resp.send_json(faults.http_status, err_body)
            return
        params = _chat_params(body) if route == "chat" else _generate_params(body)
        if stream:
            await self._stream(resp, cfg, faults, params, body, route=route)
        else:
            await self._whole(resp, cfg, faults, params, body, route=route)

    def _acquire(self, cfg: FakeTGIConfig) -> None:
        """TGI's `try_acquire_owned` on the concurrency semaphore: over the limit is an immediate overload."""
        if self.in_flight >= cfg.max_concurrent_requests:
            raise wire.overloaded()
        self.in_flight += 1

    def _validate(self, cfg: FakeTGIConfig, p: _Params) -> tuple[list[wire.Tok], int]:
        """validation.rs `validate`, in its order. Returns the (possibly truncated) input tokens and max_new_tokens."""
        verr = wire.validation_error
        best_of = p.best_of if p.best_of is not None else 1
        if best_of == 0 or best_of > cfg.max_best_of:
            raise verr(f"`best_of` must be > 0 and <= {cfg.max_best_of}. Given: {best_of}")
        sampling = p.do_sample or any(x is not None for x in (p.temperature, p.top_k, p.top_p, p.typical_p))
        if best_of > 1 and not sampling:
            raise verr("you must use sampling when `best_of` is > 1")
        if p.temperature is not None and p.temperature <= 0:
            raise verr("`temperature` must be strictly positive")
        if p.repetition_penalty is not None and p.repetition_penalty <= 0:
            raise verr("`repetition_penalty` must be strictly positive")
        if p.frequency_penalty is not None and not -2.0 <= p.frequency_penalty <= 2.0:
            raise verr("`frequency_penalty` must be >= -2.0 and <= 2.0")
        if p.top_p is not None and not 0.0 < p.top_p < 1.0:
            raise verr("`top_p` must be > 0.0 and < 1.0")
        if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
            raise verr("`typical_p` must be > 0.0 and < 1.0")
        if p.top_k is not None and p.top_k <= 0:
            raise verr("`top_k` must be strictly positive")
        if p.max_new_tokens == 0:
            raise verr("`max_new_tokens` must be strictly positive")
        if len(p.stop) > cfg.max_stop_sequences:
            raise verr(f"`stop` supports up to {cfg.max_stop_sequences} stop sequences. Given: {len(p.stop)}")
        if p.seed is not None and best_of > 1:
            raise verr("`seed` must not be set when `best_of` > 1")
        if p.top_n is not None and p.top_n > cfg.max_top_n_tokens:
            raise verr(f"`top_n_tokens` must be >= 0 and <= {cfg.max_top_n_tokens}. Given: {p.top_n}")
        if not p.prompt:
            raise verr("`inputs` cannot be empty")
        if p.truncate is not None and (p.truncate == 0 or p.truncate > cfg.max_input_tokens):
            raise verr(
                f"`truncate` must be strictly positive and less than {cfg.max_input_tokens}. Given: {p.truncate}"
            )
        tokens = wire.tokenize(p.prompt)
        if p.truncate is not None:
            tokens = tokens[-p.truncate :]
        input_length = len(tokens)
        if p.max_new_tokens is not None:
            max_new = p.max_new_tokens
        else:
            max_new = min(max(cfg.max_total_tokens - input_length, 0), DEFAULT_GENERATION_LENGTH)
        if input_length + max_new > cfg.max_total_tokens:
            raise verr(
                f"`inputs` tokens + `max_new_tokens` must be <= {cfg.max_total_tokens}. "
                f"Given: {input_length} `inputs` tokens and {max_new} `max_new_tokens`"
            )
        if input_length > cfg.max_input_tokens:
            raise verr(f"`inputs` must have less than {cfg.max_input_tokens} tokens. Given: {input_length}")
        return tokens, max_new

    async def _predict(self, req: _Request, resp: _Responder) -> None:
        """TEI's /predict: `{"inputs": text | [text, pair] | [[text(, pair)], …], "raw_scores", "truncate"}` →
        `[{"score", "label"}, …]` for one input, a list of those for a batch (router/src/http/types.rs)."""
        body = _lenient_json(req.body)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if inputs is None:
            await resp.send_json(422, {"error": "missing field `inputs`", "error_type": "validation"})
            return
        batch = isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], list)

        def predictions(one: Any) -> list[dict[str, Any]]:
            assert self.reward_fn is not None
            scored = self.reward_fn(one)
            return scored if isinstance(scored, list) else [{"score": float(scored), "label": "LABEL_0"}]

        await resp.send_json(200, [predictions(one) for one in inputs] if batch else predictions(inputs))

    def _plan(self, cfg: FakeTGIConfig, p: _Params, body: dict[str, Any], max_new: int, route: str) -> wire.Plan:
        top_n = p.top_n or 0
        letters = cfg.letter_logprobs
        if self.logprobs_fn is not None and top_n > 0:
            letters = dict(self.logprobs_fn(ReplyContext(route, p.messages, p.prompt, body)))
        if letters and top_n > 0:
            return wire.plan_generation("", max_new_tokens=max_new, stop=p.stop, top_n=top_n, letter_logprobs=letters)
        reply: wire.Reply
        if self._replies:
            reply = self._replies.popleft()
        elif self.reply_fn is not None:
            reply = self.reply_fn(ReplyContext(route, p.messages, p.prompt, body))
        elif cfg.reply is not None:
            reply = cfg.reply
        else:
            reply = wire.default_reply(p.messages)
        return wire.plan_generation(reply, max_new_tokens=max_new, stop=p.stop, top_n=top_n)

    def _seed(self, p: _Params) -> int | None:
        if p.seed is not None:
            return p.seed
        sampling = p.do_sample or any(x is not None for x in (p.temperature, p.top_k, p.top_p, p.typical_p))
        return zlib.crc32(p.prompt.encode()) if sampling else None  # greedy decoding reports null (recorded)

    async def _pace(self, cfg: FakeTGIConfig, started: float, index: int) -> None:
        """Sleep until token ``index`` (0-based) is due: TTFT, then one token every 1/tokens_per_s."""
        due = started + cfg.ttft_ms / 1000.0 + (index / cfg.tokens_per_s if cfg.tokens_per_s > 0 else 0.0)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _whole(
        self, resp: _Responder, cfg: FakeTGIConfig, faults: _Faults, p: _Params, body: dict[str, Any], *, route: str
    ) -> None:
        started = time.monotonic()
        acquired = False
        try:
            self._acquire(cfg)
            acquired = True
            tokens, max_new = self._validate(cfg, p)
            validated = time.monotonic()
            plan = self._plan(cfg, p, body, max_new, route)
            n = len(plan.tokens)
            if faults.stream_error_after is not None:
                # Not streaming, a failure mid-generation is an HTTP error once it happens.
                await self._pace(cfg, started, min(faults.stream_error_after, max(n - 1, 0)))
                kind = cfg.stream_error_type
                raise wire.error_of_kind(
                    "incomplete_generation" if kind.endswith("_stream") else kind, cfg.error_message
                )
            if faults.stall_after is not None:
                await self._pace(cfg, started, min(faults.stall_after, max(n - 1, 0)))
                raise _Stalled
            await self._pace(cfg, started, max(n - 1, 0))
        except wire.InferError as err:
            self._metrics[f"failure:{err.error_type}"] += 1
            await resp.send_error(err)
            return
        except _Stalled:
            await _wait_for_hangup(resp.reader)
            return
        finally:
            if acquired:
                self.in_flight -= 1
        done = time.monotonic()
        total_ms = int((done - started) * 1000)
        inference_ms = int((done - validated) * 1000)
        headers = [
            ("x-compute-type", cfg.compute_type),
            ("x-compute-time", str(round(done - started, 9))),
            ("x-compute-characters", str(len(p.prompt))),
            ("x-total-time", str(total_ms)),
            ("x-validation-time", str(int((validated - started) * 1000))),
            ("x-queue-time", "0"),
            ("x-inference-time", str(inference_ms)),
            ("x-time-per-token", str(inference_ms // max(len(plan.tokens), 1))),
            ("x-prompt-tokens", str(len(tokens))),
            ("x-generated-tokens", str(len(plan.tokens))),
        ]
        top_n = p.top_n or 0
        if route == "chat":
            payload: Any = wire.chat_completion(
                model=_chat_model(body, cfg),
                fingerprint=cfg.fingerprint,
                created=int(time.time()),
                plan=plan,
                logprobs=bool(body.get("logprobs")),
                prompt_tokens=len(
                    tokens
                ),  # usage = prefill length: chat forces decoder_input_details when not streaming
            )
        else:
            text = (p.prompt + plan.text) if p.return_full_text else plan.text
            payload = {"generated_text": text}
            if p.details or p.decoder_input_details:
                prefill = (
                    wire.prefill_json(tokens, wire.prefill_logprobs(tokens, cfg.letter_logprobs))
                    if p.decoder_input_details
                    else []
                )
                payload["details"] = wire.details_json(plan, seed=self._seed(p), prefill=prefill, top_n=top_n)
            if route == "compat":
                payload = [payload]  # "wrap generation inside a Vec to match api-inference"
        if faults.malformed_json_after is not None:
            encoded = wire.dumps(payload).encode()
            await resp.send(200, encoded[: len(encoded) // 2], content_type="application/json", headers=headers)
            return
        self.tokens_sent += len(plan.tokens)
        self._metrics["success"] += 1
        await resp.send_json(200, payload, headers=headers)

    async def _stream(
        self, resp: _Responder, cfg: FakeTGIConfig, faults: _Faults, p: _Params, body: dict[str, Any], *, route: str
    ) -> None:
        started = time.monotonic()
        chat = route == "chat"
        await resp.start_events(
            [
                ("x-compute-type", cfg.compute_type),
                ("x-compute-characters", str(len(p.prompt))),
                ("x-accel-buffering", "no"),
            ]
        )
        model = _chat_model(body, cfg) if chat else ""
        logprobs = bool(body.get("logprobs"))
        include_usage = chat and bool((body.get("stream_options") or {}).get("include_usage"))

        async def fail(err: wire.InferError) -> None:
            self._metrics[f"failure:{err.error_type}"] += 1
            if chat and cfg.chat_error_shape == "openai":
                await resp.event(wire.dumps(err.openai_event()))
            else:
                await resp.event(wire.dumps(err.body()))
            if chat:  # the chat stream appends [DONE] whatever happened; /generate_stream just ends
                await resp.event("[DONE]")
            await resp.end_events()

        acquired = False
        try:
            if (p.best_of or 1) != 1:
                raise wire.validation_error("`best_of` != 1 is not supported when streaming tokens")
            if p.decoder_input_details:
                raise wire.validation_error("`decoder_input_details` == true is not supported when streaming tokens")
            self._acquire(cfg)
            acquired = True
            tokens, max_new = self._validate(cfg, p)
            plan = self._plan(cfg, p, body, max_new, route)
            n = len(plan.tokens)
            error_at = None if faults.stream_error_after is None else min(faults.stream_error_after, n - 1)
            garbage_at = None if faults.malformed_json_after is None else min(faults.malformed_json_after, n - 1)
            stall_at = None if faults.stall_after is None else min(faults.stall_after, n - 1)
            for i, g in enumerate(plan.tokens):
                await self._pace(cfg, started, i)
                last = i == n - 1
                if chat:
                    event = wire.chat_chunk(
                        model=model,
                        fingerprint=cfg.fingerprint,
                        created=int(time.time()),
                        g=g,
                        logprobs=logprobs,
                        finish_reason=wire.chat_finish_reason(plan.finish_reason) if last else None,
                    )
                else:
                    details = (
                        {
                            "finish_reason": plan.finish_reason,
                            "generated_tokens": n,
                            "seed": self._seed(p),
                            "input_length": len(tokens),
                        }
                        if last and p.details
                        else None
                    )
                    text = ((p.prompt + plan.text) if p.return_full_text else plan.text) if last else None
                    event = wire.stream_event(i + 1, g, top_n=p.top_n or 0, generated_text=text, details=details)
                if i == error_at:
                    raise wire.error_of_kind(cfg.stream_error_type, cfg.error_message)
                if i == stall_at:
                    await _wait_for_hangup(resp.reader)
                    return
                if i == garbage_at:
                    encoded = wire.dumps(event)
                    await resp.event(encoded[: max(len(encoded) // 2, 1)])
                    await resp.end_events()
                    return
                await resp.event(wire.dumps(event))
                self.tokens_sent += 1
            if include_usage:
                usage = wire.usage_chunk(
                    model=model,
                    fingerprint=cfg.fingerprint,
                    created=int(time.time()),
                    prompt_tokens=len(tokens),
                    completion_tokens=n,
                )
                await resp.event(wire.dumps(usage))
            if chat:
                await resp.event("[DONE]")
            await resp.end_events()
            self._metrics["success"] += 1
        except wire.InferError as err:
            await fail(err)
        finally:
            if acquired:
                self.in_flight -= 1


class _Stalled(Exception):
    pass


async def _wait_for_hangup(reader: asyncio.StreamReader | None) -> None:
    """Send nothing more and keep the connection open until the client closes it (or the server stops)."""
    while reader is not None and await reader.read(65536):
        pass


def _lenient_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _chat_model(body: dict[str, Any], cfg: FakeTGIConfig) -> str:
    """The chat response's `model`: the served model for "tgi" or none, otherwise whatever the client sent."""
    model = body.get("model")
    return cfg.model_id if model in (None, "tgi") else str(model)


def _generate_params(body: dict[str, Any]) -> _Params:
    prompt = body["inputs"]
    if "parameters" not in body:
        # `default_parameters()`: omitting the whole object means sampling with max_new_tokens unset
        return _Params(prompt=prompt, messages=[{"role": "user", "content": prompt}], do_sample=True)
    q = body["parameters"]
    return _Params(
        prompt=prompt,
        messages=[{"role": "user", "content": prompt}],
        max_new_tokens=q.get("max_new_tokens"),
        stop=list(q.get("stop") or []),
        top_n=q.get("top_n_tokens"),
        details=bool(q.get("details", False)),
        decoder_input_details=bool(q.get("decoder_input_details", False)),
        do_sample=bool(q.get("do_sample", False)),
        seed=q.get("seed"),
        temperature=q.get("temperature"),
        top_p=q.get("top_p"),
        top_k=q.get("top_k"),
        typical_p=q.get("typical_p"),
        repetition_penalty=q.get("repetition_penalty"),
        frequency_penalty=q.get("frequency_penalty"),
        truncate=q.get("truncate"),
        best_of=q.get("best_of"),
        return_full_text=bool(q.get("return_full_text") or False),
    )


def _chat_params(body: dict[str, Any]) -> _Params:
    """`ChatRequest::try_into_generate`: template the messages, map the OpenAI knobs onto GenerateParameters."""
    messages = body["messages"]
    temperature = body.get("temperature")
    do_sample = not (temperature is not None and temperature == 0)  # 0 means greedy in the chat API only
    presence = body.get("presence_penalty")
    max_tokens = body.get("max_tokens")
    return _Params(
        prompt=wire.apply_chat_template(messages),
        messages=messages,
        max_new_tokens=max_tokens if max_tokens is not None else body.get("max_completion_tokens"),
        stop=list(body.get("stop") or []),
        top_n=body.get("top_logprobs"),
        details=True,
        do_sample=do_sample,
        seed=body.get("seed"),
        temperature=temperature if do_sample else None,
        top_p=body.get("top_p"),
        repetition_penalty=None if presence is None else presence + 2.0,
        frequency_penalty=body.get("frequency_penalty"),
    )


# --------------------------------------------------------------------------------------------------------------
# The threaded variant, for sync tests (and async tests that want the server off their loop)


class FakeTGI:
    """The fake TGI on a background thread with its own event loop. ``with FakeTGI(...) as tgi: tgi.url``.

    Takes the same arguments as ``AsyncFakeTGI``; ``configure`` is synchronous here.
    """

    def __init__(self, config: FakeTGIConfig | None = None, **kwargs: Any):
        self._server = AsyncFakeTGI(config, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeTGI:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="faketgi", daemon=True)
        self._thread.start()
        self._call(self._server.start())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self._server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> FakeTGI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        assert self._loop is not None, "FakeTGI is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def configure(self, **changes: Any) -> FakeTGIConfig:
        return self._call(self._server.configure(**changes))

    @property
    def config(self) -> FakeTGIConfig:
        return self._server.config

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def control_url(self) -> str | None:
        return self._server.control_url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._server.requests

    @property
    def tokens_sent(self) -> int:
        return self._server.tokens_sent

    @property
    def in_flight(self) -> int:
        return self._server.in_flight

    def clear_requests(self) -> None:
        self._server.clear_requests()

    def push_reply(self, *texts: wire.Reply) -> None:
        self._server.push_reply(*texts)  # deque.extend is atomic


# --------------------------------------------------------------------------------------------------------------
# python -m oversight_dev.faketgi


def _parse_fault(text: str) -> dict[str, Any]:
    """``down`` | ``hang`` | ``unhealthy`` | ``name=value`` (any config field), comma-separated."""
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in _FIELD_NAMES:
            raise argparse.ArgumentTypeError(f"unknown fault or setting {name!r}")
        out[name] = _coerce(name, value.strip() if sep else "true")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oversight_dev.faketgi", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port (printed on start)")
    parser.add_argument(
        "--control-port", type=int, default=None, help="a second port serving only /__fake/* (survives `down`)"
    )
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="0 = as fast as possible")
    parser.add_argument("--model-id", default=FakeTGIConfig.model_id)
    parser.add_argument("--max-input-tokens", type=int, default=FakeTGIConfig.max_input_tokens)
    parser.add_argument("--max-total-tokens", type=int, default=FakeTGIConfig.max_total_tokens)
    parser.add_argument("--max-concurrent-requests", type=int, default=FakeTGIConfig.max_concurrent_requests)
    parser.add_argument("--reply", default=None, help="a fixed reply text instead of the default generator")
    parser.add_argument("--letter-logprobs", default=None, help='JSON, e.g. \'{"A": -0.5, " B": -1.2}\'')
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_parse_fault,
        help="down | hang | unhealthy | http_status=429 | stream_error_after=3 | stream_error_type=overloaded | "
        "malformed_json_after=0 | stall_after=2 | chat_error_shape=legacy | fault_times=2 | down_for_s=5 (repeatable)",
    )
    return parser


async def _serve_forever(args: argparse.Namespace) -> None:
    settings: dict[str, Any] = {
        "ttft_ms": args.ttft_ms,
        "tokens_per_s": args.tokens_per_s,
        "model_id": args.model_id,
        "max_input_tokens": args.max_input_tokens,
        "max_total_tokens": args.max_total_tokens,
        "max_concurrent_requests": args.max_concurrent_requests,
        "reply": args.reply,
        "letter_logprobs": args.letter_logprobs,
    }
    for fault in args.fault:
        settings.update(fault)
    tgi = AsyncFakeTGI(host=args.host, port=args.port, control_port=args.control_port, **settings)
    await tgi.start()
    control = f" (control {tgi.control_url})" if tgi.control_url else ""
    print(f"faketgi listening on {tgi.url}{control}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await tgi.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
