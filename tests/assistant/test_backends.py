"""The lean chat-stream client against huggingface_hub's (the maintained one): the same request, the same chunks
from recorded TGI streams cut at every awkward place, the same outcome for every fault, and connections reused."""

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from oversight.assistant import backends
from oversight.assistant.backends import AssistantError, GenerationRequest, StreamParser, chat_url, stream_reply
from oversight_dev.faketgi import AsyncFakeTGI
from tests.assistant.test_chat import FAULTS

pytestmark = pytest.mark.asyncio

REPO = Path(__file__).resolve().parents[2]
RECORDED = json.loads((REPO / "tests" / "dev" / "tgi_recordings.json").read_text())["recordings"]
SHARED_CASSETTES = REPO.parent / "shared" / "tgi-protocol" / "cassettes" / "huggingface_hub"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is deep learning?"}]


def recorded_streams() -> list:
    """Chat streams as TGI sent them: 3.0.1 (kept in the repo), and from the shared cassettes when present,
    1.4.3 (`data:` without a space, no [DONE]) and 3.2.1."""
    streams = [pytest.param(RECORDED["test_async_chat_completion_with_stream.yaml"]["body"], id="tgi-3.0.1")]
    for name, tag in (
        ("InferenceClientVCRTest.test_chat_completion_with_stream.yaml", "tgi-1.4.3"),
        ("TestInferenceClient.test_chat_completion_with_stream[hf-inference,conversational].yaml", "tgi-3.2.1"),
    ):
        path = SHARED_CASSETTES / name
        if not path.exists():
            streams.append(pytest.param(None, id=tag, marks=pytest.mark.skip(reason=f"no {path}")))
            continue
        bodies = [i["response"]["body"]["string"] for i in yaml.safe_load(path.read_text())["interactions"]]
        streams.append(pytest.param(next(b for b in bodies if b.startswith("data:")), id=tag))
    return streams


class Replay:
    """A one-route HTTP/1.1 server that answers every request with a recorded body, chunked in small pieces
    (cut mid-line and mid-character), keeping connections alive; it counts the connections it was given."""

    def __init__(self, body: bytes, status: int = 200, content_type: str = "text/event-stream", piece: int = 7):
        self.body, self.status, self.content_type, self.piece = body, status, content_type, piece
        self.connections = 0
        self.requests: list[tuple[str, dict]] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((lines[0], json.loads(body)))
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\ncontent-type: {self.content_type}\r\n"
                    "transfer-encoding: chunked\r\n\r\n".encode()
                )
                for i in range(0, len(self.body), self.piece):
                    part = self.body[i : i + self.piece]
                    writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the test is over
        finally:
            writer.close()


def request(base_url: str, **fields) -> GenerationRequest:
    return GenerationRequest(
        kind="tgi",
        base_url=base_url,
        timeout_s=1.0,
        messages=MESSAGES,
        sampling={"max_tokens": 40, "temperature": 0.2, "seed": 7, "not_a_sampling_key": 1},
        **fields,
    )


async def read(req: GenerationRequest, client: str, settings) -> tuple[dict, str | None]:
    """The reply as the generation takes it from the chunks (its text, and the last finish reason, token counts
    and model the stream gave), and the kind of error the stream ended with, if any."""
    settings.CHAT_STREAM_CLIENT = client
    reply = {"text": "", "finish_reason": None, "prompt_tokens": None, "completion_tokens": None, "model_id": None}
    try:
        async for c in stream_reply(req):
            reply["text"] += c.text
            for key in ("finish_reason", "prompt_tokens", "completion_tokens", "model_id"):
                if getattr(c, key):
                    reply[key] = getattr(c, key)
    except AssistantError as exc:
        return reply, exc.kind
    return reply, None


@pytest.mark.parametrize("stream", recorded_streams())
async def test_both_clients_read_a_recorded_tgi_stream_to_the_same_chunks(stream, settings):
    async with Replay(stream.encode()) as server:
        lean = await read(request(server.url), "lean", settings)
        hf = await read(request(server.url), "hf", settings)
    assert lean == hf
    reply, error = lean
    assert error is None and reply["text"].startswith("Deep") and reply["model_id"]
    assert reply["finish_reason"] in {"length", "stop", "eos_token"}
    assert reply["completion_tokens"]


@pytest.mark.parametrize(
    "path, token, label",
    [("", "", ""), ("/v1", "secret-token", "my-model"), ("/v1/chat/completions", "", "m")],
    ids=["bare", "v1-with-token", "full-route"],
)
async def test_the_lean_client_sends_the_request_huggingface_hub_sends(path, token, label, settings):
    async with AsyncFakeTGI(reply="Fine.") as tgi:
        for client in ("lean", "hf"):
            await read(request(tgi.url + path, token=token, model_label=label), client, settings)
        lean, hf = [r for r in tgi.requests if r.path.endswith("/chat/completions")]
    assert (lean.method, lean.path, lean.json) == (hf.method, hf.path, hf.json)
    assert lean.headers.get("authorization") == hf.headers.get("authorization")
    assert lean.json["messages"] == MESSAGES and "not_a_sampling_key" not in lean.json
    assert chat_url(tgi.url + path).endswith("/v1/chat/completions")


@pytest.mark.parametrize("name,fault,kind,human", FAULTS, ids=[f[0] for f in FAULTS])
async def test_both_clients_end_a_faulty_stream_alike(name, fault, kind, human, settings):
    outcomes = []
    async with AsyncFakeTGI(reply="A perfectly good reply with several words in it.", tokens_per_s=0) as tgi:
        for client in ("lean", "hf"):
            await tgi.configure(reset=True, **fault)
            outcomes.append(await read(request(tgi.url), client, settings))
    (lean_reply, lean_kind), (hf_reply, hf_kind) = outcomes
    assert lean_kind == hf_kind and lean_kind is not None
    assert lean_kind == kind or kind is None
    assert lean_reply["text"] == hf_reply["text"]  # the same text before the fault


async def test_an_error_status_carries_the_servers_words_to_the_record(settings):
    body = RECORDED["InferenceClientVCRTest.test_chat_completion_unprocessable_entity.yaml"]["body"]
    async with Replay(body.encode(), status=422, content_type="text/plain") as server:
        _, kind = await read(request(server.url), "lean", settings)
        with pytest.raises(AssistantError) as caught:
            async for _ in stream_reply(request(server.url)):
                pass
    assert kind == caught.value.kind == "generation" and caught.value.status == 422
    assert body[:60] in caught.value.detail


async def test_replies_to_an_endpoint_reuse_its_connections(settings):
    stream = RECORDED["test_async_chat_completion_with_stream.yaml"]["body"].encode()
    async with Replay(stream, piece=4096) as server:
        for _ in range(3):
            _, error = await read(request(server.url), "lean", settings)
            assert error is None
        assert len(server.requests) == 3 and server.connections == 1
        assert len(backends._pools[asyncio.get_running_loop()]) == 1


async def test_events_that_arrive_together_come_out_as_one_chunk(settings):
    stream = RECORDED["test_async_chat_completion_with_stream.yaml"]["body"]
    async with Replay(stream.encode(), piece=len(stream)) as server:  # the whole stream in one HTTP chunk
        chunks = [c async for c in stream_reply(request(server.url))]
        reply, error = await read(request(server.url), "hf", settings)
    assert error is None, error
    assert len(chunks) == 1
    assert chunks[0].text == reply["text"] and chunks[0].finish_reason == reply["finish_reason"]
    assert chunks[0].completion_tokens == reply["completion_tokens"]


async def test_the_parser_takes_events_split_anywhere_and_a_last_line_without_newline():
    events = [
        {"model": "m", "choices": [{"delta": {"content": "Ré"}, "finish_reason": None}]},
        {"model": "m", "choices": [{"delta": {"content": "sumé"}, "finish_reason": "stop"}]},
        {"model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    ]
    raw = "".join(f"data:{json.dumps(e, ensure_ascii=False)}\n\n" for e in events).encode()
    parser = StreamParser()
    chunks = []
    for i in range(len(raw)):  # one byte at a time: lines and UTF-8 characters cut everywhere
        chunks += parser.feed(raw[i : i + 1])
    chunks += parser.end()
    assert "".join(c.text for c in chunks) == "Résumé"
    assert [c.finish_reason for c in chunks] == [None, "stop", None]
    assert (chunks[1].completion_tokens, chunks[2].prompt_tokens, chunks[2].completion_tokens) == (2, 5, 2)
    half = StreamParser()
    half.feed(b'data: {"choices": [{"delta": {"cont')
    with pytest.raises(ValueError):
        half.end()
