"""Request validation, and the shapes of every answer and WebSocket frame for the OpenAPI schema.

The request serializers check what a client sends before any service runs.
The others describe answers built elsewhere (``executions.frames``) and exist
for the schema, where a serializer's docstring is its published description.
docs/protocol/rest.md and docs/protocol/frames.md describe the same shapes.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from core.params import MAX_QUERY_INTEGER, parse_seq
from executions.frames import execution_dict
from executions.limits import json_limit_error
from executions.models import TERMINAL_STATUSES, Execution, ExecutionStatus, ExecutionType, StepStatus
from executions.selectors import SORT_FIELDS

MAX_TARGET_ID_LENGTH = 100


class ProgressSerializer(serializers.Serializer):
    """How far a run is: steps finished, the one running, percentage and time left."""

    current_step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    percentage = serializers.FloatField()
    current_step_name = serializers.CharField(allow_null=True)
    eta_seconds = serializers.FloatField(
        allow_null=True,
        min_value=0,
        help_text="Estimated seconds left when this progress was recorded: elapsed running time x (100 - percentage) "
        "/ percentage, to 0.1 s; 0 once completed; null when unknown (no progress yet) or once failed or cancelled",
    )


class ErrorInfoSerializer(serializers.Serializer):
    """Why an execution failed: the exception's class name, its message, and details or null."""

    type = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(allow_null=True)


class HttpUrlField(serializers.URLField):
    """An http(s) URL. Whether its host is public (no SSRF) is the domain's check,
    made by ``execution_create``; this field only checks the form."""

    default_error_messages = {"invalid": "Enter a valid http(s) URL."}

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not value.lower().startswith(("http://", "https://")):
            self.fail("invalid")
        return value


class HttpUrlFieldSchema(OpenApiSerializerFieldExtension):
    """The schema of ``HttpUrlField``: a URL, or an empty string (no callback, like null).

    The branches exclude each other by length (``oneOf``), and ``oneOf`` is the
    only key, so that drf-spectacular's OpenAPI 3.1 output can add ``null`` as a
    third branch for ``allow_null``. It adds it to the list in place: a fresh
    schema per call keeps a second generation from adding a second ``null``
    (which ``extend_schema_field`` with one shared dict did).
    """

    target_class = "executions.api.serializers.HttpUrlField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "string", "format": "uri", "minLength": 1, "maxLength": 2000},
                {"type": "string", "maxLength": 0},
            ]
        }


_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable_text_error(value: Any) -> str | None:
    """A message when a string or key in ``value`` cannot be stored or sent.

    JSON may escape lone surrogates (``"\\ud800"``), which no UTF-8 encoder
    accepts (every answer showing them would fail), and NUL characters, which
    PostgreSQL's ``jsonb`` refuses. Walked without recursion: the depth limit is
    checked afterwards, and that check has to encode the value.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "Null characters are not allowed."
            surrogate = _SURROGATE.search(item)
            if surrogate:
                return f"Surrogate characters are not allowed: U+{ord(surrogate.group()):X}."
    return None


class StrictCharField(serializers.CharField):
    """A JSON string; DRF's CharField would turn ``5`` into ``"5"``."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean; DRF's BooleanField would take ``0``, ``"yes"`` or ``"true"`` too."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.Field):
    """A JSON object within a size and depth limit, checked before anything walks it."""

    default_error_messages = {"not_a_dict": 'Expected an object but got type "{input_type}".'}

    def __init__(self, *, max_bytes_setting: str, **kwargs: Any):
        self.max_bytes_setting = max_bytes_setting
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        max_bytes = getattr(settings, self.max_bytes_setting)
        message = unstorable_text_error(data) or json_limit_error(data, max_bytes=max_bytes)
        if message:
            raise serializers.ValidationError(message)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class ExecutionSubmitSerializer(serializers.Serializer):
    """The body of a submit: which target to run, with what inputs and config."""

    type = serializers.ChoiceField(choices=ExecutionType.choices)
    target_id = StrictCharField(max_length=MAX_TARGET_ID_LENGTH)
    inputs = JSONObjectField(max_bytes_setting="EXECUTION_INPUTS_MAX_BYTES", required=False, default=dict)
    config = JSONObjectField(max_bytes_setting="EXECUTION_CONFIG_MAX_BYTES", required=False, default=dict)
    callback_url = HttpUrlField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=2000,
        help_text="An http(s) URL on a public host; empty or null for none",
    )

    def validate_config(self, value: dict[str, Any]) -> dict[str, Any]:
        if "timeout" in value and value["timeout"] is not None:
            timeout = value["timeout"]
            seconds = math.nan
            if isinstance(timeout, int | float) and not isinstance(timeout, bool):
                try:
                    seconds = float(timeout)
                except OverflowError:  # an integer beyond any float: the runner could not use it
                    seconds = math.inf
            if not (math.isfinite(seconds) and seconds > 0):
                raise serializers.ValidationError({"timeout": ["Must be a number of seconds greater than 0."]})
        return value


class ExecutionSubmittedSerializer(serializers.Serializer):
    """The answer to a submit: the new execution's id, status and URLs."""

    execution_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[ExecutionStatus.PENDING])
    message = serializers.CharField()
    status_url = serializers.CharField()
    progress_url = serializers.CharField()
    ws_url = serializers.CharField()
    created_at = serializers.DateTimeField()


class ExecutionRerunRequestSerializer(serializers.Serializer):
    """The body of a rerun: none (or ``{}``) runs it again from the start."""

    from_failed_step = StrictBooleanField(
        required=False,
        default=False,
        help_text="Resume a failed durable execution from its failed step: the new execution reuses the stored "
        "results of the steps the original completed (400 for any other execution)",
    )


class ExecutionRerunSerializer(ExecutionSubmittedSerializer):
    """The answer to a rerun: a submit's, plus the execution it repeats."""

    rerun_of = serializers.CharField(help_text="The id of the execution this one repeats")


class ExecutionSerializer(serializers.Serializer):
    """An execution: what was started, its state and progress, its outputs or error, and when each change happened."""

    # The docstring is the published description. The answer is built from the model
    # without extra queries, by executions.frames.execution_dict.

    execution_id = serializers.CharField(source="id")
    type = serializers.ChoiceField(choices=ExecutionType.choices)
    target_id = serializers.CharField()
    status = serializers.ChoiceField(choices=ExecutionStatus.choices)
    progress = ProgressSerializer(allow_null=True)
    inputs = serializers.DictField()
    config = serializers.DictField()
    outputs = serializers.DictField(allow_null=True)
    error = ErrorInfoSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    seq = serializers.IntegerField()
    attempt = serializers.IntegerField(
        min_value=1,
        help_text="Which attempt of the execution runs (or ran) it: 1 until a durable run is handed over to "
        "another worker, then 2, 3, ...",
    )
    callback_url = serializers.CharField(allow_null=True)
    rerun_of = serializers.CharField(
        allow_null=True, help_text="The execution this one repeats (POST .../rerun), or null"
    )
    owner = serializers.CharField(help_text="The username of the user who started it")

    def to_representation(self, instance: Execution) -> dict[str, Any]:
        return execution_dict(instance)


class QueryIntegerField(serializers.IntegerField):
    """An integer query parameter written in plain digits (``core.params``)."""

    def to_internal_value(self, data: Any) -> int:
        value = parse_seq(data)
        if value is None:
            self.fail("invalid")
        return super().to_internal_value(value)


class FilterTextField(serializers.CharField):
    """Query text compared with stored values; a NUL character is a miss, not an error.

    No stored value can hold one (submissions refuse it), and the schema declares any
    string, so the filter answers an empty page, as the id path answers 404.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class ExecutionListQuerySerializer(serializers.Serializer):
    """The list's filters, page and order."""

    status = serializers.ChoiceField(choices=ExecutionStatus.values, required=False)
    type = serializers.ChoiceField(choices=ExecutionType.values, required=False)
    target_id = FilterTextField(max_length=MAX_TARGET_ID_LENGTH, required=False)
    page = QueryIntegerField(min_value=1, max_value=1_000_000, default=1)
    page_size = QueryIntegerField(min_value=1, max_value=100, default=50)
    sort = serializers.ChoiceField(choices=SORT_FIELDS, default="created_at")
    order = serializers.ChoiceField(choices=("asc", "desc"), default="desc")


class PaginationSerializer(serializers.Serializer):
    """Where a page of the list stands among all pages."""

    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total_items = serializers.IntegerField()
    total_pages = serializers.IntegerField()
    has_next = serializers.BooleanField()
    has_prev = serializers.BooleanField()
    next_page = serializers.IntegerField(allow_null=True)
    prev_page = serializers.IntegerField(allow_null=True)


class ExecutionListSerializer(serializers.Serializer):
    """One page of executions, with its pagination."""

    executions = ExecutionSerializer(many=True)
    pagination = PaginationSerializer()


class EventsQuerySerializer(serializers.Serializer):
    """Which stored events to return: those after ``after_seq``."""

    after_seq = QueryIntegerField(min_value=0, max_value=MAX_QUERY_INTEGER, default=0)


class CancelledDataSerializer(serializers.Serializer):
    """The cancelled execution: its id, status and when it was cancelled."""

    execution_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[ExecutionStatus.CANCELLED])
    cancelled_at = serializers.DateTimeField()


class CancelResponseSerializer(serializers.Serializer):
    """The answer to a cancel."""

    message = serializers.CharField()
    # A declared field named like Serializer.data: the metaclass moves it to _declared_fields.
    data = CancelledDataSerializer()  # type: ignore[assignment]  # see above


class TargetSerializer(serializers.Serializer):
    """A pipeline or agent that can be started: its steps and accepted inputs."""

    type = serializers.ChoiceField(choices=ExecutionType.choices)
    target_id = serializers.CharField()
    steps = serializers.ListField(child=serializers.CharField(), allow_null=True)
    inputs = serializers.DictField(help_text="A JSON Schema (draft 2020-12) of the accepted inputs")
    description = serializers.CharField()


class TargetListSerializer(serializers.Serializer):
    """Every target that can be started."""

    targets = TargetSerializer(many=True)


# --- Frames: what the WebSocket sends (executions.frames builds them) ---------------------------
# The events endpoint answers with the stored ones (EventFrame); the WebSocket also
# sends a status frame first and an error frame before refusing (WebSocketFrame,
# published through the events operation, see executions.api.schema). The protocol
# is in docs/protocol/websocket.md.

TERMINAL_TYPES = sorted(str(status) for status in TERMINAL_STATUSES)


class StatusFrameSerializer(serializers.Serializer):
    """The first frame of a stream: the execution's current state."""

    type = serializers.ChoiceField(choices=["status"])
    execution_id = serializers.CharField()
    status = serializers.ChoiceField(choices=ExecutionStatus.choices)
    progress = ProgressSerializer(allow_null=True)
    seq = serializers.IntegerField(min_value=0, help_text="The last event this state includes (0 while pending)")
    timestamp = serializers.DateTimeField()


class StartedFrameSerializer(serializers.Serializer):
    """The execution began running (pending -> running)."""

    type = serializers.ChoiceField(choices=["started"])
    execution_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[ExecutionStatus.RUNNING])
    seq = serializers.IntegerField(min_value=1)
    timestamp = serializers.DateTimeField()


class ProgressFrameSerializer(StartedFrameSerializer):
    """The execution's progress changed."""

    type = serializers.ChoiceField(choices=["progress"])
    progress = ProgressSerializer()


class ResumedFrameSerializer(StartedFrameSerializer):
    """A durable run was taken up by another worker (its worker was lost or stopped): it goes on from here."""

    type = serializers.ChoiceField(choices=["resumed"])
    progress = ProgressSerializer(help_text="At the resume point: `current_step` is the number of steps completed")
    attempt = serializers.IntegerField(min_value=2, help_text="The attempt that took the run up")


class TerminalFrameSerializer(StartedFrameSerializer):
    """The execution ended: always the last event."""

    type = serializers.ChoiceField(choices=TERMINAL_TYPES)
    status = serializers.ChoiceField(choices=TERMINAL_TYPES, help_text="The same as type")
    progress = ProgressSerializer(allow_null=True)
    outputs = serializers.DictField(allow_null=True)
    error = ErrorInfoSerializer(allow_null=True)


class ErrorFrameSerializer(serializers.Serializer):
    """The socket cannot serve this request (then an application close code), or the client sent a message."""

    type = serializers.ChoiceField(choices=["error"])
    message = serializers.CharField(help_text="For people: clients read `code`, never this text")
    code = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "The close code that follows (4400, 4401, 4403, 4404); null when the socket stays open "
            '(the answer to a message from the client, "Unsupported message")'
        ),
    )
    timestamp = serializers.DateTimeField()


class SnapshotFrameSerializer(serializers.Serializer):
    """The first frame of the execution feed: the executions not ended yet, newest first (at most 100)."""

    type = serializers.ChoiceField(choices=["snapshot"])
    executions = ExecutionSerializer(many=True)
    timestamp = serializers.DateTimeField()


class CreatedFrameSerializer(serializers.Serializer):
    """An execution the execution feed follows from now on: just submitted, as a rule."""

    type = serializers.ChoiceField(choices=["created"])
    execution_id = serializers.CharField()
    execution = ExecutionSerializer()
    timestamp = serializers.DateTimeField()


EVENT_FRAME_SERIALIZERS: dict[str, serializers.Serializer[Any] | type[serializers.Serializer[Any]]] = {
    "started": StartedFrameSerializer,
    "progress": ProgressFrameSerializer,
    "resumed": ResumedFrameSerializer,
    **dict.fromkeys(TERMINAL_TYPES, TerminalFrameSerializer),
}
WEBSOCKET_FRAME_SERIALIZERS: dict[str, serializers.Serializer[Any] | type[serializers.Serializer[Any]]] = {
    "status": StatusFrameSerializer,
    **EVENT_FRAME_SERIALIZERS,
    "error": ErrorFrameSerializer,
}

#: Every frame the WebSocket sends, by its ``type``.
WEBSOCKET_FRAME = PolymorphicProxySerializer(
    component_name="WebSocketFrame",
    serializers=WEBSOCKET_FRAME_SERIALIZERS,
    resource_type_field_name="type",
)


#: Every frame the execution feed (WS /api/v1/executions/ws) sends, by its ``type``.
EXECUTION_FEED_FRAME = PolymorphicProxySerializer(
    component_name="ExecutionFeedFrame",
    serializers={
        "snapshot": SnapshotFrameSerializer,
        "created": CreatedFrameSerializer,
        **EVENT_FRAME_SERIALIZERS,
        "error": ErrorFrameSerializer,
    },
    resource_type_field_name="type",
)


class EventsSerializer(serializers.Serializer):
    """An execution's stored events."""

    events = serializers.ListField(
        child=PolymorphicProxySerializer(
            component_name="EventFrame",
            serializers=EVENT_FRAME_SERIALIZERS,
            resource_type_field_name="type",
        ),
        help_text="The stored events, oldest first; each exactly the WebSocket frame",
    )


# --- Steps ------------------------------------------------------------------------------


class StepSerializer(serializers.Serializer):
    """One declared step of an execution: its state, the attempt that ran it last, and when."""

    name = serializers.CharField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    attempt = serializers.IntegerField(min_value=1, allow_null=True, help_text="Null for a step that never ran")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    reused_from = serializers.CharField(
        allow_null=True,
        help_text="The execution whose stored result this step reused (resume from the failed step), or null",
    )


class StepsSerializer(serializers.Serializer):
    """An execution's declared steps, in order, durable or not."""

    steps = StepSerializer(many=True)


# --- Errors ------------------------------------------------------------------------------


class DetailSerializer(serializers.Serializer):
    """An error: ``detail`` says what went wrong."""

    detail = serializers.CharField()


class ValidationErrorSerializer(serializers.Serializer):
    """A 400: ``errors`` maps fields to messages; a body that is not JSON has only ``detail``."""

    detail = serializers.CharField()
    # A declared field named like Serializer.errors: the metaclass moves it to _declared_fields.
    errors = serializers.DictField(required=False)  # type: ignore[assignment]  # see above
