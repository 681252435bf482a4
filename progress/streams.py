"""One execution's live stream, whatever carries it: the WebSocket consumer and the SSE view.

Both transports make the same promises (README, "The WebSocket protocol"): a
``status`` snapshot first, then every later event exactly once in ``seq``
order, exactly one terminal frame, and resume with ``after_seq``. The logic
that keeps them lives here, once:

* :func:`read_opening`: the first frames, read *after* joining the
  execution's group, so that no event can fall between the read and the
  subscription;
* :class:`ExecutionStream`: drops what was already sent (by ``seq``), fills a
  gap from the database before a frame that skips ahead (channel layers drop
  messages under load), and catches up from the database on a resync (after
  a Redis reconnect, and periodically: the terminal frame has no successor to
  reveal that it was dropped);
* :func:`access_lost`: the periodic check that the user may still watch.

A transport supplies how a frame goes out (``send``) and what to do once the
terminal frame is out (``on_terminal``: close the socket, end the response).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import import_module
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token

from executions.frames import dumps, status_frame
from executions.models import TERMINAL_EVENT_TYPES, TERMINAL_STATUSES
from executions.selectors import event_frame_at, event_frames_after, execution_get_for_user

T = TypeVar("T")

#: What a group name may hold (Channels' rule), within an execution id's length.
GROUPABLE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: A resume point has at most this many digits (as the REST ``after_seq``).
MAX_SEQ_DIGITS = 18

# WebSocket close codes; access_lost names one with its reason (the SSE view
# sends the reason as an ``error`` frame and ends the response instead).
CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


def read_db(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run a read-only database function in a worker thread of the pool.

    ``database_sync_to_async`` is thread-sensitive by default: every socket of
    the process would queue on one shared thread (Channels sets no per-socket
    context, unlike Django for each HTTP request), and an SSE response would
    keep its request's own thread alive for as long as it streams. These
    functions only read and keep no state between calls, so any thread will do.
    """
    return database_sync_to_async(function, thread_sensitive=False)


class StreamFrame(NamedTuple):
    """A frame on its way out, with what a transport may need besides its JSON text."""

    text: str
    #: The event's ``seq`` (the snapshot's for ``status``); None for an ``error`` frame.
    seq: int | None
    type: str
    #: The event's own timestamp when it arrived live from the channel layer (for the
    #: event-to-frame latency metric); None for frames read from the database.
    timestamp: str | None = None


@dataclass
class Opening:
    """What to send right after connecting, read from the database."""

    frames: list[StreamFrame] = field(default_factory=list)
    last_seq: int = 0
    finished: bool = False


def parse_seq(raw: str) -> int | None:
    """A resume point: plain ASCII digits (``"+5"``, ``" 5"``, ``"5.0"`` are not), else None."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_SEQ_DIGITS:
        return None
    return int(raw)


def parse_after_seq(query_string: bytes) -> tuple[bool, int | None]:
    """(valid, value): ``after_seq`` must be plain digits, given once; absent is valid (None)."""
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("after_seq")
    if not values:
        return True, None
    value = parse_seq(values[-1]) if len(values) == 1 else None
    return value is not None, value


def read_opening(*, user: Any, execution_id: str, after_seq: int | None) -> Opening | None:
    """The first frames of a stream (README, "The WebSocket protocol", 1, 2 and 4);
    None when the user may not see the execution (missing or someone else's)."""
    execution = execution_get_for_user(user=user, execution_id=execution_id)
    if execution is None:
        return None
    if after_seq is not None:
        events = event_frames_after(execution_id=execution_id, after_seq=after_seq)
        if events:
            return Opening(
                frames=[StreamFrame(frame, seq, event_type) for seq, event_type, frame in events],
                last_seq=events[-1][0],
                finished=events[-1][1] in TERMINAL_EVENT_TYPES,
            )
    status = dumps(
        status_frame(
            execution_id=execution.id,
            status=execution.status,
            progress=execution.progress,
            seq=execution.seq,
            timestamp=timezone.now(),
        )
    )
    frames = [StreamFrame(status, execution.seq, "status")]
    finished = execution.status in TERMINAL_STATUSES
    if finished and after_seq is None:
        terminal = event_frame_at(execution_id=execution.id, seq=execution.seq)
        if terminal is not None:
            frames.append(StreamFrame(terminal, execution.seq, execution.status))
    return Opening(frames=frames, last_seq=execution.seq, finished=finished)


def session_user_pk(session_key: str | None) -> Any:
    """The pk of the user the session is still logged in as, or None.

    Through ``django.contrib.auth.get_user``, as for an HTTP request: a logout
    (session deleted) or a password change (session hash no longer matches)
    ends the session's access.
    """
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    return get_user(SimpleNamespace(session=store)).pk  # type: ignore[arg-type]


def access_lost(
    user: Any, token_key: str | None, execution_id: str, session_key: str | None = None
) -> tuple[str, int] | None:
    """Why the user may no longer watch (message, close code), or None if they still may.

    ``token_key`` is set when the stream authenticated with a token; otherwise
    the session (``session_key``) did, and it must still be logged in as ``user``.
    """
    if token_key is not None:
        if not Token.objects.filter(key=token_key, user__is_active=True).exists():
            return "Authentication required", CLOSE_UNAUTHENTICATED
    elif session_user_pk(session_key) != user.pk:
        return "Authentication required", CLOSE_UNAUTHENTICATED
    current = get_user_model().objects.filter(pk=user.pk, is_active=True).first()
    if current is None:
        return "Authentication required", CLOSE_UNAUTHENTICATED
    if execution_get_for_user(user=current, execution_id=execution_id) is None:
        return f"Execution '{execution_id}' not found", CLOSE_NOT_FOUND
    return None


class ExecutionStream:
    """The order of one client's frames: each event once, by ``seq``, ending at the terminal one.

    Every frame goes out through ``send`` while ``order`` is held, so a
    channel-layer message, a resync and a gap fill never interleave. Once
    ``finished`` is set (terminal frame sent, or access lost) nothing more goes out.
    """

    def __init__(
        self,
        execution_id: str,
        *,
        send: Callable[[StreamFrame], Awaitable[None]],
        on_terminal: Callable[[], Awaitable[None]],
    ) -> None:
        self.execution_id = execution_id
        self.send = send
        self.on_terminal = on_terminal
        self.last_seq = 0
        self.finished = False
        self.order = asyncio.Lock()

    async def start(self, opening: Opening) -> None:
        """Send the opening frames (the terminal one ends the stream)."""
        async with self.order:
            for frame in opening.frames:
                await self.send(frame)
            self.last_seq = opening.last_seq
            if opening.finished:
                await self._finish()

    async def event(self, message: dict[str, Any]) -> None:
        """A ``progress.event`` from the channel layer (``progress.broadcast.event_message``)."""
        seq = int(message["seq"])
        async with self.order:
            if self.finished or seq <= self.last_seq:
                return
            if seq > self.last_seq + 1:
                await self._send_stored(before_seq=seq)
                if self.finished:
                    return
            await self.send(StreamFrame(message["frame"], seq, message.get("event") or "", message.get("timestamp")))
            self.last_seq = seq
            if message.get("event") in TERMINAL_EVENT_TYPES:
                await self._finish()

    async def catch_up(self) -> None:
        """Send what is stored after the last frame sent (the layer may have dropped it)."""
        async with self.order:
            if not self.finished:
                await self._send_stored()

    async def resync(self, check_access: Callable[[], Awaitable[tuple[str, int] | None]]) -> tuple[str, int] | None:
        """One periodic round: why access is lost (the stream is then finished, and the
        transport says so), or None after catching up."""
        lost = await check_access()
        async with self.order:
            if self.finished:
                return None
            if lost is not None:
                self.finished = True
                return lost
            await self._send_stored()
        return None

    async def _send_stored(self, before_seq: int | None = None) -> None:
        """Send the stored events after ``last_seq`` (and before ``before_seq``)."""
        events = await read_db(event_frames_after)(
            execution_id=self.execution_id, after_seq=self.last_seq, before_seq=before_seq
        )
        for seq, event_type, frame in events:
            await self.send(StreamFrame(frame, seq, event_type))
            self.last_seq = seq
            if event_type in TERMINAL_EVENT_TYPES:
                await self._finish()
                return

    async def _finish(self) -> None:
        """Exactly one terminal frame has been sent."""
        self.finished = True
        await self.on_terminal()
