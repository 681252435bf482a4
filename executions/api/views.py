"""REST views (docs/protocol/rest.md): each parses input, calls one service or selector, and renders.

The logic lives in the domain (``executions.services``, ``selectors``). No view
catches a domain error: ``executions.api.errors`` answers each one, the same
for every view.
"""

from __future__ import annotations

import math
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.parsers import SafeJSONParser
from core.throttles import CancelThrottle, SubmitThrottle, TokenThrottle
from executions.frames import execution_dict, iso
from executions.idempotency import idempotency_key_error, request_fingerprint
from executions.models import Execution, ExecutionStatus
from executions.registry import all_targets
from executions.selectors import event_frames_after, execution_get_for_user, execution_list_for_user
from executions.services import execution_cancel, execution_rerun, execution_submit
from executions.steps import execution_steps, step_dict

from .schema import (
    FEED_WEBSOCKET_DESCRIPTION,
    FEED_WEBSOCKET_PATH,
    IDEMPOTENCY_KEY_DESCRIPTION,
    IDEMPOTENCY_KEY_SCHEMA,
)
from .serializers import (
    EXECUTION_FEED_FRAME,
    WEBSOCKET_FRAME,
    CancelResponseSerializer,
    DetailSerializer,
    EventsQuerySerializer,
    EventsSerializer,
    ExecutionListQuerySerializer,
    ExecutionListSerializer,
    ExecutionRerunRequestSerializer,
    ExecutionRerunSerializer,
    ExecutionSerializer,
    ExecutionSubmitSerializer,
    ExecutionSubmittedSerializer,
    ProgressSerializer,
    StepsSerializer,
    TargetListSerializer,
    ValidationErrorSerializer,
)

API_PREFIX = "/api/v1"

# Schema: errors implied by a view's configuration (401, 403, 404, 406, 413, 415,
# 429) are added by executions.api.schema.ApiAutoSchema; views declare only the rest.
# The submit examples also seed Schemathesis with bodies that start real runs.
SUBMIT_EXAMPLES = [
    OpenApiExample(
        "Demo pipeline",
        value={"type": "pipeline", "target_id": "demo_steps", "inputs": {"steps": 3, "step_seconds": 0.5}},
        request_only=True,
    ),
    OpenApiExample(
        "Customer service pipeline",
        value={
            "type": "pipeline",
            "target_id": "customer_service_flow",
            "inputs": {"customer_query": "Where is my order?"},
        },
        request_only=True,
    ),
    OpenApiExample(
        "Echo agent with a timeout",
        value={"type": "agent", "target_id": "echo", "inputs": {"message": "hello"}, "config": {"timeout": 30}},
        request_only=True,
    ),
]


class ExecutionNotFound(NotFound):
    """The 404 of an execution that is missing or someone else's (the two are indistinguishable)."""

    def __init__(self, execution_id: str):
        super().__init__(f"Execution '{execution_id}' not found")


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
#: Set on an answer repeated for an Idempotency-Key (the execution was made by an earlier request).
REPLAYED_HEADER = "Idempotent-Replayed"


def execution_urls(execution_id: str) -> dict[str, str]:
    """The absolute paths of an execution's status, progress and WebSocket."""
    base = f"{API_PREFIX}/executions/{execution_id}"
    return {"status_url": base, "progress_url": f"{base}/progress", "ws_url": f"{base}/progress/ws"}


def submitted_body(execution: Execution) -> dict[str, Any]:
    """The answer to a submit: the same for a repeat with its Idempotency-Key (status as it was then)."""
    return {
        "execution_id": execution.id,
        "status": ExecutionStatus.PENDING,
        "message": "Execution submitted",
        **execution_urls(execution.id),
        "created_at": iso(execution.created_at),
    }


def idempotency_key(request: Request) -> str:
    """The request's Idempotency-Key ('' when absent); 400 for one that is not 1-255 printable ASCII."""
    raw = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if raw is None:
        return ""
    # WSGI/ASGI hand headers over as latin-1 text: anything beyond ASCII shows as such.
    message = idempotency_key_error(raw)
    if message:
        raise ValidationError({IDEMPOTENCY_KEY_HEADER: [message]})
    return raw


def validated_query(request: Request, serializer_class: type) -> dict[str, Any]:
    """Query parameters through a serializer; a parameter given twice is refused."""
    repeated = {
        key: ["Give this parameter once."] for key in request.query_params if len(request.query_params.getlist(key)) > 1
    }
    if repeated:
        raise ValidationError(repeated)
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ExecutionScopedView(APIView):
    """A view of one execution: the ones the user may not see are a 404."""

    def get_execution(self, request: Request, execution_id: str) -> Execution:
        """The execution if the user may see it; :class:`ExecutionNotFound` otherwise."""
        execution = execution_get_for_user(user=request.user, execution_id=execution_id)
        if execution is None:
            raise ExecutionNotFound(execution_id)
        return execution


class ExecutionCollectionView(APIView):
    """The executions: list them, or submit a new one."""

    throttle_classes = [SubmitThrottle]
    #: A submit hands a task to the broker: 503 while it is unreachable (documented by the schema).
    queues_work_on = ("POST",)
    # The execution feed streams this list live: its frames are
    # published with the list operation (executions.api.schema.ApiAutoSchema).
    websocket_frames = EXECUTION_FEED_FRAME
    websocket_path = FEED_WEBSOCKET_PATH
    websocket_description = FEED_WEBSOCKET_DESCRIPTION

    @extend_schema(
        operation_id="executions_list",
        parameters=[ExecutionListQuerySerializer],
        responses={
            200: ExecutionListSerializer,
            400: OpenApiResponse(ValidationErrorSerializer, description="Bad filter or page values"),
        },
    )
    def get(self, request: Request) -> Response:
        """List the user's executions (staff: everyone's), filtered, sorted and paginated."""
        query = validated_query(request, ExecutionListQuerySerializer)
        page, page_size = query.pop("page"), query.pop("page_size")
        executions = execution_list_for_user(user=request.user, **query)
        total = executions.count()
        total_pages = math.ceil(total / page_size)
        start = (page - 1) * page_size
        items = list(executions[start : start + page_size]) if start < total else []
        return Response(
            {
                "executions": [execution_dict(e) for e in items],
                "pagination": {
                    "page": page,
                    "page_size": page_size,
                    "total_items": total,
                    "total_pages": total_pages,
                    "has_next": page < total_pages,
                    "has_prev": page > 1,
                    "next_page": page + 1 if page < total_pages else None,
                    "prev_page": page - 1 if page > 1 else None,
                },
            }
        )

    @extend_schema(
        operation_id="executions_create",
        request=ExecutionSubmitSerializer,
        examples=SUBMIT_EXAMPLES,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_KEY_HEADER,
                type=IDEMPOTENCY_KEY_SCHEMA,
                location=OpenApiParameter.HEADER,
                required=False,
                description=IDEMPOTENCY_KEY_DESCRIPTION,
            ),
            OpenApiParameter(
                REPLAYED_HEADER,
                type=str,
                enum=["true"],
                location=OpenApiParameter.HEADER,
                response=[202],
                required=False,
                description=(
                    "Present on a repeat answered for its Idempotency-Key: an earlier request made the execution"
                ),
            ),
        ],
        responses={
            202: ExecutionSubmittedSerializer,
            400: OpenApiResponse(ValidationErrorSerializer, description="Invalid body, inputs or Idempotency-Key"),
            404: OpenApiResponse(DetailSerializer, description="Unknown pipeline or agent"),
            409: OpenApiResponse(DetailSerializer, description="The Idempotency-Key was used with another body"),
        },
    )
    def post(self, request: Request) -> Response:
        """Submit an execution of a pipeline or agent; it runs in a worker."""
        key = idempotency_key(request)
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
        serializer = ExecutionSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        assert request.user.is_authenticated, "IsAuthenticated let it in"
        submission = execution_submit(
            owner=request.user,
            type=data["type"],
            target_id=data["target_id"],
            inputs=data["inputs"],
            config=data["config"],
            callback_url=data.get("callback_url") or "",
            idempotency_key=key,
            request_fingerprint=request_fingerprint(request.data) if key else "",
        )
        headers = {REPLAYED_HEADER: "true"} if submission.replayed else None
        return Response(submitted_body(submission.execution), status=status.HTTP_202_ACCEPTED, headers=headers)


class ExecutionDetailView(ExecutionScopedView):
    """One execution."""

    @extend_schema(operation_id="executions_retrieve", responses={200: ExecutionSerializer})
    def get(self, request: Request, execution_id: str) -> Response:
        """The execution: its state, progress, outputs or error."""
        return Response(execution_dict(self.get_execution(request, execution_id)))


class ExecutionProgressView(ExecutionScopedView):
    """One execution's progress."""

    @extend_schema(
        operation_id="executions_progress",
        responses={
            200: ProgressSerializer,
            204: OpenApiResponse(description="No progress yet (pending, or cancelled before it started)"),
        },
    )
    def get(self, request: Request, execution_id: str) -> Response:
        """The execution's progress; 204 while it has none."""
        execution = self.get_execution(request, execution_id)
        if execution.progress is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(execution.progress)


class ExecutionCancelView(ExecutionScopedView):
    """Cancel one execution."""

    throttle_classes = [CancelThrottle]

    @extend_schema(
        operation_id="executions_cancel",
        request=None,
        responses={
            200: CancelResponseSerializer,
            400: OpenApiResponse(DetailSerializer, description="Already ended (completed, failed or cancelled)"),
        },
    )
    def post(self, request: Request, execution_id: str) -> Response:
        """Cancel a pending or running execution; a running step is interrupted."""
        execution = self.get_execution(request, execution_id)
        execution_cancel(execution_id=execution.id)
        execution.refresh_from_db(fields=["status", "cancelled_at"])
        return Response(
            {
                "message": "Execution cancelled successfully",
                "data": {
                    "execution_id": execution.id,
                    "status": execution.status,
                    "cancelled_at": iso(execution.cancelled_at),
                },
            }
        )


class ExecutionRerunView(ExecutionScopedView):
    """Run one execution again."""

    throttle_classes = [SubmitThrottle]
    queues_work_on = ("POST",)

    @extend_schema(
        operation_id="executions_rerun",
        request=ExecutionRerunRequestSerializer,
        responses={
            202: ExecutionRerunSerializer,
            400: OpenApiResponse(
                ValidationErrorSerializer,
                description="The original's inputs are no longer valid for its target; or `from_failed_step` on an "
                "execution that is not a failed durable one",
            ),
            404: OpenApiResponse(
                DetailSerializer,
                description="Unknown execution, or someone else's; or its pipeline or agent is no longer registered",
            ),
        },
    )
    def post(self, request: Request, execution_id: str) -> Response:
        """Submit a new execution of the same target, with the original's inputs and config.

        With ``{"from_failed_step": true}``, a failed durable execution resumes
        from its failed step, reusing the stored results of the steps before it.
        """
        original = self.get_execution(request, execution_id)
        body = ExecutionRerunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        assert request.user.is_authenticated, "IsAuthenticated let it in"
        execution = execution_rerun(
            original=original, owner=request.user, from_failed_step=body.validated_data["from_failed_step"]
        )
        return Response({**submitted_body(execution), "rerun_of": original.id}, status=status.HTTP_202_ACCEPTED)


class ExecutionStepsView(ExecutionScopedView):
    """One execution's steps."""

    @extend_schema(operation_id="executions_steps", responses={200: StepsSerializer})
    def get(self, request: Request, execution_id: str) -> Response:
        """Every declared step, in order, with its status and the attempt that ran it, durable or not."""
        execution = self.get_execution(request, execution_id)
        return Response({"steps": [step_dict(step) for step in execution_steps(execution)]})


class ExecutionEventsView(ExecutionScopedView):
    """One execution's stored events."""

    # Its events are the WebSocket's frames: its operation also publishes the schema of
    # every frame the WebSocket sends (executions.api.schema.ApiAutoSchema).
    websocket_frames = WEBSOCKET_FRAME

    @extend_schema(
        operation_id="executions_events",
        parameters=[EventsQuerySerializer],
        responses={
            200: EventsSerializer,
            400: OpenApiResponse(ValidationErrorSerializer, description="after_seq is not an integer in 0..10^18-1"),
        },
    )
    def get(self, request: Request, execution_id: str) -> HttpResponse:
        """The stored events, oldest first, each exactly its WebSocket frame; only those after ``after_seq``."""
        execution = self.get_execution(request, execution_id)
        after_seq = validated_query(request, EventsQuerySerializer)["after_seq"]
        frames = event_frames_after(execution_id=execution.id, after_seq=after_seq)
        # The stored frames are already JSON: join them instead of re-encoding.
        body = '{"events":[' + ",".join(frame for _, _, frame in frames) + "]}"
        return HttpResponse(body, content_type="application/json")


class TargetListView(APIView):
    """What can be started."""

    @extend_schema(operation_id="targets_list", responses={200: TargetListSerializer})
    def get(self, request: Request) -> Response:
        """Every registered pipeline and agent: its steps and the JSON Schema of its inputs."""
        return Response(
            {
                "targets": [
                    {
                        "type": target.type,
                        "target_id": target.target_id,
                        "steps": target.static_steps,
                        "inputs": target.input_schema(),
                        "description": target.description,
                    }
                    for target in all_targets()
                ]
            }
        )


class TokenView(ObtainAuthToken):
    """DRF's obtain_auth_token, JSON only, and open to anyone with a username and password."""

    # ObtainAuthToken sets DRF's plain JSONParser (and form parsers): deeply
    # nested JSON would then be a RecursionError's 500.
    parser_classes = [SafeJSONParser]
    # No authentication: a client holding a stale token (or a browser session
    # without the CSRF token) can still exchange its password for a token,
    # instead of getting 401/403 from the credentials it is trying to replace.
    authentication_classes: list[type] = []
    throttle_classes = [TokenThrottle]

    @extend_schema(
        operation_id="auth_token",
        request=inline_serializer(
            "TokenRequest", {"username": serializers.CharField(), "password": serializers.CharField()}
        ),
        responses={
            200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
            400: OpenApiResponse(ValidationErrorSerializer, description="Missing fields or bad credentials"),
        },
        auth=[],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Exchange a username and password for the user's API token."""
        return super().post(request, *args, **kwargs)
