"""daphne's HTTP side: request bodies bounded before anything stores them, and connections a drain can end.

Two layers answer 413 past ``DATA_UPLOAD_MAX_MEMORY_SIZE``: :class:`BoundedWebRequest`
(daphne's request, installed by :func:`core.serving.daphne.tune_daphne`) refuses
as soon as the declared length, or the bytes received so far, pass it, and
discards the rest unstored; :class:`BoundedBody` (ASGI middleware, any server)
refuses a declared length at once, reads a chunked body up to the limit, and
hands it on whole with the ``Content-Length`` it turned out to have.
While the process drains, every request is answered, then its connection
closed (:class:`BoundedWebRequest`, :class:`DrainableHTTPFactory`).
"""

from __future__ import annotations

import io
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from daphne import http_protocol
from django.conf import settings
from twisted.web.http import HTTPChannel

from . import drain

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def body_too_large_message() -> str:
    """The ``detail`` of every 413 for a request body, whichever layer refuses it."""
    return f"Request body too large: the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


def _too_large_body() -> bytes:
    return json.dumps({"detail": body_too_large_message()}).encode()


async def _refuse_too_large(send: Send) -> None:
    body = _too_large_body()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The client may still be sending: the rest of its body is not read.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BoundedBody:
    """ASGI middleware bounding HTTP request bodies under any server.

    A body sent with ``Transfer-Encoding: chunked`` reaches Django without
    ``Content-Length``, which DRF reads as "no body" (a valid JSON submit sent
    that way was answered "type: This field is required"): it is read here and
    handed on whole, with the length it turned out to have.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if scope["type"] != "http" or limit is None:  # None: Django's "no limit"
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if declared.strip().isdigit() and int(declared) > limit:
                return await _refuse_too_large(send)
            return await self.app(scope, receive, send)

        # No Content-Length: an empty body, or a chunked one. Read it here.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _refuse_too_large(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"transfer-encoding"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # what comes after the body: the disconnect

        return await self.app(scope, replay, send)


def close_after_response(request: Any) -> None:
    """Answer ``request``, then close its connection (saying so in ``Connection: close`` if still possible)."""
    request.channel.persistent = False
    if not request.startedWriting:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])


#: How much of a refused body is read and thrown away before the connection is
#: closed: closing with unread data makes the kernel reset the connection, and
#: the client may then lose the 413 it has not read yet.
DISCARD_BEFORE_CLOSE = 4 * 1024 * 1024


class BoundedWebRequest(http_protocol.WebRequest):
    """daphne's request, answering 413 before the body is stored.

    daphne (Twisted underneath) receives a whole request body, into a
    temporary file past 100 kB, before the application is called, and Django
    then reads it all again before any view runs. This request refuses as soon
    as the declared length, or the bytes received so far, pass the limit; the
    rest of the body is discarded unstored and the connection closed.
    """

    refused = False
    received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        # Called once the headers are in, after Twisted decided on keep-alive.
        if drain.draining():
            close_after_response(self)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length is not None and limit is not None and length > limit:
            # Twisted would answer "Expect: 100-continue" right after this call.
            self.requestHeaders.removeHeader(b"expect")
            self.refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.received += len(data)
        if self.refused:
            if self.received > DISCARD_BEFORE_CLOSE:
                self.channel.transport.abortConnection()
            return
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and self.received > limit:
            self.refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.refused:  # answered already; the application never sees it
            self.channel.loseConnection()
            return
        super().requestReceived(command, path, version)

    def refuse(self) -> None:
        self.refused = True
        self.content = io.BytesIO()
        body = _too_large_body()
        self.channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        logger.info("refused a request body over %d bytes", settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


class DrainableHTTPFactory(http_protocol.HTTPFactory):
    """daphne's HTTP factory, keeping its connections so that a drain can end them.

    A drain (``core.serving.server``) lets every request in progress finish,
    then closes its connection (:meth:`close_after_responses`; a request that
    arrives on a kept-alive connection meanwhile is answered the same way, see
    :meth:`BoundedWebRequest.gotLength`), and at the end closes the kept-alive
    connections still idle (:meth:`close_idle`). An idle connection is left
    open until then, rather than closed at once: a client polling on it gets
    its next answer with ``Connection: close`` and moves on, instead of
    racing a close with its next request.
    """

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        # Twisted's per-connection protocols (each wraps an HTTPChannel).
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's name
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.connections.add(protocol)
        return protocol

    def open_channels(self) -> list[HTTPChannel]:
        """The HTTP connections still open and still HTTP (not handed over to a WebSocket)."""
        channels = []
        for protocol in list(self.connections):
            # Twisted's wrapper proxies the real channel under this name (twisted.web.http).
            channel = protocol._channel
            transport = channel.transport
            if transport is None or not transport.connected or getattr(transport, "protocol", None) is not protocol:
                continue
            channels.append(channel)
        return channels

    def close_after_responses(self) -> None:
        """Every connection with a request in progress closes once it is answered."""
        for channel in self.open_channels():
            for request in channel.requests:
                close_after_response(request)

    def busy(self) -> int:
        """How many connections have a request in progress."""
        return sum(1 for channel in self.open_channels() if channel.requests)

    def close_idle(self) -> int:
        """Close the connections with no request in progress; how many there were."""
        idle = []
        for channel in self.open_channels():
            transport: Any = channel.transport  # not None: the channel is open
            if not channel.requests and not transport.disconnecting:  # not closing already
                idle.append(channel)
        for channel in idle:
            channel.loseConnection()
        return len(idle)
