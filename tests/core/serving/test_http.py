"""``BoundedBody``, the ASGI layer of the request-body bound, driven as an ASGI server would.

daphne's own layer (``BoundedWebRequest``) needs a real connection: it is
proved on the live server in tests/e2e/test_http_bodies.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from django.test import override_settings

from core.serving.http import BoundedBody, body_too_large_message

LIMIT = 100


class Recorder:
    """An ASGI application that reads the whole body and remembers what it got."""

    def __init__(self) -> None:
        self.scope: Mapping[str, Any] | None = None
        self.body = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(app: Recorder, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> list[Mapping[str, Any]]:
    """What ``BoundedBody(app)`` sends for a POST with ``headers`` whose body arrives as ``chunks``."""
    scope = {"type": "http", "method": "POST", "path": "/api/v1/executions", "headers": headers}
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    sent: list[Mapping[str, Any]] = []

    async def receive() -> Mapping[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(BoundedBody(app)(scope, receive, send))
    return sent


def assert_refused(sent: list[Mapping[str, Any]]) -> None:
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"detail": body_too_large_message()}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    app = Recorder()
    assert_refused(call(app, [(b"content-length", b"101")], [b"x" * 101]))
    assert app.scope is None


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_declared_length_within_the_limit_goes_through_untouched() -> None:
    app = Recorder()
    headers = [(b"content-length", b"100")]
    assert call(app, headers, [b"x" * 60, b"y" * 40])[0]["status"] == 200
    assert app.scope is not None and app.scope["headers"] == headers
    assert app.body == b"x" * 60 + b"y" * 40


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_chunked_body_is_handed_on_whole_with_its_length() -> None:
    app = Recorder()
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    assert call(app, headers, [b'{"type":', b' "pipeline"}'])[0]["status"] == 200
    assert app.body == b'{"type": "pipeline"}'
    assert app.scope is not None
    assert app.scope["headers"] == [(b"content-type", b"application/json"), (b"content-length", b"20")]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_chunked_body_over_the_limit_is_refused_before_the_application_runs() -> None:
    app = Recorder()
    assert_refused(call(app, [(b"transfer-encoding", b"chunked")], [b"x" * 60, b"y" * 60, b"z"]))
    assert app.scope is None


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_without_a_limit_any_body_goes_through() -> None:
    app = Recorder()
    assert call(app, [(b"transfer-encoding", b"chunked")], [b"x" * 1000, b"y"])[0]["status"] == 200
    assert app.body == b"x" * 1000 + b"y"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_websocket_is_passed_on_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Mapping[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Mapping[str, Any]) -> None:
        raise AssertionError(message)

    scope = {"type": "websocket", "path": "/ws/executions/x", "headers": [(b"content-length", b"1000")]}
    asyncio.run(BoundedBody(app)(scope, receive, send))
    assert seen == [(scope, receive, send)]
