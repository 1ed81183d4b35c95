"""Django's HTTP handling with a request's whole synchronous life in one thread hop.

Django's own ASGI handler loads the middleware in async mode. Every view and middleware here is synchronous,
so a request went async → sync → async → sync: `MiddlewareMixin` runs each `process_request` and
`process_response` through `sync_to_async`, the chain's sync middleware call the async view adapter back through
`async_to_sync`, and the request's start and end signals hop once more each. py-spy on the embedded default
under issue 15's burst found the web threads spending most of their time handing work to each other.

This handler loads the middleware in sync mode, as Django's WSGI handler does, and runs the start signal, the
request, the middleware, the view, the response's content and its closing (the end signal) in **one**
`sync_to_async` call. Under `ops.gate.Lanes` that call runs on the request's lane thread. The async side only
reads the body and sends the bytes.

A streaming response (exports, file downloads) is sent the way Django's ASGI handler sends one: its iterator is
consumed from the event loop (sync iterators a chunk per hop), then it is closed.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse
from django.urls import set_script_prefix


class OneHopASGIHandler(ASGIHandler):
    def __init__(self):
        BaseHandler.__init__(self)  # not ASGIHandler's: it loads the middleware in async mode
        self.load_middleware(is_async=False)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response, content = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            if content is None:  # streaming: sent chunk by chunk, closed after
                try:
                    await self.send_response(response, send)
                finally:
                    await sync_to_async(response.close, thread_sensitive=True)()
                return
            await send({"type": "http.response.start", "status": response.status_code, "headers": _headers(response)})
            for chunk, last in self.chunk_bytes(content):
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
        finally:
            body_file.close()  # as Django's handler does (a large upload's body is a temporary file on disk)

    def _respond(self, scope, body_file):
        """The sync part, on the lane: (response, its content), or (response, None) for a streaming one."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)  # closing the response closes the request
            response._handler_class = self.__class__
        if response.streaming:
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # as Django's ASGI handler: the server chunks
            return response, None
        content = response.content
        response.close()  # request_finished: the lane's database connection is checked, as after any request
        return response, content


def _headers(response) -> list[tuple[bytes, bytes]]:
    headers = [
        (
            header.encode("ascii") if isinstance(header, str) else bytes(header),
            value.encode("latin1") if isinstance(value, str) else bytes(value),
        )
        for header, value in response.items()
    ]
    headers += [(b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in response.cookies.values()]
    return headers
