"""The OpenAPI description of ``GET .../progress/stream`` (Server-Sent Events).

drf-spectacular only describes DRF views, and this endpoint is a plain async
Django view (DRF has no async views: its authentication and rendering would
hold a thread for as long as the stream is open). This postprocessing hook
adds the operation to the generated document, reusing its components (the
error bodies, the frames), with exactly the answers the view gives;
tests/executions/test_api_responses.py validates real answers against it.
"""

from __future__ import annotations

from typing import Any

from core.params import MAX_QUERY_INTEGER
from executions.api.schema import WWW_AUTHENTICATE
from executions.models import EventType

STREAM_PATH = "/api/v1/executions/{execution_id}/progress/stream"
OPERATION_ID = "executions_progress_stream"

DESCRIPTION = (
    "Server-Sent Events (`text/event-stream`), for clients and proxies that cannot use the "
    "WebSocket. Each frame the WebSocket sends is one event: `id: <seq>` (absent on `error`), "
    "`event: <type>`, `data: <the frame's JSON, byte for byte the WebSocket frame>`, then a "
    "blank line. The guarantees are the WebSocket's: a `status` event first, then every later "
    "event exactly once in `seq` order, one terminal event (`completed`, `failed` or "
    "`cancelled`), then the response ends. Resume with `Last-Event-ID` (what a browser's "
    "`EventSource` sends when it reconnects; it wins over `after_seq`) or `after_seq`: the "
    "stored events after it, then live ones, without `status`; when nothing is stored after "
    "it, a `status` event first (and the end of the response if the execution has ended). "
    "The response opens with a `retry:` field (`PROGRESS_SSE_RETRY_SECONDS`, in milliseconds): how "
    "long a browser's `EventSource` waits before it reconnects. A resume at or past the terminal "
    "event of an ended execution is answered `204 No Content`, which stops an `EventSource`. A "
    "server that restarts ends the response after its last whole event: resume from its `id`. "
    "A `: keep-alive` comment goes out every 15 s (`PROGRESS_SSE_KEEPALIVE_SECONDS`). If the "
    "user's access goes while the stream is open, an `error` event ends it; its `code` is the "
    "WebSocket's close code for the same case (4401, 4404)."
)
SEQ_DESCRIPTION = "Resume after this event: digits only, 0 to 10^18-1"
#: The ``event:`` field of each event: the frame types of the stream, from the domain's event types.
EVENT_TYPES = ["status", *EventType.values, "error"]
#: One event of the stream, as SSE clients (and Schemathesis) read it: its fields, with
#: the frame as JSON text in ``data`` (what OpenAPI 3.2 calls the stream's ``itemSchema``).
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The frame's `seq` (absent on `error`)"},
        "event": {"type": "string", "enum": EVENT_TYPES},
        "data": {
            "type": "string",
            "description": "The WebSocket frame, byte for byte",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/WebSocketFrame"},
        },
    },
}


def _json(ref: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
        "description": description,
        **extra,
    }


def stream_operation() -> dict[str, Any]:
    """The operation of ``GET .../progress/stream``, with exactly the answers the view gives."""
    return {
        "operationId": OPERATION_ID,
        "description": DESCRIPTION,
        "parameters": [
            {
                "in": "query",
                "name": "after_seq",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INTEGER, "format": "int64"},
                "description": SEQ_DESCRIPTION,
            },
            {
                "in": "header",
                "name": "Last-Event-ID",
                # Empty is "no resume point" (an EventSource with no last event id sends none).
                "schema": {"type": "string", "pattern": "^[0-9]{0,18}$"},
                "description": f"{SEQ_DESCRIPTION}; wins over `after_seq`; empty: not given",
            },
            {
                "in": "path",
                "name": "execution_id",
                "schema": {"type": "string", "pattern": "^[^/]+$"},
                "required": True,
            },
        ],
        "tags": ["executions"],
        "security": [{"tokenAuth": []}, {"cookieAuth": []}],
        "responses": {
            "200": {
                "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
                "description": "The event stream; the schema describes each of its events",
            },
            "204": {"description": "A resume at or past the terminal event: the execution has ended"},
            "400": _json("ValidationError", "after_seq or Last-Event-ID is not an integer in 0..10^18-1"),
            "401": _json("Detail", "Missing or invalid credentials", headers=WWW_AUTHENTICATE),
            "404": _json("Detail", "Unknown execution, or someone else's"),
        },
    }


def document_progress_stream(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: add the SSE operation next to the execution's other paths."""
    result.setdefault("paths", {})[STREAM_PATH] = {"get": stream_operation()}
    result["paths"] = dict(sorted(result["paths"].items()))
    return result
