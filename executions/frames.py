"""The wire format: every frame, and the execution's public JSON shape, is built here.

A frame is serialised to JSON text once, when its event is recorded; that text
is stored with the event and travels through the channel layer unchanged, so
msgpack never meets a datetime and no frame is re-encoded per client. The
protocol is described in docs/protocol/frames.md; the OpenAPI
serializers in ``executions.api.serializers`` describe these shapes, and a test
checks every builder here against them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict, cast, overload

from .models import TERMINAL_EVENT_TYPES, Execution


class Progress(TypedDict):
    current_step: int
    total_steps: int
    percentage: float
    current_step_name: str | None
    #: Estimated seconds left, set by the event writer (``executions.eta``); a
    #: target's report does not carry it.
    eta_seconds: NotRequired[float | None]


class ErrorInfo(TypedDict):
    type: str
    message: str
    details: dict[str, Any] | None


FrameType = Literal[
    "status", "started", "progress", "resumed", "completed", "failed", "cancelled", "error", "snapshot", "created"
]


class Frame(TypedDict):
    type: FrameType
    execution_id: NotRequired[str]
    status: NotRequired[str]
    progress: NotRequired[Progress | None]
    outputs: NotRequired[dict[str, Any] | None]
    error: NotRequired[ErrorInfo | None]
    #: ``resumed``: the attempt that took the run up (2, 3, ...).
    attempt: NotRequired[int]
    seq: NotRequired[int]
    message: NotRequired[str]
    #: ``error``: the close code that follows it; None when the socket stays open.
    code: NotRequired[int | None]
    timestamp: NotRequired[str]
    #: ``created``: the new execution, in its public shape (``execution_dict``).
    execution: NotRequired[dict[str, Any]]
    #: ``snapshot``: executions in their public shape.
    executions: NotRequired[list[dict[str, Any]]]


@overload
def iso(dt: datetime) -> str: ...
@overload
def iso(dt: None) -> None: ...
@overload
def iso(dt: datetime | None) -> str | None: ...
def iso(dt: datetime | None) -> str | None:
    """UTC ISO-8601 with a ``Z`` offset, microseconds kept so order is visible."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def dumps(frame: Frame | dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def event_frame(
    *,
    event_type: str,
    execution_id: str,
    status: str,
    seq: int,
    timestamp: datetime,
    progress: Progress | None = None,
    outputs: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
    attempt: int | None = None,
) -> Frame:
    """The frame of a stored event; its keys depend on the type (docs/protocol/frames.md).

    ``resumed`` carries the progress at the resume point and the ``attempt``
    that took the run up.
    """
    frame: Frame = {"type": cast(FrameType, event_type), "execution_id": execution_id, "status": status}
    if event_type == "progress":
        frame["progress"] = progress
    elif event_type == "resumed":
        if attempt is None:
            raise ValueError("a resumed frame needs its attempt")
        frame["progress"] = progress
        frame["attempt"] = attempt
    elif event_type in TERMINAL_EVENT_TYPES:
        frame["progress"] = progress
        frame["outputs"] = outputs
        frame["error"] = error
    frame["seq"] = seq
    frame["timestamp"] = iso(timestamp)
    return frame


def status_frame(
    *, execution_id: str, status: str, progress: Progress | None, seq: int, timestamp: datetime
) -> Frame:
    return {
        "type": "status",
        "execution_id": execution_id,
        "status": status,
        "progress": progress,
        "seq": seq,
        "timestamp": iso(timestamp),
    }


def error_frame(message: str, code: int | None) -> Frame:
    """Why the stream cannot serve this request, and the close code that follows (None: no close)."""
    return {"type": "error", "message": message, "code": code, "timestamp": iso(datetime.now(UTC))}


def snapshot_frame(*, executions: list[dict[str, Any]], timestamp: datetime) -> Frame:
    """The first frame of the execution feed: the executions it follows, in their public shape."""
    return {"type": "snapshot", "executions": executions, "timestamp": iso(timestamp)}


def created_frame(*, execution: dict[str, Any], timestamp: datetime) -> Frame:
    """An execution the execution feed starts to follow (submitted, usually), in its public shape."""
    return {
        "type": "created",
        "execution_id": execution["execution_id"],
        "execution": execution,
        "timestamp": iso(timestamp),
    }


def execution_dict(execution: Execution) -> dict[str, Any]:
    """The execution's public JSON shape: the REST API's answer, and the pages' initial state.

    ``owner`` is the owner's username (reads of many executions select the owner
    with them: ``executions.selectors``).
    """
    return {
        "execution_id": execution.id,
        "type": execution.type,
        "target_id": execution.target_id,
        "status": execution.status,
        "progress": execution.progress,
        "inputs": execution.inputs,
        "config": execution.config,
        "outputs": execution.outputs,
        "error": execution.error,
        "created_at": iso(execution.created_at),
        "started_at": iso(execution.started_at),
        "completed_at": iso(execution.completed_at),
        "failed_at": iso(execution.failed_at),
        "cancelled_at": iso(execution.cancelled_at),
        "seq": execution.seq,
        "attempt": execution.attempt,
        "callback_url": execution.callback_url or None,
        "rerun_of": execution.rerun_of,
        "owner": execution.owner.get_username(),
    }
