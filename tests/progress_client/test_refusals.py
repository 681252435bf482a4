"""The client reads a refusal's ``code``, never its message (no live stack: a small real server).

A WebSocket server (``websockets``) plays the service: it sends one ``error``
frame and closes with its code, or answers the event stream with one ``error``
event. The message is arbitrary text, or the text of another refusal: the
typed error follows the code alone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from progress_client import (
    ApiError,
    AsyncClient,
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

pytestmark = pytest.mark.asyncio

EXECUTION_ID = "exec_0123456789ab"
#: What each refusal sends: (error frame's message, its code).
REFUSALS = {
    "words": ("Sorry, not today (this text means nothing to a client)", 4401),
    "swapped": ("Authentication required", 4404),
    "forbidden": ("Execution gone", 4403),
    "bad": ("Authentication required", 4400),
}
EXPECTED: dict[str, type[ApiError]] = {
    "words": AuthenticationFailed,
    "swapped": NotFound,
    "forbidden": PermissionDenied,
    "bad": ValidationFailed,
}


class Service:
    """Refuses every stream with ``refusal``'s frame, over the WebSocket or as an SSE error event."""

    refusal: tuple[str, int] = REFUSALS["words"]

    def frame(self) -> str:
        message, code = self.refusal
        return json.dumps({"type": "error", "message": message, "code": code, "timestamp": "2026-01-01T00:00:00Z"})

    async def socket(self, connection: ServerConnection) -> None:
        await connection.send(self.frame())
        await connection.close(code=self.refusal[1])

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        if not request.path.endswith("/progress/stream"):
            return None  # the WebSocket handshake
        response = connection.respond(200, f"event: error\ndata: {self.frame()}\n\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "text/event-stream"
        return response


@pytest_asyncio.fixture
async def service() -> AsyncIterator[tuple[Service, str]]:
    refusing = Service()
    server: Server
    async with serve(refusing.socket, "127.0.0.1", 0, process_request=refusing.http) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        yield refusing, f"http://{host}:{port}"


async def watch(base_url: str, transport: str) -> list[dict[str, Any]]:
    async with AsyncClient(base_url, "token", transports=[transport], max_retries=0) as client:
        return [frame async for frame in client.watch(EXECUTION_ID)]


@pytest.mark.parametrize("transport", ["websocket", "sse"])
@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_the_typed_error_follows_the_code_whatever_the_message(
    service: tuple[Service, str], transport: str, case: str
) -> None:
    refusing, base_url = service
    refusing.refusal = REFUSALS[case]
    with pytest.raises(ApiError) as raised:
        await watch(base_url, transport)
    assert type(raised.value) is EXPECTED[case]
    assert raised.value.detail == REFUSALS[case][0]
