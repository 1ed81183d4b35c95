"""The web process's request gate (oversight/ops/gate.py): views on a fixed set of threads, 503 past them."""

import asyncio
import threading
import time

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async

from oversight.ops.gate import Lanes


class FakeDjango:
    """Stands in for Django's ASGI handler: its own ThreadSensitiveContext, sync work, the body read from receive."""

    def __init__(self, work_s: float = 0.0):
        self.work_s = work_s
        self.threads: list[str] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        async with ThreadSensitiveContext():
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            self.bodies.append(body)

            def view():
                time.sleep(0 if scope["path"] == "/healthz" else self.work_s)
                return threading.current_thread().name

            self.threads.append(await sync_to_async(view)())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def scope(path="/s/p/abc/item/0/", method="GET", headers=()):
    return {"type": "http", "path": path, "method": method, "headers": list(headers), "query_string": b""}


async def call(app, s, body=b""):
    sent = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    await app(s, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


FORM = [(b"content-type", b"application/x-www-form-urlencoded"), (b"accept", b"text/html")]


@pytest.mark.asyncio
async def test_the_views_run_on_a_fixed_set_of_threads_whatever_the_burst():
    django = FakeDjango(work_s=0.002)
    app = Lanes(django, threads=3, queue_s=30, queue_max=1000)
    results = await asyncio.gather(*(call(app, scope()) for _ in range(60)))
    assert [status for status, _, _ in results] == [200] * 60
    assert len(django.threads) == 60
    assert set(django.threads) <= {"web-lane-0_0", "web-lane-1_0", "web-lane-2_0"}


@pytest.mark.asyncio
async def test_a_request_that_waits_too_long_for_a_thread_is_answered_503_with_retry_after():
    app = Lanes(FakeDjango(work_s=0.6), threads=1, queue_s=0.1, queue_max=1000)
    (first, second) = await asyncio.gather(call(app, scope()), call(app, scope()))
    statuses = sorted([first[0], second[0]])
    assert statuses == [200, 503]
    busy = first if first[0] == 503 else second
    assert busy[1]["retry-after"] == "2"


@pytest.mark.asyncio
async def test_a_request_that_waits_less_than_the_limit_is_served():
    app = Lanes(FakeDjango(work_s=0.1), threads=1, queue_s=5, queue_max=1000)
    results = await asyncio.gather(*(call(app, scope()) for _ in range(5)))
    assert [status for status, _, _ in results] == [200] * 5


@pytest.mark.asyncio
async def test_a_busy_answer_post_comes_back_as_a_form_that_sends_the_same_answer_again():
    django = FakeDjango(work_s=0.5)
    app = Lanes(django, threads=1, queue_s=0.05, queue_max=1000)
    body = b"csrfmiddlewaretoken=t%3Cok&choice=2&confidence=80"
    post = scope("/s/p/abc/item/3/submit", "POST", [*FORM, (b"content-length", str(len(body)).encode())])
    _, (status, headers, page) = await asyncio.gather(call(app, scope()), call(app, post, body))
    assert status == 503 and headers["retry-after"] == "2"
    html = page.decode()
    assert '<form method="post" action="/s/p/abc/item/3/submit" id="resend"' in html
    assert '<input type="hidden" name="choice" value="2">' in html
    assert '<input type="hidden" name="confidence" value="80">' in html
    assert '<input type="hidden" name="csrfmiddlewaretoken" value="t&lt;ok">' in html  # escaped
    assert '<script src="/static/js/resend.js"></script>' in html
    assert "not been recorded yet" in html
    assert django.bodies == [b""]  # the answer never reached the view


@pytest.mark.asyncio
async def test_a_busy_page_reloads_itself_without_javascript():
    app = Lanes(FakeDjango(work_s=0.5), threads=1, queue_s=0.05, queue_max=1000)
    _, (status, _, page) = await asyncio.gather(
        call(app, scope()), call(app, scope(headers=[(b"accept", b"text/html")]))
    )
    assert status == 503
    assert '<meta http-equiv="refresh" content="2;url=/s/p/abc/item/0/">' in page.decode()


@pytest.mark.asyncio
async def test_a_busy_htmx_or_script_request_gets_the_status_alone():
    app = Lanes(FakeDjango(work_s=0.5), threads=1, queue_s=0.05, queue_max=1000)
    htmx = scope("/s/p/abc/item/0/submit", "POST", [*FORM, (b"hx-request", b"true")])
    fetch = scope("/s/p/abc/item/0/select", "POST", [(b"accept", b"application/json")])
    _, (s1, h1, b1), (s2, _, b2) = await asyncio.gather(call(app, scope()), call(app, htmx), call(app, fetch))
    assert (s1, b1, s2, b2) == (503, b"", 503, b"")
    assert h1["retry-after"] == "2"


@pytest.mark.asyncio
async def test_past_the_queue_limit_a_request_is_answered_at_once():
    app = Lanes(FakeDjango(work_s=0.5), threads=1, queue_s=30, queue_max=1)
    t0 = time.monotonic()
    results = await asyncio.gather(*(call(app, scope()) for _ in range(4)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(503) >= 2 and statuses.count(200) >= 1
    assert time.monotonic() - t0 < 5


@pytest.mark.asyncio
async def test_health_probes_do_not_wait_behind_the_views():
    app = Lanes(FakeDjango(work_s=0.8), threads=1, queue_s=30, queue_max=1000)
    busy = asyncio.ensure_future(call(app, scope()))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    status, _, _ = await call(app, scope("/healthz"))
    assert status == 200 and time.monotonic() - t0 < 0.5
    await busy


@pytest.mark.asyncio
async def test_a_form_body_read_before_the_queue_reaches_the_view_intact():
    django = FakeDjango()
    app = Lanes(django, threads=2, queue_s=30, queue_max=1000)
    body = b"choice=1&confidence=60"
    await call(app, scope("/x", "POST", [*FORM, (b"content-length", str(len(body)).encode())]), body)
    assert django.bodies == [body]
