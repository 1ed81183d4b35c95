"""A small HTTP/1.1 keep-alive client for TGI's JSON routes, on asyncio streams.

Why not httpx (huggingface_hub's transport) for the scoring requests: a baseline run is tens of thousands of
tiny, identical POSTs, and httpx's connection-pool bookkeeping plus huggingface_hub's response dataclasses
cost about 1.5 ms of CPU per request, more than everything else the runner does (0.16 ms per item with the
database writes). That capped a 32-way run against a 50 ms server at under half its bound. This client costs
under 0.1 ms per request. It does only what TGI needs: POST a JSON body, read a Content-Length or chunked
answer, keep connections alive, TLS for https URLs. It is used for TGI's raw-text routes only; chat requests
(OpenAI-compatible servers, chat templates) go through huggingface_hub. Set the run parameter
`transport="httpx"` to route everything through huggingface_hub instead (e.g. behind an HTTP proxy, which
this client does not support).

Failures raise the standard exceptions that `assistant.backends.classify` understands: ConnectionError /
OSError (unavailable), TimeoutError (timeout); HTTP errors come back as (status, body) for the caller to map.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from urllib.parse import urlsplit

IDLE_S = 4.0  # close pooled connections idle longer than this (servers drop idle keep-alive connections)


class ProtocolError(ConnectionError):
    """The server broke HTTP/1.1 framing (or closed the connection mid-answer)."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class JSONPoster:
    """POST JSON to one server over a pool of keep-alive connections (one pool per run)."""

    def __init__(self, base_url: str, *, token: str = "", timeout_s: float = 60.0, user_agent: str = "oversight"):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.ssl else 80)
        host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:  # IPv6 literal
            host_header = f"[{self.host}]:{self.port}"
        headers = [
            f"Host: {host_header}",
            "Content-Type: application/json",
            "Accept: application/json",
            f"User-Agent: {user_agent}",
        ]
        if token:
            headers.append(f"Authorization: Bearer {token}")
        self._headers = "\r\n".join(headers)
        self.timeout_s = timeout_s
        self._idle: list[_Conn] = []
        self._closed = False

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of POST `path` (under the base URL's path). A reused connection that turns out to have
        been closed by the server is replaced once, transparently (nothing was received, so nothing is lost)."""
        head = (f"POST {self.prefix}{path} HTTP/1.1\r\n{self._headers}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        async with asyncio.timeout(self.timeout_s):
            while True:
                conn, reused = await self._checkout()
                try:
                    status, payload, keep = await self._exchange(conn, head + body)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    conn.close()
                    if reused and getattr(exc, "nothing_received", False):
                        continue
                    raise ProtocolError(f"connection lost: {exc!r}") from exc
                except BaseException:
                    conn.close()  # a timeout or cancellation mid-answer leaves the connection unusable
                    raise
                if keep and not self._closed:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                else:
                    conn.close()
                return status, payload

    async def _checkout(self) -> tuple[_Conn, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < IDLE_S and not conn.reader.at_eof():
                return conn, True
            conn.close()
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None, limit=2**20
        )
        return _Conn(reader, writer), False

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bytes, bool]:
        try:
            conn.writer.write(request)
            await conn.writer.drain()
        except ConnectionError as exc:
            exc.nothing_received = True
            raise
        reader = conn.reader
        status_line = await reader.readline()
        if not status_line:
            err = ConnectionResetError("the server closed the connection before answering")
            err.nothing_received = True
            raise err
        try:
            version, status_text = status_line.split(b" ", 2)[:2]
            status = int(status_text)
        except ValueError as exc:
            raise ProtocolError(f"bad status line {status_line[:100]!r}") from exc
        length, chunked, keep = None, False, version == b"HTTP/1.1"
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ProtocolError("the connection closed inside the headers")
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = b"close" not in value.lower() if keep else b"keep-alive" in value.lower()
        if chunked:
            parts = []
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(await reader.readexactly(size))
                await reader.readline()
            payload = b"".join(parts)
        elif length is not None:
            payload = await reader.readexactly(length) if length else b""
        else:
            payload, keep = await reader.read(), False  # delimited by the end of the connection
        return status, payload, keep

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
