"""Frame shapes, checked against the published OpenAPI schema; shared by the
consumer, end-to-end and schema tests.

The keys and types of every frame are written once, in the OpenAPI components
that ``executions.api.serializers`` declares and /api/v1/schema publishes
(``WebSocketFrame``: every frame the WebSocket sends, by ``type``). Tests read
them from the generated document instead of restating them; the protocol
itself is described in docs/protocol/frames.md. What a schema
cannot say (UTC timestamps, a percentage within 0..100, a step within the
total, a terminal status equal to the frame's type) is checked here.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from datetime import datetime
from typing import Any

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS31Validator

from executions.models import TERMINAL_EVENT_TYPES
from tests.helpers import ANY_ETA

#: The frame types that end a stream (the server's constant: the schema checks its frames).
TERMINAL_TYPES = frozenset(str(t) for t in TERMINAL_EVENT_TYPES)
#: The close codes an ``error`` frame may announce (docs/protocol/frames.md, "Close codes");
#: None for the one after which the socket stays open ("Unsupported message").
ERROR_CODES = frozenset({None, 4400, 4401, 4403, 4404})
COMPONENT_REF = "#/components/schemas/{}"
#: drf-spectacular loads its extensions' classes during the first generation, and two
#: generations at once race there (one sees the other's half-loaded class): the live
#: tests' watcher threads check their first frames at the same moment.
_generating = threading.Lock()


@functools.cache
def published_schema() -> dict[str, Any]:
    """The OpenAPI document that /api/v1/schema serves, as plain JSON, generated once.

    Rendered through drf-spectacular's JSON renderer, as the view does, so the
    lazy strings and other objects of the generated tree become what a client reads.
    """
    with _generating:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy in which every object schema that lists its ``properties`` allows no others.

    Only for tests: it makes the check "nothing undocumented is sent" while the
    published schema stays open to additions. It adds a constraint and removes
    none, so whatever passes the closed copy passes the published one. Sound
    for this schema because no object is composed from parts (``allOf``).
    """
    result = copy.deepcopy(schema)
    pending: list[Any] = [result]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return result


@functools.cache
def component_validator(name: str) -> OAS31Validator:
    """A strict validator (OpenAPI 3.1's JSON Schema dialect, formats checked) for one
    component of the published schema, closed to undocumented keys (see ``closed``)."""
    schema = published_schema()
    assert schema["openapi"].startswith("3.1"), "the components are validated with the 3.1 dialect"
    components = closed({"components": schema["components"]})["components"]
    assert name in components["schemas"], f"no component {name!r} in the published schema"
    root = {"$ref": COMPONENT_REF.format(name), "components": components}
    return OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)


def schema_errors(value: Any, component: str) -> list[str]:
    """Why ``value`` does not match the published ``component`` (empty when it does)."""
    errors = list(component_validator(component).iter_errors(value))
    if not errors:
        return []
    # The most relevant first: oneOf failures otherwise bury the real cause.
    first = best_match(errors)
    return [f"{'/'.join(map(str, first.absolute_path)) or '<root>'}: {first.message}"] + [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in errors
        if error is not first
    ]


def assert_matches_component(value: Any, component: str) -> None:
    errors = schema_errors(value, component)
    assert not errors, f"{component} does not describe {value!r}:\n" + "\n".join(errors)


def assert_timestamp_is_utc(stamp: Any) -> None:
    assert isinstance(stamp, str) and stamp.endswith(("Z", "+00:00")), stamp
    offset = datetime.fromisoformat(stamp.replace("Z", "+00:00")).utcoffset()
    assert offset is not None and offset.total_seconds() == 0, stamp


def assert_progress_is_consistent(progress: dict[str, Any]) -> None:
    assert 0 <= progress["percentage"] <= 100, progress
    assert 0 <= progress["current_step"] <= progress["total_steps"], progress


def assert_frame_shape(frame: dict[str, Any]) -> None:
    """The frame is one the published ``WebSocketFrame`` describes (no other key), with a
    UTC timestamp, a consistent progress, a terminal status equal to its type, a
    ``resumed`` frame's progress at a resume point, and an error's ``code`` one of the
    contract's close codes."""
    assert_matches_component(frame, "WebSocketFrame")
    assert_timestamp_is_utc(frame["timestamp"])
    if frame.get("progress") is not None:
        assert_progress_is_consistent(frame["progress"])
    if frame["type"] in TERMINAL_TYPES:
        assert frame["status"] == frame["type"], frame
    if frame["type"] == "resumed":  # at the resume point: steps completed, none running yet
        assert frame["progress"]["current_step_name"] is None, frame
    if frame["type"] == "error":
        assert frame["code"] in ERROR_CODES, frame


def assert_feed_frame_shape(frame: dict[str, Any]) -> None:
    """A frame of the execution feed, as the published ``ExecutionFeedFrame`` describes
    it (no other key); the event frames among them are also exactly per-execution frames."""
    assert_matches_component(frame, "ExecutionFeedFrame")
    assert_timestamp_is_utc(frame["timestamp"])
    executions = frame.get("executions", []) + ([frame["execution"]] if "execution" in frame else [])
    for execution in executions:
        if execution["progress"] is not None:
            assert_progress_is_consistent(execution["progress"])
    if frame["type"] == "created":
        assert frame["execution_id"] == frame["execution"]["execution_id"], frame
    elif frame["type"] != "snapshot":
        assert_frame_shape(frame)


def step_progress(k: int, total: int) -> dict[str, Any]:
    """The progress of entering step ``k`` (1-based) of ``total`` in ``demo_steps`` (the
    estimate is null at 0 %, and depends on the clock after)."""
    percentage = (k - 1) / total * 100
    return {
        "current_step": k - 1,
        "total_steps": total,
        "percentage": percentage,
        "current_step_name": f"step_{k}",
        "eta_seconds": None if percentage == 0 else ANY_ETA,
    }


def final_progress(total: int) -> dict[str, Any]:
    return {
        "current_step": total, "total_steps": total, "percentage": 100.0, "current_step_name": None, "eta_seconds": 0.0
    }
