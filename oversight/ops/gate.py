"""The web process's request gate: a fixed set of threads for Django's sync work, and back-pressure past them.

Django's ASGI handler gives every request a thread of its own (asgiref's `ThreadSensitiveContext`), so a burst
of 500 participants meant 500 threads, 500 database connections opened and dropped (SQLite: 15% of the CPU
in issue 15's profile; PostgreSQL: `too many clients`), and writers convoying on the database. Here each HTTP
request first takes one of `WEB_THREADS` **lanes** (a thread that lives as long as the process, keeping its
database connection when `CONN_MAX_AGE` allows) and runs all its sync work there; the others wait their turn on
the event loop, which costs nothing but memory.

A request that has waited `WEB_QUEUE_S` seconds for a lane (or finds `WEB_QUEUE_MAX` already waiting) is not
run: it gets **503 with Retry-After**, which the page rides out — never an error page, never a lost answer:

* an htmx or fetch request (`HX-Request`, or a non-HTML `Accept`) gets the status alone; trial.js waits
  Retry-After and sends it again;
* a page (GET) gets a short page that reloads itself (`<meta http-equiv=refresh>`, no JS needed);
* a form POST gets a page holding the same fields in a form that sends them again — by itself after
  Retry-After with JS (static/js/resend.js), with a button without it.

Health probes (/healthz, /readyz, /metrics) bypass the gate: an overloaded process is busy, not dead.
"""

from __future__ import annotations

import asyncio
import html
import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl

from asgiref.sync import ThreadSensitiveContext

log = logging.getLogger(__name__)

EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics")
# Form bodies up to this size are read before a lane is taken (so a 503 can offer to send them again);
# larger ones (bank uploads) are read by Django in the lane as before.
BUFFERED_BODY_MAX = 64 * 1024
RETRY_AFTER_S = 2


class Lanes:
    """ASGI middleware around Django's HTTP application (oversight/asgi.py)."""

    def __init__(self, app, *, threads: int, queue_s: float, queue_max: int, static_url: str = "/static/") -> None:
        self.app = app
        self.threads = threads
        self.queue_s = queue_s
        self.queue_max = queue_max
        self.static_url = static_url
        self.waiting = 0
        self.busy_answers = 0
        self._free: asyncio.Queue | None = None
        self._loop = None

    def _lanes(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:
            self._loop = loop
            self._free = asyncio.Queue()
            for i in range(self.threads):
                self._free.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"web-lane-{i}"))
        return self._free

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PATHS):
            return await self.app(scope, receive, send)
        free = self._lanes()
        body = b""
        if scope["method"] == "POST" and _is_form(scope) and _length(scope) <= BUFFERED_BODY_MAX:
            body, receive = await _buffered(receive)
        if self.waiting == 0 and not free.empty():
            lane = free.get_nowait()  # nobody queued before this request: no turn to take
        elif self.waiting >= self.queue_max:
            return await self._busy(scope, body, send)
        else:
            self.waiting += 1
            try:
                lane = await asyncio.wait_for(free.get(), self.queue_s)
            except TimeoutError:
                return await self._busy(scope, body, send)
            finally:
                self.waiting -= 1
        try:
            async with ThreadSensitiveContext(executor=lane):
                await self.app(scope, receive, send)
        finally:
            free.put_nowait(lane)

    async def _busy(self, scope, body: bytes, send) -> None:
        self.busy_answers += 1
        if self.busy_answers == 1 or self.busy_answers % 100 == 0:
            log.warning(
                "web process saturated: answered 503 + Retry-After",
                extra={"busy_answers": self.busy_answers, "waiting": self.waiting, "lanes": self.threads},
            )
        status, content = busy_response(scope, body, static_url=self.static_url)
        headers = [
            (b"retry-after", str(RETRY_AFTER_S).encode()),
            (b"cache-control", b"no-store"),
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(content)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def _is_form(scope) -> bool:
    return _header(scope, b"content-type").startswith("application/x-www-form-urlencoded")


def _length(scope) -> int:
    try:
        return int(_header(scope, b"content-length") or 0)
    except ValueError:
        return BUFFERED_BODY_MAX + 1


async def _buffered(receive):
    """Read the whole (small) body now; hand the application a receive() that replays it, then listens on."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            first = message  # a disconnect: replay it as such

            async def replay_disconnect(first=first):
                return first

            return b"".join(chunks), replay_disconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def busy_response(scope, body: bytes, *, static_url: str = "/static/") -> tuple[int, bytes]:
    """503's body: nothing for scripts, a self-reloading page for GETs, a resend form for form POSTs."""
    accept = _header(scope, b"accept")
    if _header(scope, b"hx-request") or (accept and "text/html" not in accept and "*/*" not in accept):
        return 503, b""
    path = html.escape(scope.get("root_path", "") + scope["path"])
    title = "One moment, please"
    if scope["method"] in ("GET", "HEAD"):
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{html.escape(query)}" if query else "")
        inner = (
            f'<meta http-equiv="refresh" content="{RETRY_AFTER_S};url={target}">'
            f"<h1>{title}</h1><p>Many people are taking part right now. This page loads again by itself in a "
            f'moment; if it does not, <a href="{target}">reload it</a>.</p>'
        )
        return 503, _page(title, inner).encode()
    fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True) if _is_form(scope) else []
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">' for name, value in fields
    )
    inner = (
        f"<h1>{title}</h1><p>Many people are taking part right now, so what you sent has <strong>not been "
        "recorded yet</strong>. It is sent again by itself in a moment; if nothing happens, press the button.</p>"
        f'<form method="post" action="{path}" id="resend" data-retry-after="{RETRY_AFTER_S}">{hidden}'
        '<button type="submit">Send again</button></form>'
        f'<script src="{html.escape(static_url)}js/resend.js"></script>'
    )
    return 503, _page(title, inner).encode()


def _page(title: str, inner: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body>{inner}</body></html>"
    )


def wrap(app, *, threads: int, queue_s: float, queue_max: int, static_url: str):
    """Django's HTTP application behind the gate; `threads` 0 leaves it as Django serves it (a thread per request)."""
    if threads <= 0:
        return app
    return Lanes(app, threads=threads, queue_s=queue_s, queue_max=queue_max, static_url=static_url)
