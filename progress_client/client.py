"""``AsyncClient`` and ``Client``: the executions API, and ``watch`` that never loses or repeats a frame.

One asynchronous implementation (httpx, websockets); ``Client`` runs it on a
private event loop. ``watch`` uses the first transport that works (WebSocket,
Server-Sent Events, polling ``/events``), reconnects after the last ``seq``
seen (at a random moment within a second when a stream that was delivering
stops, as a restarting server's do, then with backoff), gives way to the next
transport when one is refused, drops repeats, fills gaps from ``/events``, and
ends after the terminal frame. A refusal becomes a typed error by its
``code``, never by its message text.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import json
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import (
    ApiError,
    ConnectionFailed,
    NotFound,
    ProgressClientError,
    RetryableError,
    ValidationFailed,
    error_from_close,
    error_from_response,
)
from .sse import SseParser

logger = logging.getLogger("progress_client")

T = TypeVar("T")
Frame = dict[str, Any]
# Aliases: inside the client classes, ``list`` names their method.
Frames = list[Frame]
Objects = list[dict[str, Any]]

API_PREFIX = "/api/v1"
TERMINAL_TYPES = frozenset({"completed", "failed", "cancelled"})
#: The transports ``watch`` tries, in this order.
TRANSPORTS: tuple[str, ...] = ("websocket", "sse", "poll")
#: Status codes a proxy answers a WebSocket upgrade with when it will never pass one.
WS_REFUSED_STATUSES = frozenset({400, 401, 403, 404, 405, 426, 501})
#: Failed handshakes in a row (the server was reached, the upgrade did not complete)
#: after which the WebSocket is given up for the next transport.
HANDSHAKE_FAILURES_BEFORE_FALLBACK = 3
#: A stream silent for this long is taken for dead (the server pings the socket
#: and sends an SSE keep-alive every 15 s).
SSE_READ_TIMEOUT = 45.0
USER_AGENT = "progress-client/1.0"


class TransportRefused(ProgressClientError):
    """This transport will not work here (e.g. a proxy refuses WebSocket upgrades)."""


class HandshakeFailed(ProgressClientError):
    """The server was reached but the transport could not be opened (may be transient)."""


#: A stream that stopped after delivering is opened again within this many seconds, at random.
FIRST_RECONNECT_MAX_SECONDS = 1.0


def backoff_delay(attempt: int, *, base: float = 0.25, cap: float = 5.0) -> float:
    """Exponential backoff with jitter: about 0.25, 0.5, 1, 2, 4, 5, 5 ... seconds."""
    return min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)


def reconnect_delay(failures: int) -> float:
    """How long ``watch`` waits before it connects again.

    After a stream that was delivering (``failures`` 0; a restarting server closes its
    sockets with 1012 and ends its event streams): a random moment within
    ``FIRST_RECONNECT_MAX_SECONDS``, so that its many clients do not come back at once.
    After attempts that brought nothing: :func:`backoff_delay`.
    """
    if failures == 0:
        return random.uniform(0.0, FIRST_RECONNECT_MAX_SECONDS)
    return backoff_delay(failures)


def status_frame_of(execution: dict[str, Any]) -> Frame:
    """A ``status`` frame (the WebSocket's first) made from the execution's REST shape."""
    return {
        "type": "status",
        "execution_id": execution["execution_id"],
        "status": execution["status"],
        "progress": execution["progress"],
        "seq": execution["seq"],
        "timestamp": now_iso(),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ws_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme))


class AsyncClient:
    """The executions API of the server at ``base_url`` (the site root, without ``/api/v1``).

    ``transports`` orders (and restricts) what ``watch`` may use; ``max_retries``
    bounds consecutive failed attempts (connections for ``watch``, requests for
    the reading calls) before :class:`ConnectionFailed`. Use as an async
    context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 8,
        transports: Sequence[str] = TRANSPORTS,
        poll_interval: float = 1.0,
    ) -> None:
        unknown = set(transports) - set(TRANSPORTS)
        if unknown or not transports:
            raise ValueError(f"transports must be a non-empty subset of {TRANSPORTS}, got {list(transports)}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.max_retries = max_retries
        self.transports = tuple(transports)
        self.poll_interval = poll_interval
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Token {token}"
        self._headers = headers
        self._http = httpx.AsyncClient(base_url=self.base_url + API_PREFIX, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- HTTP -------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
    ) -> httpx.Response:
        """One request; error answers raise their typed error.

        ``retry`` (reads only): a connection that fails, or a gateway error
        (502, 504), is tried again with backoff up to ``max_retries`` times.
        """
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, params=params, json=json_body, headers=headers)
            except httpx.TransportError as exc:
                if not retry or attempt >= self.max_retries:
                    raise ConnectionFailed(f"{method} {self.base_url}{API_PREFIX}{path}: {exc!r}") from exc
            else:
                if not (retry and response.status_code in (502, 504) and attempt < self.max_retries):
                    if response.status_code >= 400:
                        raise error_from_response(response)
                    return response
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1

    @staticmethod
    def _path(execution_id: str, suffix: str = "") -> str:
        return f"/executions/{quote(execution_id, safe='')}{suffix}"

    async def targets(self) -> Objects:
        """What can be started: ``[{type, target_id, steps, inputs}]``."""
        return (await self._request("GET", "/targets", retry=True)).json()["targets"]

    async def target_type(self, target_id: str) -> str:
        """``pipeline`` or ``agent``, looked up in ``/targets``."""
        types = sorted({t["type"] for t in await self.targets() if t["target_id"] == target_id})
        if not types:
            raise NotFound(f"Target '{target_id}' not found")
        if len(types) > 1:
            raise ValidationFailed(f"Both a pipeline and an agent are named '{target_id}': give the type")
        return types[0]

    async def start(
        self,
        target_id: str,
        inputs: dict[str, Any] | None = None,
        *,
        type: str | None = None,  # noqa: A002 - the API's name
        config: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        """Submit an execution; the server's 202 body (``execution_id``, ``status``, URLs ...).

        ``type`` is looked up in ``/targets`` when not given. Not retried: a
        refusal (``ServiceUnavailable``, ``Throttled``) says when to try again
        in ``retry_after``; ``idempotency_key`` makes a retry after a lost
        answer safe where the server supports it.
        """
        body: dict[str, Any] = {
            "type": type or await self.target_type(target_id),
            "target_id": target_id,
            "inputs": inputs or {},
            "config": config or {},
        }
        if callback_url:
            body["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        return (await self._request("POST", "/executions", json_body=body, headers=headers)).json()

    async def get(self, execution_id: str) -> dict[str, Any]:
        """The execution (its REST shape)."""
        return (await self._request("GET", self._path(execution_id), retry=True)).json()

    async def progress(self, execution_id: str) -> dict[str, Any] | None:
        """Its progress, or None while there is none (pending, or cancelled before it started)."""
        response = await self._request("GET", self._path(execution_id, "/progress"), retry=True)
        return None if response.status_code == 204 else response.json()

    async def events(self, execution_id: str, after_seq: int = 0) -> Frames:
        """The stored events after ``after_seq``, oldest first (each exactly the WebSocket frame)."""
        return await self._events(execution_id, after_seq, retry=True)

    async def _events(self, execution_id: str, after_seq: int, *, retry: bool) -> Frames:
        response = await self._request(
            "GET", self._path(execution_id, "/events"), params={"after_seq": after_seq}, retry=retry
        )
        return response.json()["events"]

    async def cancel(self, execution_id: str) -> dict[str, Any]:
        """Cancel it; ``ValidationFailed`` if it has already ended."""
        return (await self._request("POST", self._path(execution_id, "/cancel"))).json()

    async def list(self, page_size: int = 100, **filters: Any) -> AsyncGenerator[dict[str, Any], None]:
        """Every execution matching ``filters`` (``status``, ``type``, ``target_id``, ``sort``,
        ``order``), page after page; one submitted meanwhile may shift a page, so an
        execution already given is not given again."""
        seen: set[str] = set()
        page = 1
        while True:
            params = {**{k: v for k, v in filters.items() if v is not None}, "page": page, "page_size": page_size}
            body = (await self._request("GET", "/executions", params=params, retry=True)).json()
            for execution in body["executions"]:
                if execution["execution_id"] not in seen:
                    seen.add(execution["execution_id"])
                    yield execution
            next_page = body["pagination"]["next_page"]
            if not next_page:
                return
            page = next_page

    # --- watch ------------------------------------------------------------------------------

    async def watch(
        self, execution_id: str, *, after_seq: int | None = None, transports: Sequence[str] | None = None
    ) -> AsyncGenerator[Frame, None]:
        """The execution's frames: ``status`` first (unless resuming ``after_seq``), then
        every later event exactly once, in ``seq`` order, ending with the terminal one."""
        order = tuple(transports or self.transports)
        tracker = _Tracker(self, execution_id, after_seq)
        index = 0
        failures = 0  # attempts in a row that brought nothing new
        handshake_failures = 0
        while True:
            transport = order[index]
            progressed = False
            try:
                # aclosing: leaving early (the terminal frame, or the caller stopping)
                # closes the socket or the response at once.
                async with contextlib.aclosing(self._frames(transport, execution_id, tracker.resume_point)) as frames:
                    async for frame in frames:
                        for out in await tracker.accept(frame):
                            progressed = True
                            yield out
                        if tracker.done:
                            return
                        if progressed:
                            failures = handshake_failures = 0
            except TransportRefused as exc:
                logger.info("%s refused (%s)", transport, exc)
                if index + 1 < len(order):
                    index, failures, handshake_failures = index + 1, 0, 0
                    logger.info("falling back to %s", order[index])
                    continue
                raise ConnectionFailed(f"no transport could be used: {transport}: {exc}") from exc
            except HandshakeFailed as exc:
                handshake_failures += 1
                logger.info("%s handshake failed (%s), %d in a row", transport, exc, handshake_failures)
                if handshake_failures >= HANDSHAKE_FAILURES_BEFORE_FALLBACK and index + 1 < len(order):
                    index, failures, handshake_failures = index + 1, 0, 0
                    logger.info("falling back to %s", order[index])
                    continue
            except (OSError, httpx.TransportError, ConnectionClosed, TimeoutError, ConnectionFailed) as exc:
                logger.info("%s connection lost: %r", transport, exc)
            if tracker.done:
                return
            failures = 0 if progressed else failures + 1
            if failures > self.max_retries:
                raise ConnectionFailed(
                    f"could not follow {execution_id} at {self.base_url}: {failures} attempts in a row failed"
                )
            await asyncio.sleep(reconnect_delay(failures))

    def _frames(self, transport: str, execution_id: str, after_seq: int | None) -> AsyncGenerator[Frame, None]:
        if transport == "websocket":
            return self._ws_frames(execution_id, after_seq)
        if transport == "sse":
            return self._sse_frames(execution_id, after_seq)
        return self._poll_frames(execution_id, after_seq)

    async def _ws_frames(self, execution_id: str, after_seq: int | None) -> AsyncGenerator[Frame, None]:
        url = f"{ws_base_url(self.base_url)}{API_PREFIX}{self._path(execution_id, '/progress/ws')}"
        if after_seq is not None:
            url += f"?after_seq={after_seq}"
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        try:
            connection = await ws_connect(
                url, additional_headers=headers, user_agent_header=USER_AGENT, max_size=None, open_timeout=10
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in WS_REFUSED_STATUSES:
                raise TransportRefused(f"the WebSocket upgrade was answered {status}") from exc
            raise HandshakeFailed(f"the WebSocket upgrade was answered {status}") from exc
        except (InvalidHandshake, TimeoutError, EOFError) as exc:
            raise HandshakeFailed(repr(exc)) from exc
        error: Frame | None = None
        async with connection:
            try:
                async for message in connection:
                    frame = json.loads(message)
                    if frame.get("type") == "error":
                        error = frame
                        continue
                    yield frame
            except ConnectionClosed:
                if error is None:
                    raise
        if error is not None:
            # The socket's close code is the truth when it arrived; the frame's ``code`` says the same.
            close_code = connection.close_code
            code = close_code if close_code is not None and close_code >= 4000 else error.get("code")
            if code is not None:
                raise error_from_close(error.get("message", "refused"), code)

    async def _sse_frames(self, execution_id: str, after_seq: int | None) -> AsyncGenerator[Frame, None]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if after_seq is not None:
            headers["Last-Event-ID"] = str(after_seq)
        timeout = httpx.Timeout(10.0, read=SSE_READ_TIMEOUT)
        path = self._path(execution_id, "/progress/stream")
        async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if response.status_code == 204:
                # A resume at or past the terminal event: the stream has nothing more to give.
                # The execution's state says how it ended (the socket's answer to the same resume).
                yield status_frame_of(await self.get(execution_id))
                return
            content_type = response.headers.get("content-type", "")
            if response.status_code != 200 or not content_type.startswith("text/event-stream"):
                await response.aread()
                await self._sse_refusal(execution_id, response)
            parser = SseParser()
            decoder = codecs.getincrementaldecoder("utf-8")()
            # httpx types it as an iterator; it is an async generator, closed at once when the caller stops.
            byte_stream = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
            async with contextlib.aclosing(byte_stream) as chunks:
                async for chunk in chunks:
                    for event in parser.feed(decoder.decode(chunk)):
                        frame = json.loads(event.data)
                        if frame.get("type") == "error":
                            raise error_from_close(frame.get("message", "refused"), frame.get("code"))
                        yield frame

    async def _sse_refusal(self, execution_id: str, response: httpx.Response) -> None:
        """Raise the server's refusal, or ``TransportRefused`` when something between refuses SSE."""
        if response.status_code in (401, 400):
            raise error_from_response(response)
        if response.status_code in (429, 502, 503, 504):
            raise HandshakeFailed(f"the event stream was answered {response.status_code}")
        if response.status_code == 404:
            await self.get(execution_id)  # NotFound if it really is unknown; else a proxy refuses SSE
        raise TransportRefused(
            f"the event stream was answered {response.status_code} {response.headers.get('content-type', '')}"
        )

    async def _poll_frames(self, execution_id: str, after_seq: int | None) -> AsyncGenerator[Frame, None]:
        """REST polling of ``/events?after_seq=``, with the socket's semantics (a ``status``
        frame first, or on a resume that finds nothing stored after ``after_seq``), waiting
        what ``Retry-After`` asks when refused. Each call is one attempt: the watch loop
        counts the failures and backs off."""
        if after_seq is not None:
            resumed = after_seq
            events = await self._polled(lambda: self._events(execution_id, resumed, retry=False))
            for frame in events:
                yield frame
                after_seq = frame["seq"]
                if frame["type"] in TERMINAL_TYPES:
                    return
            if not events:
                after_seq = None
        if after_seq is None:
            path = self._path(execution_id)
            execution = (await self._polled(lambda: self._request("GET", path))).json()
            yield status_frame_of(execution)
            after_seq = execution["seq"]
            if execution["status"] in TERMINAL_TYPES:
                before_end = max(execution["seq"] - 1, 0)
                for frame in await self._polled(lambda: self._events(execution_id, before_end, retry=False)):
                    yield frame
                return
        while True:
            await asyncio.sleep(self.poll_interval)
            events = await self._polled(functools.partial(self._events, execution_id, after_seq, retry=False))
            for frame in events:
                yield frame
                after_seq = frame["seq"]
                if frame["type"] in TERMINAL_TYPES:
                    return

    async def _polled(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``; a 429 or 503 is waited out for its ``Retry-After`` (or a backoff), up to ``max_retries``."""
        attempt = 0
        while True:
            try:
                return await call()
            except RetryableError as exc:
                if attempt >= self.max_retries:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt)
                logger.info("%s; polling again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                attempt += 1


class _Tracker:
    """What ``watch`` has given so far, and what a new frame means for it."""

    def __init__(self, client: AsyncClient, execution_id: str, after_seq: int | None) -> None:
        self.client = client
        self.execution_id = execution_id
        #: The last seq given (None: nothing yet, start from a status frame).
        self.last_seq = after_seq
        self.done = False
        #: The status frame given said the execution had ended: its terminal frame comes next.
        self.terminal_due = False

    @property
    def resume_point(self) -> int | None:
        return self.last_seq

    async def accept(self, frame: Frame) -> Frames:
        """The frames to give for ``frame`` (none for a repeat; a gap filled first)."""
        kind = frame.get("type")
        seq = frame.get("seq")
        if not isinstance(seq, int):
            raise ApiError(f"unexpected frame without seq: {frame}")
        if kind == "status":
            if self.last_seq is None:
                self.last_seq = seq
                self.terminal_due = frame.get("status") in TERMINAL_TYPES
                return [frame]
            if frame.get("status") in TERMINAL_TYPES and not self.terminal_due:
                # A resume found nothing after last_seq and the execution has ended: the
                # caller's after_seq already covered the terminal event.
                self.done = True
            elif frame.get("status") in TERMINAL_TYPES:
                # Our own reconnect between that status frame and its terminal frame.
                stored = await self.client.events(self.execution_id, after_seq=max(seq - 1, 0))
                terminal = [f for f in stored if f["seq"] == seq and f["type"] in TERMINAL_TYPES][:1]
                self.done = not terminal  # its history pruned: the status frame was all there is
                return self._give(terminal)
            return []
        if self.terminal_due and kind in TERMINAL_TYPES and seq == self.last_seq:
            return self._give([frame])
        if self.last_seq is not None and seq <= self.last_seq:
            return []
        if self.last_seq is not None and seq > self.last_seq + 1:
            stored = await self.client.events(self.execution_id, after_seq=self.last_seq)
            missing = [f for f in stored if f["seq"] < seq]
            return self._give([*missing, frame])
        return self._give([frame])

    def _give(self, frames: Frames) -> Frames:
        given = []
        for frame in frames:
            if self.done:
                break
            given.append(frame)
            self.last_seq = frame["seq"]
            if frame["type"] in TERMINAL_TYPES:
                self.done = True
        return given


class Client:
    """The same API, blocking: :class:`AsyncClient` run on a private event loop.

    Not for use from inside a running event loop (use ``AsyncClient`` there),
    nor from several threads at once.
    """

    def __init__(self, base_url: str, token: str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(base_url, token, **options)

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def _run(self, awaitable: Awaitable[T]) -> T:
        return self._loop.run_until_complete(awaitable)

    def _iterate(self, iterator: AsyncGenerator[T, None]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(anext(iterator))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(iterator.aclose())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._async.aclose())
            self._run(self._loop.shutdown_asyncgens())
            self._loop.close()

    def targets(self) -> Objects:
        return self._run(self._async.targets())

    def start(
        self,
        target_id: str,
        inputs: dict[str, Any] | None = None,
        *,
        type: str | None = None,  # noqa: A002 - the API's name
        config: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._async.start(
                target_id, inputs, type=type, config=config, idempotency_key=idempotency_key, callback_url=callback_url
            )
        )

    def get(self, execution_id: str) -> dict[str, Any]:
        return self._run(self._async.get(execution_id))

    def progress(self, execution_id: str) -> dict[str, Any] | None:
        return self._run(self._async.progress(execution_id))

    def events(self, execution_id: str, after_seq: int = 0) -> Frames:
        return self._run(self._async.events(execution_id, after_seq))

    def cancel(self, execution_id: str) -> dict[str, Any]:
        return self._run(self._async.cancel(execution_id))

    def list(self, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        return self._iterate(self._async.list(page_size, **filters))

    def watch(
        self, execution_id: str, *, after_seq: int | None = None, transports: Sequence[str] | None = None
    ) -> Iterator[Frame]:
        return self._iterate(self._async.watch(execution_id, after_seq=after_seq, transports=transports))
