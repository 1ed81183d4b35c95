"""What the middleware chain costs a request under ASGI: the chain in one thread, or on the event loop.

Under ASGI Django builds its middleware chain from the inside out: a sync-only middleware last (the project's
CSP middleware) makes every middleware outside it that can run synchronously do so, so the whole chain runs in
the request's thread; with every middleware async-capable the chain runs on the event loop instead, and
Django's own middleware (`MiddlewareMixin`) then hops to a thread and back for each of its hooks. This times the
same requests through Django's ASGI handler in this process (no server, no network) both ways: the project's
chain as it is, and with the CSP middleware and WhiteNoise's made async-capable (subclasses defined here). The
requests: the public link's page of a study that does not exist (all middleware, URL resolution, a template, no
database write), and a static file (WhiteNoise answers it).

    .venv/bin/python bench/middleware.py                 # 2,000 requests per variant and path, 3 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")


def variant_middleware(all_async: bool) -> list[str]:
    from django.conf import settings

    chain = list(settings.MIDDLEWARE)
    if not all_async:
        return chain
    swap = {
        "whitenoise.middleware.WhiteNoiseMiddleware": "bench_middleware_async.AsyncWhiteNoise",
        "oversight.core.middleware.ContentSecurityPolicyMiddleware": "bench_middleware_async.AsyncCSP",
    }
    return [swap.get(name, name) for name in chain]


def async_variants():
    """Async-capable versions of the two sync-only middlewares (what this branch tried, and measured, first)."""
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
    from whitenoise.middleware import WhiteNoiseMiddleware

    from oversight.core.middleware import ContentSecurityPolicyMiddleware

    class AsyncMixin:
        sync_capable = async_capable = True

        def __init__(self, get_response, *args, **kwargs):
            super().__init__(get_response, *args, **kwargs)
            self.is_async = iscoroutinefunction(get_response)
            if self.is_async:
                markcoroutinefunction(self)

        def __call__(self, request):
            return self.__acall__(request) if self.is_async else super().__call__(request)

    class AsyncCSP(AsyncMixin, ContentSecurityPolicyMiddleware):
        async def __acall__(self, request):
            response = await self.get_response(request)
            response.headers.setdefault("Content-Security-Policy", self.policy)
            return response

    class AsyncWhiteNoise(AsyncMixin, WhiteNoiseMiddleware):
        async def __acall__(self, request):
            static_file = self.files.get(request.path_info) if not self.autorefresh else None
            if static_file is not None:
                return await sync_to_async(self.serve)(static_file, request)
            return await self.get_response(request)

    module = type(sys)("bench_middleware_async")
    module.AsyncCSP, module.AsyncWhiteNoise = AsyncCSP, AsyncWhiteNoise
    sys.modules["bench_middleware_async"] = module


async def one(app, path: str) -> int:
    status = 0
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects; Django cancels this when it has answered

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"text/html")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return status


def measure(all_async: bool, requests: int) -> dict[str, float]:
    """One variant in this (fresh) process: CPU µs per request for each path."""
    import logging

    import django

    django.setup()
    logging.getLogger("django.request").setLevel(logging.ERROR)  # a 404 logs a warning per request
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    async_variants()
    settings.MIDDLEWARE = variant_middleware(all_async)
    app = ASGIHandler()
    paths = {"page": "/s/no-such-study/", "static": "/static/js/trial.js"}
    out = {}
    for name, path in paths.items():

        async def run(path=path) -> float:
            for _ in range(50):  # warm-up
                assert await one(app, path) in (200, 404)
            cpu0 = time.process_time()
            for _ in range(requests):
                await one(app, path)
            return (time.process_time() - cpu0) / requests * 1e6

        out[name] = asyncio.run(run())
    return out


def main(argv=None) -> int:
    import json
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variant", choices=["thread", "loop"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant == "loop", args.requests)))
        return 0
    labels = {"thread": "chain in the thread (as configured)", "loop": "chain on the loop (all async)"}
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for variant in ("thread", "loop"):  # a fresh process each time, the two interleaved
            with tempfile.TemporaryDirectory(prefix="bench-middleware-") as data_dir:
                proc = subprocess.run(
                    [sys.executable, __file__, "--variant", variant, "--requests", str(args.requests)],
                    env={**os.environ, "DATA_DIR": data_dir},
                    capture_output=True,
                    text=True,
                    check=True,
                )
            for name, value in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                results.setdefault((name, labels[variant]), []).append(value)
    print(f"CPU per request (µs, median of {args.rounds} fresh processes of {args.requests}); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    for (name, label), values in sorted(results.items()):
        print(f"  {name:<7} {label:<38} {statistics.median(values):8.0f}   ({', '.join(f'{v:.0f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
