"""The fake TGI against the real huggingface_hub clients over real sockets, and against recorded TGI bytes."""

import asyncio
import http.client
import json
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    UnknownError,
    ValidationError,
)

from oversight_dev import tgiwire
from oversight_dev.faketgi import AsyncFakeTGI, FakeTGI

HERE = Path(__file__).parent
RECORDINGS = json.loads((HERE / "tgi_recordings.json").read_text())["recordings"]
REPO = HERE.parents[1]
SHARED_CASSETTES = next(
    (
        root / "shared" / "tgi-protocol" / "cassettes" / "huggingface_hub"
        for root in (REPO, REPO.parent)
        if (root / "shared" / "tgi-protocol").is_dir()
    ),
    REPO / "shared" / "tgi-protocol" / "cassettes" / "huggingface_hub",
)
LETTERS = {"A": -1.2, " B": -0.4, " C": -2.5, " D": -0.9}


def http_request(tgi, method, path, body=None, *, content_type="application/json"):
    """One request over a fresh connection: (status, lower-cased headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", tgi.port, timeout=5)
    payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(method, path, body=payload, headers={"Content-Type": content_type} if body is not None else {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def sse_payloads(body: bytes) -> list[str]:
    return [line[len("data: ") :] for line in body.decode().split("\n\n") if line.startswith("data: ")]


def without_created(text: str) -> str:
    return re.sub(r'"created":\d+', '"created":0', text)


# -- chat ---------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_stream_yields_the_scripted_text_token_by_token_and_a_finish_reason(messages):
    async with (
        AsyncFakeTGI(replies=["Deep learning stacks many layers."]) as tgi,
        AsyncInferenceClient(base_url=tgi.url, timeout=5) as client,
    ):
        chunks = [chunk async for chunk in await client.chat_completion(messages, stream=True)]

    deltas = [c.choices[0].delta for c in chunks]
    assert [d.content for d in deltas] == [t.text for t in tgiwire.tokenize("Deep learning stacks many layers.")] + [""]
    assert all(d.role == "assistant" for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert tgi.tokens_sent == len(chunks)


def test_a_chat_cut_short_by_max_tokens_finishes_with_length(tgi, client, messages):
    tgi.push_reply("one two three four five")

    out = client.chat_completion(messages, max_tokens=3)

    assert out.choices[0].message.content == "one two three"
    assert out.choices[0].finish_reason == "length"
    prompt_tokens = len(tgiwire.tokenize(tgiwire.apply_chat_template(messages)))
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (prompt_tokens, 3)


@pytest.mark.asyncio
async def test_chat_stream_honours_time_to_first_token_and_token_rate(messages):
    async with (
        AsyncFakeTGI(ttft_ms=200, tokens_per_s=25, reply="one two three four five") as tgi,
        AsyncInferenceClient(base_url=tgi.url, timeout=5) as client,
    ):
        started = time.monotonic()
        arrivals = [time.monotonic() - started async for _ in await client.chat_completion(messages, stream=True)]

    assert len(arrivals) == 6  # five words and EOS
    assert arrivals[0] >= 0.18
    assert arrivals[-1] - arrivals[0] >= 5 / 25 * 0.9
    assert arrivals == sorted(arrivals)


def test_a_chat_stream_with_include_usage_sends_a_usage_chunk_before_done(tgi, messages):
    tgi.push_reply("Short answer.")
    body = {"model": "tgi", "messages": messages, "stream": True, "stream_options": {"include_usage": True}}

    status, headers, raw = http_request(tgi, "POST", "/v1/chat/completions", body)

    events = sse_payloads(raw)
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4  # Short, " answer", ".", EOS
    assert all(json.loads(e)["usage"] is None for e in events[:-2])
    assert json.loads(events[0])["model"] == tgi.config.model_id  # "tgi" echoes the served model


def test_chat_logprobs_come_from_the_scripted_mapping(tgi, client, messages):
    tgi.configure(letter_logprobs=LETTERS)

    out = client.chat_completion(messages, max_tokens=1, logprobs=True, top_logprobs=2)

    first = out.choices[0].logprobs.content[0]
    assert out.choices[0].message.content == " B"
    assert (first.token, first.logprob) == (" B", -0.4)
    assert [(t.token, t.logprob) for t in first.top_logprobs] == [(" B", -0.4), (" D", -0.9)]


# -- chat errors --------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_in_stream_chat_error_surfaces_as_unknown_error_carrying_the_openai_error_object(messages):
    async with AsyncFakeTGI(stream_error_after=3) as tgi, AsyncInferenceClient(base_url=tgi.url, timeout=5) as client:
        received = []
        with pytest.raises(UnknownError) as caught:
            async for chunk in await client.chat_completion(messages, stream=True):
                received.append(chunk.choices[0].delta.content)

    assert len(received) == 3
    assert caught.value.args[0] == {
        "message": "Request failed during generation: CUDA out of memory. Tried to allocate 2.00 GiB",
        "http_status_code": 422,
    }


def test_a_chat_stream_error_can_be_the_first_event_and_is_still_followed_by_done(tgi, messages):
    tgi.configure(stream_error_after=0, stream_error_type="overloaded")

    status, _, raw = http_request(tgi, "POST", "/v1/chat/completions", {"messages": messages, "stream": True})

    assert status == 200
    assert raw == b'data: {"error":{"message":"Model is overloaded","http_status_code":422}}\n\ndata: [DONE]\n\n'


def test_the_legacy_chat_error_shape_raises_the_typed_error(tgi, client, messages):
    tgi.configure(stream_error_after=1, stream_error_type="overloaded", chat_error_shape="legacy")

    with pytest.raises(OverloadedError, match="Model is overloaded"):
        list(client.chat_completion(messages, stream=True))


def test_non_streaming_chat_errors_are_plain_http_errors_with_tgi_bodies(tgi, client, messages):
    tgi.configure(http_status=424)

    with pytest.raises(HfHubHTTPError) as caught:
        client.chat_completion(messages)

    assert caught.value.response.status_code == 424
    assert caught.value.response.json()["error_type"] == "generation"


def test_a_malformed_data_line_or_body_breaks_the_client_json_parsing(tgi, client, messages):
    tgi.configure(malformed_json_after=2)

    with pytest.raises(json.JSONDecodeError):
        list(client.chat_completion(messages, stream=True))
    with pytest.raises(json.JSONDecodeError):
        client.chat_completion(messages)


def test_a_stream_stalling_after_its_headers_times_out_as_a_raw_read_timeout(tgi, messages):
    tgi.configure(stall_after=2)
    client = InferenceClient(base_url=tgi.url, timeout=0.3)
    received = []

    with pytest.raises(httpx2.ReadTimeout):  # not InferenceTimeoutError: the 200 and its headers already came
        for chunk in client.chat_completion(messages, stream=True):
            received.append(chunk)
    with pytest.raises(InferenceTimeoutError):
        client.chat_completion(messages)

    assert len(received) == 2


# -- text generation (`/`, `/generate`, `/generate_stream`) ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raised"),
    [
        ("generation", GenerationError),
        ("overloaded", OverloadedError),
        ("validation", ValidationError),
        ("incomplete_generation", IncompleteGenerationError),
        ("incomplete_generation_stream", UnknownError),
    ],
)
def test_a_text_generation_stream_error_raises_the_mapped_error(tgi, client, kind, raised):
    tgi.configure(stream_error_after=2, stream_error_type=kind)
    received = []

    with pytest.raises(raised):
        for token in client.text_generation("Tell me a story", stream=True):
            received.append(token)

    assert len(received) == 2


def test_generate_stream_ends_after_an_error_event_without_done(tgi):
    tgi.configure(stream_error_after=1, stream_error_type="generation", error_message="boom")

    _, _, raw = http_request(tgi, "POST", "/generate_stream", {"inputs": "Hi", "parameters": {}})

    events = sse_payloads(raw)
    assert len(events) == 2
    assert events[-1] == '{"error":"boom","error_type":"generation"}'


@pytest.mark.parametrize(
    ("status", "raised"),
    [
        (422, ValidationError),
        (424, GenerationError),
        (429, OverloadedError),
        (500, IncompleteGenerationError),
        (503, UnknownError),
    ],
)
def test_http_status_faults_answer_with_tgi_bodies(tgi, client, status, raised):
    tgi.configure(http_status=status)

    with pytest.raises(raised):
        client.text_generation("Hi")
    code, headers, body = http_request(tgi, "POST", "/generate", {"inputs": "Hi"})

    assert code == status
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error", "error_type"}


def test_an_over_long_prompt_is_rejected_with_tgi_validation_message():
    with FakeTGI(max_total_tokens=64, max_input_tokens=63) as tgi:
        client = InferenceClient(base_url=tgi.url, timeout=5)
        prompt = " ".join(["word"] * 60)  # 60 tokens

        with pytest.raises(ValidationError) as plain:
            client.text_generation(prompt, max_new_tokens=10)
        with pytest.raises(UnknownError) as streamed_chat:
            list(client.chat_completion([{"role": "user", "content": prompt}], max_tokens=10, stream=True))

    assert str(plain.value) == (
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 64. "
        "Given: 60 `inputs` tokens and 10 `max_new_tokens`"
    )
    assert streamed_chat.value.args[0]["message"].startswith("Input validation error: `inputs` tokens + ")


def test_stream_only_validation_rules_arrive_as_error_events(tgi):
    _, _, too_many = http_request(tgi, "POST", "/generate_stream", {"inputs": "Hi", "parameters": {"top_n_tokens": 10}})
    _, _, prefill = http_request(
        tgi, "POST", "/generate_stream", {"inputs": "Hi", "parameters": {"decoder_input_details": True}}
    )

    assert sse_payloads(too_many) == [
        '{"error":"Input validation error: `top_n_tokens` must be >= 0 and <= 5. Given: 10","error_type":"validation"}'
    ]
    assert "`decoder_input_details` == true is not supported when streaming tokens" in sse_payloads(prefill)[0]


def test_text_generation_with_details_and_top_n_tokens_returns_the_scripted_top_tokens(tgi, client):
    tgi.configure(letter_logprobs=LETTERS)

    out = client.text_generation("Which is right?\nAnswer:", max_new_tokens=1, details=True, top_n_tokens=3)

    assert out.generated_text == " B"
    assert (out.details.tokens[0].text, out.details.tokens[0].logprob) == (" B", -0.4)
    assert [(t["text"], t["logprob"]) for t in out.details.top_tokens[0]] == [(" B", -0.4), (" D", -0.9), ("A", -1.2)]
    assert out.details.finish_reason == "length"


def test_top_tokens_are_padded_with_fillers_when_the_mapping_is_short(tgi, client):
    tgi.configure(letter_logprobs={"A": -0.1, "B": -3.0})

    events = list(client.text_generation("Answer:", max_new_tokens=2, details=True, stream=True, top_n_tokens=4))

    first = events[0].top_tokens
    assert [t.text for t in first[:2]] == ["A", "B"]
    assert len(first) == 4 and all(t.logprob < -3.0 for t in first[2:])
    assert events[-1].details.finish_reason == "eos_token"  # the letter, then EOS


def test_prefill_scoring_gives_each_candidate_its_scripted_logprob(tgi, client):
    tgi.configure(letter_logprobs=LETTERS)
    prompt = "Which planet is largest? (A) Mars (B) Jupiter (C) Venus (D) Earth\nAnswer:"
    scores = {}

    for letter in "ABCD":
        out = client.text_generation(f"{prompt} {letter}", max_new_tokens=1, details=True, decoder_input_details=True)
        prefill = out.details.prefill
        assert prefill[0].logprob is None
        assert prefill[-1].text == f" {letter}"
        scores[letter] = prefill[-1].logprob

    assert scores == {"A": -1.2, "B": -0.4, "C": -2.5, "D": -0.9}


# -- concurrency, transport faults --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_requests_beyond_max_concurrent_requests_are_overloaded(messages):
    async with (
        AsyncFakeTGI(max_concurrent_requests=2, tokens_per_s=40, reply="one two three four five six") as tgi,
        AsyncInferenceClient(base_url=tgi.url, timeout=5) as client,
    ):

        async def slow_stream():
            return [c async for c in await client.chat_completion(messages, stream=True)]

        streams = [asyncio.create_task(slow_stream()) for _ in range(2)]
        deadline = time.monotonic() + 2
        while tgi.in_flight < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

        with pytest.raises(HfHubHTTPError) as chat_refused:
            await client.chat_completion(messages)
        with pytest.raises(OverloadedError):
            await client.text_generation("Hi")
        with pytest.raises(UnknownError, match="Model is overloaded"):
            [c async for c in await client.chat_completion(messages, stream=True)]
        await asyncio.gather(*streams)
        after = await client.chat_completion(messages, max_tokens=2)

    assert chat_refused.value.response.status_code == 429
    assert chat_refused.value.response.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    assert after.choices[0].finish_reason == "length"


def test_a_down_server_refuses_connections_until_it_is_brought_back_up(tgi, client, messages):
    tgi.configure(down=True)
    with pytest.raises(httpx2.ConnectError):
        client.chat_completion(messages)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tgi.port), timeout=2).close()

    tgi.configure(down=False)

    assert client.chat_completion(messages, max_tokens=2).choices[0].finish_reason == "length"


def test_down_for_s_brings_the_server_back_by_itself(tgi):
    tgi.configure(down=True, down_for_s=0.2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tgi.port), timeout=2).close()

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            status = http_request(tgi, "GET", "/health")[0]
            break
        except ConnectionRefusedError:
            time.sleep(0.05)

    assert status == 200
    assert tgi.config.down is False


def test_a_hanging_server_makes_the_client_time_out_then_recovers(tgi, messages):
    tgi.configure(hang=True, fault_times=1)
    client = InferenceClient(base_url=tgi.url, timeout=0.3)

    with pytest.raises(InferenceTimeoutError):
        client.chat_completion(messages)

    assert client.chat_completion(messages, max_tokens=2).choices[0].message.content
    assert tgi.config.hang is False


# -- simple routes --------------------------------------------------------------------------------------------------


def test_info_reports_the_v3_field_set():
    with FakeTGI(model_id="org/model", max_input_tokens=1000, max_total_tokens=1512) as tgi:
        status, headers, body = http_request(tgi, "GET", "/info")

    info = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert list(info) == [
        "model_id",
        "model_sha",
        "model_pipeline_tag",
        "max_concurrent_requests",
        "max_best_of",
        "max_stop_sequences",
        "max_input_tokens",
        "max_total_tokens",
        "validation_workers",
        "max_client_batch_size",
        "router",
        "version",
        "sha",
        "docker_label",
    ]
    assert (info["model_id"], info["max_input_tokens"], info["max_total_tokens"]) == ("org/model", 1000, 1512)
    assert info["router"] == "text-generation-router"


@pytest.mark.parametrize("path", ["/health", "/ping", "/"])
def test_health_answers_an_empty_200_and_503_when_unhealthy(tgi, path):
    healthy = http_request(tgi, "GET", path)
    tgi.configure(unhealthy=True)
    sick = http_request(tgi, "GET", path)

    assert (healthy[0], healthy[2], healthy[1]["content-length"]) == (200, b"", "0")
    assert (sick[0], sick[2]) == (503, b'{"error":"unhealthy","error_type":"healthcheck"}')


def test_unknown_routes_and_wrong_methods_get_404_and_405(tgi):
    assert http_request(tgi, "GET", "/nope")[0] == 404
    assert http_request(tgi, "GET", "/generate")[0] == 405


# -- byte-level fidelity ------------------------------------------------------------------------------------------


def test_a_chat_stream_matches_a_recorded_tgi_stream_byte_for_byte():
    recorded = RECORDINGS["test_async_chat_completion_with_stream.yaml"]
    tokens = [json.loads(e)["choices"][0]["delta"]["content"] for e in sse_payloads(recorded["body"].encode())[:-1]]
    body = {"model": "tgi", "messages": [{"role": "user", "content": "What is deep learning?"}], "stream": True}

    with FakeTGI(
        model_id="HuggingFaceH4/zephyr-7b-beta", version="3.0.1", docker_label="sha-bb9095a", replies=[tokens]
    ) as tgi:
        status, headers, raw = http_request(tgi, "POST", "/v1/chat/completions", {**body, "max_tokens": len(tokens)})

    assert status == recorded["status"]
    assert headers["content-type"] == recorded["content_type"]
    assert (headers["cache-control"], headers["x-accel-buffering"]) == ("no-cache", "no")
    assert without_created(raw.decode()) == without_created(recorded["body"])


def test_a_generate_stream_event_matches_a_recorded_event_byte_for_byte(tgi):
    recorded = RECORDINGS["test_async_generate_stream_with_details.yaml"]
    tgi.push_reply([{"text": ".", "id": 13, "logprob": -2.877385}])
    body = {"inputs": "test", "parameters": {"details": True, "max_new_tokens": 1}, "stream": True}

    _, _, raw = http_request(tgi, "POST", "/", body)

    assert raw.decode() == recorded["body"]


def test_a_generate_response_with_prefill_matches_a_recorded_one(tgi):
    recorded = RECORDINGS["test_async_generate_with_details.yaml"]
    tgi.push_reply([{"text": ".", "id": 13, "logprob": -2.877385}])
    params = {"details": True, "decoder_input_details": True, "max_new_tokens": 1}

    _, _, raw = http_request(tgi, "POST", "/", {"inputs": "test", "parameters": params})

    ours = raw.decode().replace(f'"id":{tgiwire.token_id("test")},', '"id":9288,')  # gpt2's id for "test"
    assert ours == recorded["body"]


def test_a_chat_completion_has_the_recorded_key_order(tgi, messages):
    recorded = RECORDINGS["TestInferenceClient.test_chat_completion_no_stream[hf-inference,conversational].yaml"]

    _, _, raw = http_request(tgi, "POST", "/v1/chat/completions", {"messages": messages})

    def key_paths(text):
        paths = []

        def walk(value, prefix):
            if isinstance(value, list):
                for item in value:
                    walk(item, prefix + "[]")
            elif isinstance(value, tuple):  # an object, as ordered (key, value) pairs
                for key, item in value:
                    paths.append(f"{prefix}.{key}")
                    walk(item, f"{prefix}.{key}")

        walk(json.loads(text, object_pairs_hook=tuple), "")
        return paths

    assert key_paths(raw.decode()) == key_paths(recorded["body"])
    assert tgiwire.dumps(json.loads(raw)) == raw.decode()  # compact, serde-style separators


@pytest.mark.parametrize(
    ("name", "path", "body", "knobs"),
    [
        (
            "test_async_generate_validation_error.yaml",
            "/",
            {"inputs": "test", "parameters": {"max_new_tokens": 10000}, "stream": False},
            {"max_total_tokens": 1024, "max_input_tokens": 1023},
        ),
        ("InferenceClientVCRTest.test_chat_completion_unprocessable_entity.yaml", "/v1/chat/completions", None, {}),
    ],
)
def test_recorded_error_responses_are_reproduced_byte_for_byte(name, path, body, knobs):
    recorded = RECORDINGS[name]
    payload = recorded["request_body"].encode() if body is None else body

    with FakeTGI(**knobs) as tgi:
        status, headers, raw = http_request(tgi, "POST", path, payload)

    assert (status, headers["content-type"], raw.decode()) == (
        recorded["status"],
        recorded["content_type"],
        recorded["body"],
    )


def test_each_sse_event_travels_as_one_http_chunk(tgi, messages):
    tgi.push_reply("A few tokens here.")
    body = json.dumps({"messages": messages, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", tgi.port), timeout=5) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk

    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    assert len(chunks) == len(tgiwire.tokenize("A few tokens here.")) + 2  # tokens, EOS, [DONE]
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") and c.count(b"\n\n") == 1 for c in chunks)


def test_the_recorded_fixtures_match_the_shared_cassettes():
    if not SHARED_CASSETTES.is_dir():
        pytest.skip(f"no shared cassettes at {SHARED_CASSETTES}")
    yaml = pytest.importorskip("yaml")
    for name, recorded in RECORDINGS.items():
        cassette = yaml.safe_load((SHARED_CASSETTES / name).read_text())
        bodies = [i["response"]["body"]["string"] for i in cassette["interactions"]]
        assert recorded["body"] in bodies, name


# -- harness features ---------------------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(tgi):
    conn = http.client.HTTPConnection("127.0.0.1", tgi.port, timeout=5)
    statuses = []
    for _ in range(3):
        conn.request("POST", "/generate", body=b'{"inputs":"Hi"}', headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    conn.close()

    assert statuses == [200, 200, 200]


def test_requests_are_recorded_for_assertions(tgi, client, messages):
    client.chat_completion(messages, max_tokens=2)
    client.text_generation("Hello", max_new_tokens=1)

    chat, generate = tgi.requests
    assert (chat.method, chat.path, chat.status) == ("POST", "/v1/chat/completions", 200)
    assert chat.json["messages"] == messages and chat.json["max_tokens"] == 2
    assert generate.path == "/" and generate.json["inputs"] == "Hello"
    assert chat.time <= generate.time
    assert tgi.tokens_sent == 3


def test_the_default_reply_quotes_a_passage_sentence_verbatim(tgi, client):
    passage = (
        "The lighthouse keeper lit the lamp every evening at dusk. Storms battered the coast for three weeks "
        "in March. The supply boat arrived only twice that winter. Nobody in the village remembered a colder year."
    )
    conversation = [
        {"role": "system", "content": f"Read the passage and answer.\n<passage>{passage}</passage>"},
        {"role": "user", "content": "How often did the supply boat arrive that winter?"},
    ]

    reply = client.chat_completion(conversation).choices[0].message.content

    assert re.findall(r'"([^"]+)"', reply) == ["The supply boat arrived only twice that winter."]


def test_a_reply_function_sees_the_conversation(messages):
    def reply_fn(ctx):
        return f"{len(ctx.messages)} messages on {ctx.route}"

    with FakeTGI(reply_fn=reply_fn) as tgi:
        reply = InferenceClient(base_url=tgi.url, timeout=5).chat_completion(messages).choices[0].message.content

    assert reply == "2 messages on chat"


def test_faults_can_be_flipped_over_the_control_api(tgi, client):
    status, _, body = http_request(tgi, "POST", "/__fake/config", {"http_status": 429, "fault_times": 1})
    assert status == 200 and json.loads(body)["http_status"] == 429

    with pytest.raises(OverloadedError):
        client.text_generation("Hi")
    assert client.text_generation("Hi", max_new_tokens=2)

    config = json.loads(http_request(tgi, "GET", "/__fake/config")[2])
    assert (config["http_status"], config["fault_times"]) == (None, 0)
    assert http_request(tgi, "POST", "/__fake/config", {"no_such_knob": 1})[0] == 400
    assert [r.path for r in tgi.requests] == ["/", "/"]  # control calls are not recorded


def test_the_cli_runs_the_fake_as_a_separate_process():
    command = [sys.executable, "-m", "oversight_dev.faketgi", "--port", "0", "--control-port", "0"]
    command += ["--fault", "down", "--model-id", "cli/model"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "the fake never said it was listening"
        url, control = re.findall(r"http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(url)), timeout=2).close()

        conn = http.client.HTTPConnection("127.0.0.1", int(control), timeout=5)
        conn.request("POST", "/__fake/config", body=b'{"down": false}', headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()

        conn = http.client.HTTPConnection("127.0.0.1", int(url), timeout=5)
        conn.request("GET", "/info")
        assert json.loads(conn.getresponse().read())["model_id"] == "cli/model"
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
