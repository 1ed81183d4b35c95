"""The small HTTP/1.1 client the TGI scoring requests go through: framing, keep-alive, failures."""

import asyncio
import json

import pytest

from oversight.baselines.transport import JSONPoster, ProtocolError
from oversight_dev.faketgi import AsyncFakeTGI

BODY = json.dumps(
    {"inputs": "Human: hi\n\nAssistant:", "parameters": {"max_new_tokens": 1, "details": True, "top_n_tokens": 2}}
).encode()


async def serve(answer: bytes):
    """A one-shot raw server that replies `answer` to every request; returns (server, url, requests seen)."""
    seen = []

    async def handle(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            seen.append(head + await reader.readexactly(length))
            writer.write(answer)
            await writer.drain()
            if b"connection: close" in answer.lower():
                writer.close()
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


@pytest.mark.asyncio
async def test_it_posts_json_and_reuses_one_keep_alive_connection():
    async with AsyncFakeTGI(letter_logprobs={" A": -0.5, " B": -1.0}) as tgi:
        poster = JSONPoster(tgi.url + "/", token="secret", timeout_s=5)
        for _ in range(3):
            status, payload = await poster.post("/generate", BODY)
            assert status == 200 and json.loads(payload)["details"]["top_tokens"][0][0]["text"] == " A"
        await poster.aclose()
        requests = tgi.requests
    assert [r.path for r in requests] == ["/generate"] * 3
    assert requests[0].headers["authorization"] == "Bearer secret"
    assert requests[0].headers["content-type"] == "application/json"
    assert len({r.headers.get("host") for r in requests}) == 1


@pytest.mark.asyncio
async def test_it_reads_a_chunked_answer():
    server, url, _ = await serve(
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
    )
    async with server:
        poster = JSONPoster(url, timeout_s=5)
        assert await poster.post("/generate", BODY) == (200, b'{"a": 1}')
        await poster.aclose()


@pytest.mark.asyncio
async def test_a_connection_the_server_closes_is_not_reused():
    server, url, seen = await serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    async with server:
        poster = JSONPoster(url, timeout_s=5)
        assert await poster.post("/generate", BODY) == (200, b"{}")
        assert await poster.post("/generate", BODY) == (200, b"{}")
        assert poster._idle == [] and len(seen) == 2
        await poster.aclose()


@pytest.mark.asyncio
async def test_a_pooled_connection_dropped_by_a_restarted_server_is_replaced_transparently():
    async with AsyncFakeTGI(letter_logprobs={" A": -0.5}) as tgi:
        poster = JSONPoster(tgi.url, timeout_s=5)
        assert (await poster.post("/generate", BODY))[0] == 200
        await tgi.configure(down=True)  # resets every open connection, as a crash would
        await tgi.configure(down=False)
        assert (await poster.post("/generate", BODY))[0] == 200
        await poster.aclose()


@pytest.mark.asyncio
async def test_errors_are_the_exceptions_the_classifier_knows():
    async with AsyncFakeTGI(hang=True) as tgi:
        poster = JSONPoster(tgi.url, timeout_s=0.2)
        with pytest.raises(TimeoutError):
            await poster.post("/generate", BODY)
        await poster.aclose()
    async with AsyncFakeTGI(down=True) as tgi:
        with pytest.raises(OSError):  # connection refused
            await JSONPoster(tgi.url, timeout_s=2).post("/generate", BODY)
    server, url, _ = await serve(b"garbage\r\n\r\n")
    async with server:
        with pytest.raises(ProtocolError):
            await JSONPoster(url, timeout_s=2).post("/generate", BODY)


def test_only_http_urls_are_accepted():
    with pytest.raises(ValueError, match="not an http"):
        JSONPoster("unix:///tmp/tgi.sock")
    poster = JSONPoster("https://tgi.example.org/prefix/")
    assert (poster.host, poster.port, poster.prefix) == ("tgi.example.org", 443, "/prefix")
    assert poster.ssl is not None
