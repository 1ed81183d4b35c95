"""Model backends behind one streaming interface: TGI / OpenAI-compatible servers, and the simulated assistant.

TGI and OpenAI-compatible servers are reached through the Messages API (`POST …/v1/chat/completions`, a
server-sent-event stream). Two clients do it, chosen by settings.CHAT_STREAM_CLIENT:

* `lean` (the default): one pooled httpx2 client per endpoint and event loop, reused across replies (keep-alive:
  no TCP or TLS handshake per reply), and the stream parsed straight from its bytes, taking only the fields a
  reply needs; events that arrive together (a proxy that buffers) come out as one Chunk. It sends the same
  request as huggingface_hub and ends every stream the same way (tests/assistant/test_backends.py replays
  recorded TGI streams and every fault through both), for much less CPU per token (bench/README.md, "Chat
  streaming").
* `hf`: huggingface_hub's AsyncInferenceClient, the maintained client, made per reply.

Every failure is turned into an AssistantError carrying a short message for the participant and the detail for
the researcher; TGI reports most of them *inside* a 200 stream (tgi-protocol README).
"""

import asyncio
import contextlib
import dataclasses
import http
import json
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlparse, urlunparse

import httpx2
from django.conf import settings
from huggingface_hub import AsyncInferenceClient
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import _http as hf_http

from oversight.assistant.simulated import SimulatedItem, SimulationSettings, stream_simulated, stream_text
from oversight.assistant.simulated_advocate import AdvocateTurnSpec, simulated_advocate_reply

HUMAN_MESSAGES = {
    "unavailable": "The assistant is not reachable right now.",
    "timeout": "The assistant took too long to answer.",
    "busy": "The assistant is busy with other people right now.",
    "too_long": "This conversation is too long for the assistant. Press Reset to start a fresh conversation.",
    "generation": "The assistant ran into a problem while answering.",
    "bad_response": "The assistant sent a reply we could not read.",
}


class AssistantError(Exception):
    def __init__(self, kind: str, detail: str = "", status: int | None = None):
        self.kind = kind
        self.detail = detail
        self.status = status
        super().__init__(f"{kind}: {detail}" if detail else kind)

    @property
    def human(self) -> str:
        return HUMAN_MESSAGES.get(self.kind, HUMAN_MESSAGES["generation"])


@dataclass
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model_id: str | None = None


@dataclass
class GenerationRequest:
    kind: str  # ModelEndpoint.Kind value
    base_url: str = ""
    token: str = ""
    model_label: str = ""
    timeout_s: float = 60.0
    messages: list[dict] = field(default_factory=list)
    sampling: dict = field(default_factory=dict)
    simulation: dict = field(default_factory=dict)
    item: SimulatedItem | None = None
    # A protocol advocate's turn (simulated_advocate.AdvocateTurnSpec as a dict): the simulated assistant then
    # argues, chooses or shows evidence instead of chatting. Real models get only `messages`.
    advocate: dict | None = None


def request_for_endpoint(endpoint, **fields) -> "GenerationRequest":
    return GenerationRequest(
        kind=endpoint.kind,
        base_url=endpoint.base_url,
        token=endpoint.token,
        model_label=endpoint.model_label,
        timeout_s=endpoint.request_timeout_s,
        simulation=dict(endpoint.simulation or {}),
        **fields,
    )


SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed", "frequency_penalty", "presence_penalty", "stop")


def stream_reply(request: GenerationRequest) -> AsyncIterator[Chunk]:
    if request.kind == "simulated":
        return _stream_simulated(request)
    if settings.CHAT_STREAM_CLIENT == "hf":
        return _stream_messages_api(request)
    return _stream_lean(request)


async def _stream_simulated(request: GenerationRequest) -> AsyncIterator[Chunk]:
    settings = SimulationSettings.from_dict(request.simulation)
    conversation = [m for m in request.messages if m["role"] != "system"]
    n = 0
    if request.advocate is not None:
        spec = AdvocateTurnSpec.from_dict(request.advocate)
        tokens = stream_text(
            simulated_advocate_reply(item=request.item, settings=settings, spec=spec), settings=settings
        )
    else:
        tokens = stream_simulated(item=request.item, settings=settings, conversation=conversation)
    async for token in tokens:
        n += 1
        yield Chunk(text=token)
    prompt_words = sum(len(m["content"].split()) for m in request.messages)
    yield Chunk(finish_reason="stop", prompt_tokens=prompt_words, completion_tokens=n, model_id="simulated")


_ssl_context = None


def _async_http_client() -> httpx2.AsyncClient:
    """huggingface_hub's default async HTTP client, with one SSL context for the whole process.

    Every reply gets its own AsyncInferenceClient (a streamed response lives on the client's exit stack until
    it closes), and httpx builds a fresh SSL context for each, loading the CA bundle: 57 to 68 ms of blocking
    the event loop per reply on the development VM, which under a burst of sends became seconds of time to
    first token (bench/README.md, "Chat streaming"). The context is built once, honouring SSL_CERT_FILE as
    httpx does.
    """
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx2.create_ssl_context()
    return httpx2.AsyncClient(
        event_hooks={
            "request": [hf_http.async_hf_request_event_hook],
            "response": [hf_http.async_hf_response_event_hook],
        },
        follow_redirects=True,
        timeout=None,
        verify=_ssl_context,
    )


hf_http.set_async_client_factory(_async_http_client)


def client_for(request: GenerationRequest) -> AsyncInferenceClient:
    return AsyncInferenceClient(base_url=request.base_url, api_key=request.token or None, timeout=request.timeout_s)


async def _stream_messages_api(request: GenerationRequest) -> AsyncIterator[Chunk]:
    client = client_for(request)
    params = {k: v for k, v in request.sampling.items() if k in SAMPLING_KEYS and v is not None}
    completion_tokens = 0
    try:
        stream = await client.chat_completion(
            request.messages,
            model=request.model_label or None,
            stream=True,
            stream_options={"include_usage": True},
            **params,
        )
        async for chunk in stream:
            usage = getattr(chunk, "usage", None)
            if usage:
                yield Chunk(
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    model_id=getattr(chunk, "model", None),
                )
            for choice in chunk.choices or []:
                text = (choice.delta.content or "") if choice.delta else ""
                if text:
                    completion_tokens += 1
                if text or choice.finish_reason:
                    yield Chunk(
                        text=text,
                        finish_reason=choice.finish_reason,
                        model_id=getattr(chunk, "model", None),
                        completion_tokens=completion_tokens if choice.finish_reason else None,
                    )
    except AssistantError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a participant-safe AssistantError
        raise classify(exc) from exc
    finally:
        await _close(client)


# --- The lean client -----------------------------------------------------------------------------------------

DRAIN_AFTER_DONE_S = 1.0
_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx2.AsyncClient]]" = (
    weakref.WeakKeyDictionary()
)


def _pooled_client(base_url: str) -> httpx2.AsyncClient:
    """The event loop's client for an endpoint: its connections are kept alive and reused by every reply.

    Unbounded, because the endpoint's max_concurrency (generation._semaphore) already bounds the streams; the
    SSL context is the process's one (`_ssl_context`), as huggingface_hub's client is given it here.
    """
    global _ssl_context
    per_loop = _pools.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(base_url)
    if client is None:
        if _ssl_context is None:
            _ssl_context = httpx2.create_ssl_context()
        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=30)
        client = per_loop[base_url] = httpx2.AsyncClient(
            follow_redirects=True, timeout=None, verify=_ssl_context, limits=limits
        )
    return client


def chat_url(base_url: str) -> str:
    """Where huggingface_hub posts a chat for a base URL: `…/v1/chat/completions`, unless the URL already
    names `…/v1` or the route itself."""
    parsed = urlparse(base_url)
    path = parsed.path.rstrip("/")
    if path.endswith("/chat/completions"):
        return base_url
    path = path + "/chat/completions" if path.endswith("/v1") else path + "/v1/chat/completions"
    return urlunparse(parsed._replace(path=path))


def chat_body(request: GenerationRequest) -> dict:
    """The request body, as huggingface_hub builds it (its placeholder model name included: TGI ignores it)."""
    params = {k: v for k, v in request.sampling.items() if k in SAMPLING_KEYS and v is not None}
    return {
        "model": request.model_label or "dummy",
        "messages": request.messages,
        **dict(sorted(params.items())),
        "stream": True,
        "stream_options": {"include_usage": True},
    }


class StreamHTTPError(Exception):
    """A non-2xx answer to the chat request; `response` carries the status (as huggingface_hub's errors do)."""

    def __init__(self, response: httpx2.Response, body: str):
        self.response = response
        super().__init__(f"{response.status_code} {response.reason_phrase} for {response.url}: {body[:1000]}")


_STREAM_ERRORS = {
    "generation": hf_errors.GenerationError,
    "incomplete_generation": hf_errors.IncompleteGenerationError,
    "overloaded": hf_errors.OverloadedError,
    "validation": hf_errors.ValidationError,
}


class StreamParser:
    """Server-sent events of a chat stream, from the bytes as they arrive, to Chunks.

    Only `data:` lines matter (with or without the space after the colon: TGI before 2.x omits it); `[DONE]` ends
    the stream (TGI before 2.x ends without it). An `error` event raises huggingface_hub's error for its
    `error_type` (TGI's legacy shape) or UnknownError (the OpenAI shape since TGI 2.4.1), so classify() reads it
    as it reads the maintained client's.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.done = False
        self.completion_tokens = 0

    def feed(self, data: bytes) -> list[Chunk]:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return self._lines(lines)

    def end(self) -> list[Chunk]:
        """The last line when the stream ends without a newline (a half-sent event is malformed JSON)."""
        rest, self.buffer = self.buffer, b""
        return self._lines([rest]) if rest.strip() else []

    def _lines(self, lines: list[bytes]) -> list[Chunk]:
        chunks = []
        for line in lines:
            if self.done or not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                continue
            event = json.loads(payload)
            chunks.extend(self._event(event))
        return chunks

    def _event(self, event: dict) -> list[Chunk]:
        error = event.get("error")
        if error is not None:
            raise _STREAM_ERRORS.get(event.get("error_type"), hf_errors.UnknownError)(error)
        model = event.get("model")
        chunks = []
        usage = event.get("usage")
        if usage:
            chunks.append(
                Chunk(
                    prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=usage.get("completion_tokens"),
                    model_id=model,
                )
            )
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") or ""
            finish_reason = choice.get("finish_reason")
            if text:
                self.completion_tokens += 1
            if text or finish_reason:
                chunks.append(
                    Chunk(
                        text=text,
                        finish_reason=finish_reason,
                        model_id=model,
                        completion_tokens=self.completion_tokens if finish_reason else None,
                    )
                )
        return chunks


def merged(chunks: list[Chunk]) -> Chunk:
    """Consecutive chunks as one: their text joined, the last of each other field that was given."""
    if len(chunks) == 1:
        return chunks[0]
    one = Chunk(text="".join(c.text for c in chunks))
    for c in chunks:
        for key in ("finish_reason", "prompt_tokens", "completion_tokens", "model_id"):
            if getattr(c, key) is not None:
                setattr(one, key, getattr(c, key))
    return one


async def _stream_lean(request: GenerationRequest) -> AsyncIterator[Chunk]:
    headers = {"Authorization": f"Bearer {request.token}"} if request.token else {}
    parser = StreamParser()
    try:
        async with _pooled_client(request.base_url).stream(
            "POST", chat_url(request.base_url), json=chat_body(request), headers=headers, timeout=request.timeout_s
        ) as response:
            if response.status_code >= 400:
                body = (await response.aread()).decode(errors="replace")
                raise StreamHTTPError(response, body)
            body = response.aiter_bytes()
            async for data in body:
                if chunks := parser.feed(data):
                    yield merged(chunks)
                if parser.done:
                    break
            if chunks := parser.end():
                yield merged(chunks)
            if parser.done:
                # Read the body's end (it follows [DONE] at once) so the connection goes back to the pool; a
                # server that kept it open only loses its connection.
                with contextlib.suppress(TimeoutError, httpx2.HTTPError):
                    async with asyncio.timeout(DRAIN_AFTER_DONE_S):
                        async for _ in body:
                            pass
    except AssistantError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a participant-safe AssistantError
        raise classify(exc) from exc


async def _close(client: AsyncInferenceClient) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):  # closing must not mask the real outcome
            await close()


def classify(exc: BaseException) -> AssistantError:
    """Map a client exception to a kind the participant's message and the researcher's record are built from."""
    detail = f"{type(exc).__name__}: {exc}"[:2000]
    text = str(exc).lower()
    if isinstance(exc, hf_errors.OverloadedError) or "overloaded" in text:
        return AssistantError("busy", detail, 429)
    if isinstance(exc, hf_errors.ValidationError) or "validation error" in text or "must be <=" in text:
        return AssistantError("too_long" if "token" in text else "generation", detail, 422)
    # huggingface_hub's HTTP layer (httpx2 in 2.x, httpx before) is matched by class name, not imported.
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) or names & {"TimeoutException", "InferenceTimeoutError"}:
        return AssistantError("timeout", detail)
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError):
        return AssistantError("timeout", detail)
    if isinstance(exc, ConnectionError | urllib.error.URLError) or names & {
        "ConnectError",
        "RemoteProtocolError",
        "NetworkError",
    }:
        return AssistantError("unavailable", detail)
    status = _status_of(exc)
    if status == 429:
        return AssistantError("busy", detail, status)
    if status == 422:
        return AssistantError("too_long" if "token" in text else "generation", detail, status)
    if status is not None and (status == 424 or status >= 500):
        return AssistantError("unavailable" if status in (502, 503, 504) else "generation", detail, status)
    if isinstance(exc, ValueError | KeyError | TypeError) or "json" in text:
        return AssistantError("bad_response", detail, status)
    return AssistantError("generation", detail, status)


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _get(url: str, timeout: float, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - researcher-configured URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def probe(request: GenerationRequest) -> dict:
    """Health, /info and a one-line chat with latency: what a researcher sees when testing an endpoint.

    `checks` lists every request made (method, URL, HTTP status, error), so a failed test says what was tried and
    what came back, not only that it failed."""
    if request.kind == "simulated":
        return {
            "healthy": True,
            "info": {"model_id": "simulated"},
            "reply": "(simulated)",
            "latency_ms": 0.0,
            "error": None,
            "checks": [],
        }
    result: dict = {"healthy": False, "info": None, "reply": None, "latency_ms": None, "error": None, "checks": []}
    base = request.base_url.rstrip("/")
    timeout = min(request.timeout_s, 10)
    # The chat sends the token; a server behind an authenticating proxy wants it on /health and /info too.
    headers = {"Authorization": f"Bearer {request.token}"} if request.token else {}
    for step in ("health", "info"):
        check = _check("GET", f"{base}/{step}")
        result["checks"].append(check)
        try:
            check["status"], body = await asyncio.to_thread(_get, check["url"], timeout, headers)
            if step == "health":
                result["healthy"] = check["status"] == 200
            elif check["status"] == 200:
                result["info"] = json.loads(body)
            if check["status"] != 200 and not (step == "info" and check["status"] == 404):
                # (No /info is normal for an OpenAI-compatible server; the page says so.)
                check["error"] = _http_problem(check["status"], body)
        except (OSError, ValueError) as exc:
            error = classify(exc)
            check["error"] = result["error"] = f"{error.human} ({error.detail[:200]})"
            return result
    check = _check("POST", f"{base}/v1/chat/completions")
    result["checks"].append(check)
    started = time.monotonic()
    probe_request = dataclasses.replace(
        request,
        messages=[{"role": "user", "content": "Reply with one short sentence: are you there?"}],
        sampling={"max_tokens": 20},
    )
    try:
        reply = ""
        async for chunk in stream_reply(probe_request):
            reply += chunk.text
        result["reply"] = reply
        result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        check["status"] = 200
    except AssistantError as exc:
        check["url"] = _url_tried(exc.__cause__) or check["url"]
        check["status"] = exc.status
        server_message = getattr(exc.__cause__, "server_message", None)  # huggingface_hub's HTTP errors
        if exc.status is not None and server_message:
            check["error"] = f"{exc.human} ({_http_problem(exc.status, server_message.encode())})"
        else:
            check["error"] = f"{exc.human} ({exc.detail[:200]})"
        result["error"] = check["error"]
    return result


def _check(method: str, url: str) -> dict:
    return {"method": method, "url": url, "status": None, "error": None}


def _http_problem(status: int, body: bytes) -> str:
    """ "HTTP 503 Service Unavailable: <the server's own message>", short."""
    try:
        phrase = f" {http.HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    text = body.decode("utf-8", errors="replace").strip()
    with contextlib.suppress(ValueError, AttributeError):
        text = json.loads(text).get("error") or text  # TGI and OpenAI-compatible servers answer {"error": …}
    text = " ".join(str(text).split())[:200]
    return f"HTTP {status}{phrase}" + (f": {text}" if text else "")


def _url_tried(exc: BaseException | None) -> str | None:
    """The URL huggingface_hub requested (it builds the chat route itself), from its HTTP error."""
    for name in ("response", "request"):
        try:
            url = getattr(getattr(exc, name, None), "url", None)
        except RuntimeError:  # httpx: "The .request property has not been set."
            url = None
        if url:
            return str(url)
    return None
