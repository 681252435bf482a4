"""``executions.frames`` against the published OpenAPI schema: every frame type
its builders emit (the stored events, the ``status`` frame a stream opens with,
the ``error`` frame before a refusal), and the execution's public shape
(``execution_dict``, the REST ``Execution``).

The frames are made the way the server makes them: events recorded through
``event_record`` and read back as stored, the status frame from an
execution's row, the error frame for each message the consumer sends.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone

from executions.frames import Frame, error_frame, execution_dict, status_frame
from executions.models import Execution
from executions.selectors import event_frames_after
from tests.frames import assert_frame_shape, assert_matches_component, published_schema, schema_errors

from .states import EXECUTION_STATES

pytestmark = pytest.mark.django_db

#: What the consumer says in an error frame (progress/consumers.py), one of each kind.
#: (message, the close code that follows; None: the socket stays open).
ERRORS = [
    ("Authentication required", 4401),
    ("Invalid after_seq", 4400),
    ("Execution 'exec_000000000000' not found", 4404),
    ("scope=all is for staff only", 4403),
    ("Unsupported message", None),
]


def on_the_wire(value: Any) -> Any:
    """What a client decodes: the value through JSON, as the server sends it."""
    return json.loads(json.dumps(value))


def stored_frames(execution: Execution) -> list[dict[str, Any]]:
    return [json.loads(text) for _, _, text in event_frames_after(execution_id=execution.id)]


def opening_status_frame(execution: Execution) -> Frame:
    """The first frame of a stream, built as the consumer builds it."""
    return status_frame(
        execution_id=execution.id,
        status=execution.status,
        progress=execution.progress,
        seq=execution.seq,
        timestamp=timezone.now(),
    )


def discriminator_types(component: str) -> set[str]:
    return set(published_schema()["components"]["schemas"][component]["discriminator"]["mapping"])


@pytest.fixture
def executions(alice: Any) -> dict[str, Execution]:
    return {label: create(alice) for label, create in EXECUTION_STATES.items()}


def test_every_frame_the_builders_emit_is_published(executions: dict[str, Execution]) -> None:
    """Each frame matches the published ``WebSocketFrame`` (no key beyond it); stored
    events also match ``EventFrame`` (the events endpoint), the others do not; and
    every frame type the schema lists is built here."""
    built: dict[str, int] = {}
    nulls: set[tuple[str, str]] = set()
    for execution in executions.values():
        events = stored_frames(execution)
        for frame in events:
            assert_matches_component(frame, "EventFrame")
        others = [on_the_wire(opening_status_frame(execution))]
        for frame in events + others:
            assert_frame_shape(frame)
            built[frame["type"]] = built.get(frame["type"], 0) + 1
            for key in ("progress", "error"):
                if key in frame:
                    nulls.add((key, "null" if frame[key] is None else "set"))
        for frame in others:
            assert schema_errors(frame, "EventFrame"), f"a {frame['type']} frame is not a stored event"
    for message, code in ERRORS:
        frame = on_the_wire(error_frame(message, code))
        assert_frame_shape(frame)
        assert frame["code"] == code
        assert schema_errors(frame, "EventFrame"), "an error frame is not a stored event"
        built["error"] = built.get("error", 0) + 1

    assert set(built) == discriminator_types("WebSocketFrame"), built
    assert discriminator_types("EventFrame") == discriminator_types("WebSocketFrame") - {"status", "error"}
    assert nulls == {("progress", "null"), ("progress", "set"), ("error", "null"), ("error", "set")}


def test_status_frame_matches_the_execution(executions: dict[str, Execution]) -> None:
    """The status frame repeats the execution's state: the same values as its REST shape."""
    for execution in executions.values():
        frame = on_the_wire(opening_status_frame(execution))
        shape = on_the_wire(execution_dict(execution))
        assert {key: frame[key] for key in ("execution_id", "status", "progress", "seq")} == {
            key: shape[key] for key in ("execution_id", "status", "progress", "seq")
        }


@pytest.mark.parametrize("label", list(EXECUTION_STATES))
def test_execution_dict_matches_the_execution_component(alice: Any, label: str) -> None:
    execution = EXECUTION_STATES[label](alice)
    assert_matches_component(on_the_wire(execution_dict(execution)), "Execution")


def test_the_component_check_is_strict(alice: Any) -> None:
    """Not vacuous: a wrong type, a missing key, an extra key, a wrong terminal shape are caught."""
    execution = EXECUTION_STATES["completed"](alice)
    shape = on_the_wire(execution_dict(execution))
    terminal = stored_frames(execution)[-1]
    assert schema_errors({**shape, "seq": "7"}, "Execution")
    assert schema_errors({k: v for k, v in shape.items() if k != "error"}, "Execution")
    assert schema_errors({**shape, "surprise": 1}, "Execution")
    assert schema_errors({**terminal, "status": "running"}, "WebSocketFrame")
    assert schema_errors({**terminal, "progress": {"current_step": 1}}, "WebSocketFrame")
    assert schema_errors({k: v for k, v in terminal.items() if k != "outputs"}, "EventFrame")
    assert schema_errors({"type": "status", "message": "x", "timestamp": terminal["timestamp"]}, "WebSocketFrame")
    with pytest.raises(AssertionError):
        assert_frame_shape({**terminal, "timestamp": "2026-01-01T00:00:00+02:00"})
