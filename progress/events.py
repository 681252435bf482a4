"""The wire contract: every WebSocket frame is built here, from primitives.

A frame is serialised to JSON text once, when its event is recorded; that text
is stored with the event and travels through the channel layer unchanged, so
msgpack never meets a datetime and no frame is re-encoded per client.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict


class Progress(TypedDict):
    current_step: int
    total_steps: int
    percentage: float
    current_step_name: str | None


class ErrorInfo(TypedDict):
    type: str
    message: str
    details: dict[str, Any] | None


FrameType = Literal["status", "started", "progress", "completed", "failed", "cancelled", "error"]


class Frame(TypedDict):
    type: FrameType
    execution_id: NotRequired[str]
    status: NotRequired[str]
    progress: NotRequired[Progress | None]
    outputs: NotRequired[dict[str, Any] | None]
    error: NotRequired[ErrorInfo | None]
    seq: NotRequired[int]
    message: NotRequired[str]
    timestamp: NotRequired[str]


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
) -> Frame:
    """The frame of a stored event; its keys depend on the type (see CONTRACT)."""
    frame: Frame = {"type": event_type, "execution_id": execution_id, "status": status}  # type: ignore[typeddict-item]
    if event_type == "progress":
        frame["progress"] = progress
    elif event_type in ("completed", "failed", "cancelled"):
        frame["progress"] = progress
        frame["outputs"] = outputs
        frame["error"] = error
    frame["seq"] = seq
    frame["timestamp"] = iso(timestamp)  # type: ignore[typeddict-item]
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
        "timestamp": iso(timestamp),  # type: ignore[typeddict-item]
    }


def error_frame(message: str) -> Frame:
    return {"type": "error", "message": message, "timestamp": iso(datetime.now(UTC))}  # type: ignore[typeddict-item]
