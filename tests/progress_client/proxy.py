"""A hostile proxy in front of the live daphne, for the client's fallback tests.

It refuses what real proxies refuse (a WebSocket upgrade answered 403/426,
or 502 on every try; the SSE path answered with an HTML 404) and can answer
requests 429/503 with ``Retry-After``; everything else is passed through,
one request per connection (``Connection: close``), so each request is seen.
Runs its own event loop in a thread; ``requests`` records what came through.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    #: What the proxy answered itself (None: passed through).
    answered: int | None
    at: float


@dataclass
class Refusal:
    """Answer requests matching ``matches`` with ``status`` (the first ``times`` of them; None: all)."""

    matches: Callable[[str, str, dict[str, str]], bool]
    status: int
    body: bytes = b"<html><body>Not here</body></html>"
    content_type: str = "text/html"
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    used: int = 0


def is_websocket(method: str, target: str, headers: dict[str, str]) -> bool:
    return headers.get("upgrade", "").lower() == "websocket"


def is_sse(method: str, target: str, headers: dict[str, str]) -> bool:
    return "/progress/stream" in target


def is_events(method: str, target: str, headers: dict[str, str]) -> bool:
    return re.search(r"/events(\?|$)", target) is not None


def is_submit(method: str, target: str, headers: dict[str, str]) -> bool:
    return method == "POST" and target.rstrip("/").endswith("/api/v1/executions")


def with_connection_close(head: bytes) -> bytes:
    """An HTTP head (request or response) with ``Connection: close`` instead of any connection header."""
    first, *lines = head.decode("latin-1").split("\r\n")
    kept = [line for line in lines if line and not line.lower().startswith(("connection:", "keep-alive:"))]
    return ("\r\n".join([first, *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1")


REASONS = {403: "Forbidden", 404: "Not Found", 426: "Upgrade Required", 429: "Too Many Requests",
           502: "Bad Gateway", 503: "Service Unavailable"}


class HostileProxy:
    def __init__(self, upstream_port: int, refusals: list[Refusal]) -> None:
        self.upstream_port = upstream_port
        self.refusals = refusals
        self.requests: list[Seen] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        assert self._ready.wait(5), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def seen(self, predicate: Callable[[str, str, dict[str, str]], bool]) -> list[Seen]:
        return [s for s in self.requests if predicate(s.method, s.target, s.headers)]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length") or 0))
        for refusal in self.refusals:
            if refusal.matches(method, target, headers) and (refusal.times is None or refusal.used < refusal.times):
                refusal.used += 1
                self.requests.append(Seen(method, target, headers, refusal.status, time.monotonic()))
                extra = "".join(f"{k}: {v}\r\n" for k, v in refusal.headers.items())
                writer.write(
                    f"HTTP/1.1 {refusal.status} {REASONS.get(refusal.status, 'Refused')}\r\n"
                    f"Content-Type: {refusal.content_type}\r\nContent-Length: {len(refusal.body)}\r\n"
                    f"{extra}Connection: close\r\n\r\n".encode() + refusal.body
                )
                await self._close(writer)
                return
        self.requests.append(Seen(method, target, headers, None, time.monotonic()))
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        if headers.get("upgrade"):
            upstream_writer.write(head + body)
        else:
            upstream_writer.write(with_connection_close(head) + body)
            # The answer says so too, so that the client opens a new connection for its next request.
            try:
                writer.write(with_connection_close(await upstream_reader.readuntil(b"\r\n\r\n")))
            except (asyncio.IncompleteReadError, ConnectionError):
                await self._close(writer)
                return
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            await HostileProxy._close(sink)

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
        with contextlib.suppress(Exception):
            writer.close()
            await writer.wait_closed()
