"""The contract's frame shapes, shared by the consumer and end-to-end tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

#: Exactly the keys of each frame type (CONTRACT.md, "Events and the WebSocket stream").
FRAME_KEYS: dict[str, frozenset[str]] = {
    "status": frozenset({"type", "execution_id", "status", "progress", "seq", "timestamp"}),
    "started": frozenset({"type", "execution_id", "status", "seq", "timestamp"}),
    "progress": frozenset({"type", "execution_id", "status", "progress", "seq", "timestamp"}),
    "completed": frozenset({"type", "execution_id", "status", "progress", "outputs", "error", "seq", "timestamp"}),
    "failed": frozenset({"type", "execution_id", "status", "progress", "outputs", "error", "seq", "timestamp"}),
    "cancelled": frozenset({"type", "execution_id", "status", "progress", "outputs", "error", "seq", "timestamp"}),
    "error": frozenset({"type", "message", "timestamp"}),
}
TERMINAL_TYPES = frozenset({"completed", "failed", "cancelled"})
PROGRESS_KEYS = frozenset({"current_step", "total_steps", "percentage", "current_step_name"})


def assert_frame_shape(frame: dict[str, Any]) -> None:
    """The frame has exactly its type's keys, a UTC timestamp and a well-formed progress."""
    assert frame.get("type") in FRAME_KEYS, frame
    assert set(frame) == FRAME_KEYS[frame["type"]], frame
    stamp = frame["timestamp"]
    assert isinstance(stamp, str) and (stamp.endswith("Z") or stamp.endswith("+00:00")), frame
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).utcoffset() is not None
    if frame.get("progress") is not None:
        progress = frame["progress"]
        assert set(progress) == PROGRESS_KEYS, frame
        assert 0 <= progress["percentage"] <= 100, frame
        assert 0 <= progress["current_step"] <= progress["total_steps"], frame
    if frame["type"] in ("started", "progress"):
        assert frame["status"] == "running", frame
    if frame["type"] in TERMINAL_TYPES:
        assert frame["status"] == frame["type"], frame


def step_progress(k: int, total: int) -> dict[str, Any]:
    """The progress of entering step ``k`` (1-based) of ``total`` in ``demo_steps``."""
    return {
        "current_step": k - 1,
        "total_steps": total,
        "percentage": (k - 1) / total * 100,
        "current_step_name": f"step_{k}",
    }


def final_progress(total: int) -> dict[str, Any]:
    return {"current_step": total, "total_steps": total, "percentage": 100.0, "current_step_name": None}
