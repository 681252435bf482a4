"""Server-Sent Events: an execution's frames over plain HTTP, for clients and proxies
that cannot use WebSockets (README, "Server-Sent Events").

``GET /api/v1/executions/{id}/progress/stream[?after_seq=N]`` answers
``text/event-stream``; each frame of the WebSocket, byte for byte, is one event::

    id: <seq>
    event: <type>
    data: <the frame's JSON>

with the WebSocket's guarantees, kept by the same code (``progress.streams``):
``status`` first, then every later event once in ``seq`` order, one terminal
event and the end of the response; resume with ``Last-Event-ID`` (what a
browser's ``EventSource`` sends when it reconnects) or ``after_seq``. A
``: keep-alive`` comment goes out every ``PROGRESS_SSE_KEEPALIVE_SECONDS``.
Refusals happen before the stream starts, as the REST API's JSON answers
(401, 400, 404 in that order, as on the socket).

It is served asynchronously: an async view returns a ``StreamingHttpResponse``
over an async generator, which waits on the channel layer (``progress.hub``'s
local delivery, the consumer's path) in the event loop; no thread is held
while a stream is open, database reads borrow a pool thread (``read_db``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views import View
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from core.db import read_db
from executions.frames import dumps, error_frame
from executions.selectors import execution_get_for_user

from .broadcast import MESSAGE_TYPE, group_name
from .hub import RESYNC_MESSAGE
from .streams import GROUPABLE_ID, ExecutionStream, StreamFrame, parse_seq, read_opening

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/event-stream"
KEEPALIVE = ": keep-alive\n\n"
#: How long to wait before listening again when the channel layer's receive fails
#: (channels-redis's layers raise while Redis is away; the periodic re-check still runs).
RECEIVE_RETRY_SECONDS = 1.0
INVALID_SEQ_MESSAGE = "A whole number from 0 to 10^18-1 is required."


def sse_event(frame: StreamFrame) -> str:
    """One frame as an event. Its JSON text holds no line break (``json.dumps`` escapes
    them), so it is one ``data:`` line and the client reads back the same bytes."""
    head = f"id: {frame.seq}\n" if frame.seq is not None else ""
    return f"{head}event: {frame.type}\ndata: {frame.text}\n\n"


def error_event(message: str) -> str:
    return sse_event(StreamFrame(dumps(error_frame(message)), None, "error"))


# --- refusals: the REST API's JSON answers ------------------------------------------------


#: Rendered as DRF's JSONRenderer does (compact, UTF-8), like every other API answer.
JSON_STYLE = {"separators": (",", ":"), "ensure_ascii": False}


def refusal(status: int, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"detail": detail, **extra}, status=status, json_dumps_params=JSON_STYLE)


def not_found(execution_id: str) -> JsonResponse:
    return refusal(404, f"Execution '{execution_id}' not found")


def invalid(name: str) -> JsonResponse:
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
    request ends; for a stream, until the stream ends, so each open stream kept
    an idle thread (measured: 40 streams, 40 more threads in daphne). Nothing
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
    here, and from the process's periodic re-check (``progress.resync``),
    which runs in its own task and may send stored events or end the stream
    (access lost: an ``error`` event) while this generator waits.

    Joins the group here rather than in the view, so that the ``finally``
    below always leaves it, whenever the client goes away (Django cancels
    the response, or closes this generator).
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = group_name(execution_id)
    ready: list[StreamFrame] = []
    woken = asyncio.Event()

    async def collect(frame: StreamFrame) -> None:
        ready.append(frame)
        woken.set()

    async def ended() -> None:
        """The terminal event is among ``ready``: the loop below sends it and stops."""

    async def lost(message: str, code: int) -> None:
        await collect(StreamFrame(dumps(error_frame(message)), None, "error"))

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
    release_request_thread()  # the view and the middleware are done with it
    try:
        await layer.group_add(group, channel)
        opening = await read_db(read_opening)(user=user, execution_id=execution_id, after_seq=after_seq)
        if opening is None:  # gone since the view looked (deleted, or access revoked)
            yield error_event(f"Execution '{execution_id}' not found")
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
            if stream.finished:
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
    if message.get("type") == MESSAGE_TYPE:
        await stream.event(message)
    elif message.get("type") == RESYNC_MESSAGE["type"]:
        await stream.catch_up()


class ExecutionProgressStreamView(View):
    """``GET .../progress/stream``: checks in the WebSocket's order, then the event stream."""

    http_method_names = ["get", "options"]

    async def get(self, request: HttpRequest, execution_id: str) -> HttpResponseBase:
        authenticated = await authenticate(request)
        if isinstance(authenticated, HttpResponse):
            return authenticated
        user, token_key = authenticated
        after_seq, refused = resume_point(request)
        if refused is not None:
            return refused
        if not GROUPABLE_ID.fullmatch(execution_id):
            return not_found(execution_id)  # no execution has such an id
        if await read_db(execution_get_for_user)(user=user, execution_id=execution_id) is None:
            return not_found(execution_id)
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
        return response

    # An async view's handlers are coroutines (Django's own returns one for an async view too).
    async def http_method_not_allowed(  # type: ignore[override]  # see above
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        """The API's JSON 405, with ``Allow``."""
        response = refusal(405, f'Method "{request.method}" not allowed.')
        response["Allow"] = ", ".join(method.upper() for method in self.http_method_names if hasattr(self, method))
        return response
