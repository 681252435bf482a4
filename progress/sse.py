"""Server-Sent Events: an execution's frames over plain HTTP (docs/protocol/sse.md).

``GET /api/v1/executions/{id}/progress/stream[?after_seq=N]`` answers
``text/event-stream``: each WebSocket frame, byte for byte, is one event
(``id: <seq>``, ``event: <type>``, ``data: <the frame's JSON>``), with the
WebSocket's guarantees, kept by the same code (``progress.streams``).
Refusals before the stream starts are the REST API's JSON answers (401, 400,
404, in the socket's order); once it streams, an ``error`` event carrying the
close code ends it. Every stream opens with a ``retry:`` field; a resume at or
past the terminal event is answered 204 (what stops a browser's EventSource);
a draining server ends the stream after its last whole event, and the client
comes back with ``Last-Event-ID``. Served asynchronously: an open stream holds no thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views import View
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from core.db import read_db
from core.params import parse_seq
from core.serving import drain
from executions.frames import dumps, error_frame
from executions.models import TERMINAL_STATUSES
from executions.selectors import execution_get_for_user

from .protocol import (
    EVENT_MESSAGE_TYPE,
    GROUPABLE_ID,
    LAYER_RECONNECTED_TYPE,
    EventMessage,
    Refusal,
    execution_group,
    not_found,
)
from .streams import ExecutionStream, StreamFrame, read_opening

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/event-stream"
KEEPALIVE = ": keep-alive\n\n"
#: How long to wait before listening again when the channel layer's receive fails
#: (channels-redis's layers raise while Redis is away; the periodic re-check still runs).
RECEIVE_RETRY_SECONDS = 1.0
INVALID_SEQ_MESSAGE = "A whole number from 0 to 10^18-1 is required."


def retry_field() -> str:
    """The first lines of every stream: how long an EventSource waits before it reconnects."""
    return f"retry: {round(settings.PROGRESS_SSE_RETRY_SECONDS * 1000)}\n\n"


def sse_event(frame: StreamFrame) -> str:
    """One frame as an event. Its JSON text holds no line break (``json.dumps`` escapes
    them), so it is one ``data:`` line and the client reads back the same bytes."""
    head = f"id: {frame.seq}\n" if frame.seq is not None else ""
    return f"{head}event: {frame.type}\ndata: {frame.text}\n\n"


def error_frame_of(refusal: Refusal) -> StreamFrame:
    """The ``error`` event that ends an open stream: the WebSocket's frame, with its close code."""
    return StreamFrame(dumps(error_frame(refusal.message, refusal.code)), None, "error")


# --- refusals: the REST API's JSON answers ------------------------------------------------


#: Rendered as DRF's JSONRenderer does (compact, UTF-8), like every other API answer.
JSON_STYLE = {"separators": (",", ":"), "ensure_ascii": False}


def refusal(status: int, detail: str, **extra: Any) -> JsonResponse:
    """A JSON answer with ``detail``, as the REST API gives."""
    return JsonResponse({"detail": detail, **extra}, status=status, json_dumps_params=JSON_STYLE)


def execution_not_found(execution_id: str) -> JsonResponse:
    """The 404 of an unknown execution, or someone else's."""
    return refusal(404, not_found(execution_id).message)


def invalid(name: str) -> JsonResponse:
    """The 400 of a resume point that is not plain digits."""
    return refusal(400, f"Invalid {name}", errors={name: [INVALID_SEQ_MESSAGE]})


async def authenticate(request: HttpRequest) -> tuple[Any, str | None] | JsonResponse:
    """(user, token key or None for a session), or the 401 DRF would answer.

    Through DRF's own authenticators (token first, then the session), so the
    rules and messages are the REST API's; run in a pool thread, as they read
    the database.
    """
    authenticators = APIView().get_authenticators()  # DEFAULT_AUTHENTICATION_CLASSES, instantiated
    drf_request = Request(request, authenticators=authenticators)

    def user_of_request() -> Any:
        return drf_request.user

    try:
        user = await read_db(user_of_request)()
    except exceptions.AuthenticationFailed as exc:
        detail = str(exc.detail)
    else:
        if user is not None and user.is_authenticated:
            return user, getattr(drf_request.auth, "key", None)
        detail = str(exceptions.NotAuthenticated.default_detail)
    response = refusal(401, detail)
    header = authenticators[0].authenticate_header(drf_request) if authenticators else None
    if header:
        response["WWW-Authenticate"] = header
    return response


def resume_point(request: HttpRequest) -> tuple[int | None, JsonResponse | None]:
    """Where to resume (None: from a ``status`` snapshot), or the 400 to answer.

    ``Last-Event-ID`` wins over ``after_seq``: a browser reconnecting to
    ``...?after_seq=N`` sends the URL unchanged, with the newer id in the header.
    """
    after_seq = None
    values = request.GET.getlist("after_seq")
    if values:
        after_seq = parse_seq(values[0]) if len(values) == 1 else None
        if after_seq is None:
            return None, invalid("after_seq")
    last_event_id = request.headers.get("Last-Event-ID", "").strip()
    if last_event_id:
        after_seq = parse_seq(last_event_id)
        if after_seq is None:
            return None, invalid("Last-Event-ID")
    return after_seq, None


# --- the stream ---------------------------------------------------------------------------


def release_request_thread() -> None:
    """Let the request's own sync thread go for as long as the response streams.

    Django serves each ASGI request inside an ``asgiref`` ``ThreadSensitiveContext``:
    the request's first thread-sensitive sync call (its ``request_started``
    receivers, at least) starts a one-thread executor that lives until the
    request ends; for a stream, until the stream ends, so each open stream would
    keep an idle thread. Nothing
    here needs it once streaming starts (reads go to the shared pool,
    ``read_db``), so it is shut down; a thread-sensitive call after this
    (Django's ``request_finished`` receivers) gets a fresh one for that moment,
    shut down when the request ends. tests/e2e/test_sse.py counts daphne's threads.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return  # no per-request context, or one whose executor its caller owns
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)


async def event_stream(
    *, user: Any, token_key: str | None, session_key: str | None, execution_id: str, after_seq: int | None
) -> AsyncIterator[str]:
    """The response body: the opening, then live events and keep-alives, until the terminal event.

    The stream (``progress.streams.ExecutionStream``) puts its frames in
    ``ready`` and sets ``woken``: from the channel layer's messages handled
    here, and from the process's periodic re-check (``progress.recheck``),
    which runs in its own task and may send stored events or end the stream
    (access lost: an ``error`` event) while this generator waits.

    Joins the group here rather than in the view, so that the ``finally``
    below always leaves it, whenever the client goes away (Django cancels
    the response, or closes this generator).
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = execution_group(execution_id)
    ready: list[StreamFrame] = []
    woken = asyncio.Event()
    restarting = False

    async def collect(frame: StreamFrame) -> None:
        ready.append(frame)
        woken.set()

    async def ended() -> None:
        """The terminal event is among ``ready``: the loop below sends it and stops."""

    async def lost(refusal: Refusal) -> None:
        await collect(error_frame_of(refusal))

    def end_for_restart() -> None:
        """The server drains: end after the events already due; the client resumes elsewhere."""
        nonlocal restarting
        restarting = True
        woken.set()

    def flush() -> str:
        text = "".join(sse_event(frame) for frame in ready)
        ready.clear()
        return text

    stream = ExecutionStream(
        execution_id,
        user_pk=user.pk,
        token_key=token_key,
        session_key=session_key,
        send=collect,
        on_terminal=ended,
        on_lost=lost,
    )
    receiving: asyncio.Future[dict[str, Any]] | None = None
    waking: asyncio.Future[Any] | None = None
    forget_drain = drain.add_stream(end_for_restart)
    release_request_thread()  # the view and the middleware are done with it
    try:
        yield retry_field()
        await layer.group_add(group, channel)
        opening = await read_db(read_opening)(user=user, execution_id=execution_id, after_seq=after_seq)
        if opening is None:  # gone since the view looked (deleted, or access revoked)
            yield sse_event(error_frame_of(not_found(execution_id)))
            return
        await stream.start(opening)  # joins the re-check unless the opening ended the stream

        loop = asyncio.get_running_loop()
        keepalive_every = settings.PROGRESS_SSE_KEEPALIVE_SECONDS
        next_keepalive = loop.time() + keepalive_every
        receiving = asyncio.ensure_future(layer.receive(channel))
        while True:
            woken.clear()
            if ready:
                yield flush()
            if stream.finished or restarting:
                return
            now = loop.time()
            if now >= next_keepalive:
                next_keepalive = now + keepalive_every
                yield KEEPALIVE
                continue
            waking = asyncio.ensure_future(woken.wait())
            # Not cancelled on a timeout: cancelling a receive makes the hub forget the channel.
            done, _ = await asyncio.wait(
                {receiving, waking}, timeout=next_keepalive - now, return_when=asyncio.FIRST_COMPLETED
            )
            waking.cancel()
            if receiving in done:
                message = await received(receiving)
                receiving = asyncio.ensure_future(layer.receive(channel))
                if message is not None:
                    await dispatch(stream, message)
    finally:
        forget_drain()
        stream.stop()
        for future in (receiving, waking):
            if future is not None:
                future.cancel()
        await layer.group_discard(group, channel)


async def received(receiving: asyncio.Future[dict[str, Any]]) -> dict[str, Any] | None:
    """The message, or None when the layer failed (logged; the periodic re-check covers the gap)."""
    try:
        return receiving.result()
    except Exception:  # noqa: BLE001 - e.g. channels-redis while Redis is away
        logger.warning("channel layer receive failed; listening again in %g s", RECEIVE_RETRY_SECONDS, exc_info=True)
        await asyncio.sleep(RECEIVE_RETRY_SECONDS)
        return None


async def dispatch(stream: ExecutionStream, message: dict[str, Any]) -> None:
    """A channel-layer message, to the stream: a recorded event, or the layer's reconnect."""
    if message.get("type") == EVENT_MESSAGE_TYPE:
        await stream.event(cast(EventMessage, message))
    elif message.get("type") == LAYER_RECONNECTED_TYPE:
        await stream.catch_up()


class ExecutionProgressStreamView(View):
    """``GET .../progress/stream``: checks in the WebSocket's order, then the event stream."""

    http_method_names = ["get", "options"]

    async def get(self, request: HttpRequest, execution_id: str) -> HttpResponseBase:
        """401, 400, 404 (in that order), 204 for a resume past the end, or the event stream."""
        authenticated = await authenticate(request)
        if isinstance(authenticated, HttpResponse):
            return authenticated
        user, token_key = authenticated
        after_seq, refused = resume_point(request)
        if refused is not None:
            return refused
        if not GROUPABLE_ID.fullmatch(execution_id):
            return execution_not_found(execution_id)  # no execution has such an id
        execution = await read_db(execution_get_for_user)(user=user, execution_id=execution_id)
        if execution is None:
            return execution_not_found(execution_id)
        if after_seq is not None and execution.status in TERMINAL_STATUSES and after_seq >= execution.seq:
            # The client has the terminal event: the standard's one way to stop an EventSource.
            return HttpResponse(status=204)
        session_key = None if token_key is not None else request.session.session_key
        response = StreamingHttpResponse(
            event_stream(
                user=user, token_key=token_key, session_key=session_key, execution_id=execution_id, after_seq=after_seq
            ),
            content_type=CONTENT_TYPE,
        )
        # Nothing between here and the client may hold events back or replay them.
        response["Cache-Control"] = "no-cache, no-store"
        response["X-Accel-Buffering"] = "no"
        # The connection ends with the stream. Kept alive, a client's next request could race
        # the server's close of it (a draining server closes it right after the last event).
        response["Connection"] = "close"
        return response

    # An async view's handlers are coroutines (Django's own returns one for an async view too).
    async def http_method_not_allowed(  # type: ignore[override]  # see above
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        """The API's JSON 405, with ``Allow``."""
        response = refusal(405, f'Method "{request.method}" not allowed.')
        response["Allow"] = ", ".join(method.upper() for method in self.http_method_names if hasattr(self, method))
        return response
