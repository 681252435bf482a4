"""The OpenAPI description of the API (drf-spectacular), served at /api/v1/schema.

Views declare only their own answers (success, and errors particular to them).
The errors that follow from how a view is configured (authentication, body
parsing, throttles, a path parameter) are added here from that configuration,
so the schema cannot drift from what the framework really answers.
"""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny

from .serializers import DetailSerializer, ValidationErrorSerializer

EXECUTION_ID_DESCRIPTION = (
    "`exec_` followed by 12 lowercase hex characters. Any other value names no execution "
    "and gets 404, like an unknown id or someone else's execution."
)
EXECUTION_ID_EXAMPLE = "exec_1a2b3c4d5e6f"

WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Token`: send `Authorization: Token <key>`",
        "required": True,
        "schema": {"type": "string"},
    }
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
BODY_METHODS = ("POST", "PUT", "PATCH")
WEBSOCKET_PATH = "/api/v1/executions/{execution_id}/progress/ws"
WEBSOCKET_DESCRIPTION = (
    "The WebSocket that streams this execution's frames: a `status` frame, then each event as "
    "this operation returns it, or an `error` frame whose `code` is the close code that follows (see "
    "docs/protocol/websocket.md). OpenAPI has no WebSocket operations: this names its path and "
    "the schema of every frame it sends."
)
FEED_WEBSOCKET_PATH = "/api/v1/executions/ws"
FEED_WEBSOCKET_DESCRIPTION = (
    "The execution feed, one WebSocket for many executions (`?status=pending,running`, `?scope=all` for "
    "staff): a `snapshot` frame of those not ended yet (at most 100, newest first, each as this operation "
    "lists it), then `created` frames for new ones and the event frames of each (progress at most about 4 per "
    "second per execution), or an `error` frame whose `code` is the close code that follows (see "
    "docs/protocol/feed.md). OpenAPI has no WebSocket operations: this names its path and the schema of every "
    "frame it sends."
)


class ApiAutoSchema(AutoSchema):
    """AutoSchema that documents the error answers implied by the view's configuration,
    and the WebSocket frames of a view that sets ``websocket_frames`` (on its GET operation,
    with ``websocket_path`` and ``websocket_description`` when it names another socket
    than the per-execution one)."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        frames = getattr(self.view, "websocket_frames", None)
        if operation is not None and frames is not None and self.method == "GET":
            # Resolving registers the component, so the frames sent only on the
            # WebSocket are published too; the vendor extension says where.
            operation["x-websocket"] = {
                "description": getattr(self.view, "websocket_description", WEBSOCKET_DESCRIPTION),
                "path": getattr(self.view, "websocket_path", WEBSOCKET_PATH),
                "frames": self.resolve_serializer(frames, "response").ref,
            }
        return operation

    def _get_response_bodies(self, direction: Literal["request", "response"] = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction == "response":
            for code, response in self.implied_error_responses().items():
                responses.setdefault(code, response)
        return dict(sorted(responses.items()))

    def implied_error_responses(self) -> dict[str, Any]:
        view, method = self.view, self.method
        authenticators = view.get_authenticators()
        requires_auth = bool(authenticators) and not any(isinstance(p, AllowAny) for p in view.get_permissions())
        errors: dict[str, Any] = {}

        def add(code: int, description: str, serializer: type = DetailSerializer, headers: dict | None = None) -> None:
            response = self._get_response_for_code(OpenApiResponse(serializer, description=description), str(code))
            if headers:
                response["headers"] = headers
            errors[str(code)] = response

        if method in BODY_METHODS and self.get_request_serializer() is not None:
            add(400, "The body is not a JSON object of the documented shape", ValidationErrorSerializer)
            add(413, "Request body larger than the limit (DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE)")
            add(415, "Content-Type is not application/json")
        if requires_auth:
            add(401, "Missing or invalid credentials", headers=WWW_AUTHENTICATE)
            if method not in SAFE_METHODS and any(isinstance(a, SessionAuthentication) for a in authenticators):
                add(403, "Session authentication without the CSRF token")
        if "{" in self.path:
            add(404, "Unknown execution, or someone else's")
        add(406, "The Accept header excludes application/json")
        # Our throttles (core.throttles) let safe methods through.
        if method not in SAFE_METHODS and view.get_throttles():
            add(429, "Too many requests (throttled)", headers=RETRY_AFTER)
        if method in getattr(view, "queues_work_on", ()):
            add(503, "The task queue (Redis) is unreachable: nothing was stored, try again later", headers=RETRY_AFTER)
        return errors


def strip_trailing_slashes(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """Preprocessing hook: document the canonical paths, which have no trailing slash.

    The routes accept both forms (``executions/urls.py``); drf-spectacular would
    otherwise render the optional slash of the route regex as a trailing one.
    """
    return [(path.rstrip("/") or "/", path_regex, method, callback) for path, path_regex, method, callback in endpoints]


IDEMPOTENCY_KEY_DESCRIPTION = (
    "Makes the submit safe to retry: the same key (per user, for 24 hours) with the same body answers what "
    "the first request was answered, and starts nothing new; with another body, 409. 1 to 255 printable "
    "ASCII characters (anything else: 400)."
)
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}

SUBMITTED_LINKS = {
    "GetExecution": "executions_retrieve",
    "GetProgress": "executions_progress",
    "GetEvents": "executions_events",
    "CancelExecution": "executions_cancel",
}


def describe_execution_ids(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: describe ``execution_id`` and link the submit answer to it.

    The id's format is a description, not a ``pattern``: the server takes any
    path segment and answers 404 for one that names no execution, and that is
    what the schema has to say (a pattern would declare other values invalid
    input, which the API does not treat them as).
    """
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "execution_id":
                    parameter["description"] = EXECUTION_ID_DESCRIPTION
                    parameter["example"] = EXECUTION_ID_EXAMPLE
            if operation.get("operationId") in ("executions_create", "executions_rerun"):
                operation["responses"]["202"]["links"] = {
                    name: {
                        "operationId": operation_id,
                        "parameters": {"execution_id": "$response.body#/execution_id"},
                    }
                    for name, operation_id in SUBMITTED_LINKS.items()
                }
    return result
