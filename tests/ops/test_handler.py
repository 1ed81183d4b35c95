"""Django's HTTP handling in one thread hop (oversight/ops/handler.py): start signal, middleware, view, content and
end signal on one thread, off the event loop; responses as Django's own ASGI handler sends them."""

import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

from oversight.ops.handler import OneHopASGIHandler

seen: list[tuple[str, str]] = []


def plain(request):
    seen.append(("view", threading.current_thread().name))
    response = HttpResponse(b"x" * 150_000, content_type="text/plain", status=201)
    response["X-Thing"] = "caf\u00e9"
    response.set_cookie("flavour", "oat")
    return response


def streaming(request):
    def parts():
        for i in range(3):
            seen.append(("part", threading.current_thread().name))
            yield f"part {i};".encode()

    return StreamingHttpResponse(parts(), content_type="text/plain")


urlpatterns = [path("plain/", plain), path("streaming/", streaming)]
pytestmark = [
    pytest.mark.urls(__name__),
    # Django says it of every sync streaming response under ASGI; ours are exports, sent as Django sends them.
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators"),
]


@pytest.fixture(autouse=True)
def signal_threads():
    seen.clear()

    def started(**kwargs):
        seen.append(("started", threading.current_thread().name))

    def finished(**kwargs):
        seen.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


async def call(path_: str) -> list[dict]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_,
        "raw_path": path_.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    app = ApplicationCommunicator(OneHopASGIHandler(), scope)
    await app.send_input({"type": "http.request", "body": b""})
    messages = []
    while not messages or messages[-1].get("more_body", False) or messages[-1]["type"] == "http.response.start":
        messages.append(await app.receive_output(5))
    await app.wait(5)
    return messages


@pytest.mark.asyncio
async def test_the_request_s_whole_sync_life_runs_on_one_thread_that_is_not_the_loop_s():
    messages = await call("/plain/")
    assert [what for what, _ in seen] == ["started", "view", "finished"]
    threads = {thread for _, thread in seen}
    assert len(threads) == 1 and threads != {threading.current_thread().name}
    assert messages[0]["status"] == 201


@pytest.mark.asyncio
async def test_the_response_goes_out_whole_with_its_headers_and_cookies():
    start, *body = await call("/plain/")
    headers = dict(start["headers"])
    assert headers[b"X-Thing"] == "caf\u00e9".encode("latin1")
    assert headers[b"Content-Type"] == b"text/plain"
    assert headers[b"Set-Cookie"].startswith(b"flavour=oat")
    assert b"".join(m["body"] for m in body) == b"x" * 150_000
    assert len(body) > 1 and body[-1]["more_body"] is False  # chunked as Django's handler chunks


@pytest.mark.asyncio
async def test_a_streaming_response_is_sent_part_by_part_then_closed_once():
    start, *body = await call("/streaming/")
    assert start["status"] == 200
    assert b"".join(m.get("body", b"") for m in body) == b"part 0;part 1;part 2;"
    assert [what for what, _ in seen] == ["started", "part", "part", "part", "finished"]
