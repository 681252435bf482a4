"""One execution's live stream, whatever carries it: the WebSocket consumer and the SSE view.

Both transports keep the same promises (docs/protocol/websocket.md): a
``status`` snapshot first, then every later event exactly once in ``seq``
order, exactly one terminal frame, and resume with ``after_seq``. The stream
drops what was already sent, fills a gap from the database before a frame
that skips ahead, catches up when the channel layer reconnects, and takes
part in its process's re-check (``progress.recheck``). A transport supplies
how a frame goes out (``send``), what to do after the terminal frame
(``on_terminal``) and once access is lost (``on_lost``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from django.utils import timezone

from core.db import read_db
from core.params import parse_seq
from executions.frames import dumps, status_frame
from executions.models import TERMINAL_EVENT_TYPES, TERMINAL_STATUSES
from executions.selectors import event_frame_at, event_frames_after, execution_get_for_user

from .protocol import EventMessage, Refusal
from .recheck import Rechecker, StreamAccess, Verdict, rechecker

__all__ = [
    "ExecutionStream",
    "Opening",
    "StreamFrame",
    "parse_after_seq",
    "read_opening",
]


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


def parse_after_seq(query_string: bytes) -> tuple[bool, int | None]:
    """(valid, value): ``after_seq`` must be plain digits, given once; absent is valid (None)."""
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("after_seq")
    if not values:
        return True, None
    value = parse_seq(values[-1]) if len(values) == 1 else None
    return value is not None, value


def read_opening(*, user: Any, execution_id: str, after_seq: int | None) -> Opening | None:
    """The first frames of a stream (docs/protocol/websocket.md, guarantees 1, 2 and 4);
    None when the user may not see the execution (missing or someone else's).

    Read *after* joining the execution's group, so that no event can fall
    between the read and the subscription.
    """
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


class ExecutionStream:
    """The order of one client's frames: each event once, by ``seq``, ending at the terminal one.

    Every frame goes out through ``send`` while ``order`` is held, so a
    channel-layer message, a catch-up, a re-check and a gap fill never
    interleave. Once ``finished`` is set (terminal frame sent, access lost, or
    the transport stopped) nothing more goes out. From :meth:`start` until then
    the stream is a member of its process's re-check (``progress.recheck``).
    """

    def __init__(
        self,
        execution_id: str,
        *,
        user_pk: Any,
        token_key: str | None,
        session_key: str | None,
        send: Callable[[StreamFrame], Awaitable[None]],
        on_terminal: Callable[[], Awaitable[None]],
        on_lost: Callable[[Refusal], Awaitable[None]],
    ) -> None:
        self.execution_id = execution_id
        self._access = StreamAccess(
            user_pk=user_pk, token_key=token_key, session_key=session_key, execution_id=execution_id
        )
        self.send = send
        self.on_terminal = on_terminal
        self.on_lost = on_lost
        self.last_seq = 0
        self.finished = False
        #: The stored seq the last re-check saw ahead of this stream (0: none).
        self.recheck_target = 0
        #: The re-check of the event loop this stream started on (None before, or if it never joined).
        self.rechecker: Rechecker | None = None
        self.order = asyncio.Lock()

    async def start(self, opening: Opening) -> None:
        """Send the opening frames (the terminal one ends the stream), then join the re-check."""
        async with self.order:
            for frame in opening.frames:
                await self.send(frame)
            self.last_seq = opening.last_seq
            if opening.finished:
                await self._finish()
                return
        self.rechecker = rechecker()
        self.rechecker.add(self)

    def stop(self) -> None:
        """The transport is gone (client disconnected): send nothing more, leave the re-check."""
        self.finished = True
        self._leave_recheck()

    async def event(self, message: EventMessage) -> None:
        """A recorded event from the channel layer."""
        seq = message["seq"]
        async with self.order:
            if self.finished or seq <= self.last_seq:
                return
            if seq > self.last_seq + 1:
                await self._send_stored(before_seq=seq)
                if self.finished:
                    return
            await self.send(StreamFrame(message["frame"], seq, message["event"], message["timestamp"]))
            self.last_seq = seq
            if message["event"] in TERMINAL_EVENT_TYPES:
                await self._finish()

    async def catch_up(self) -> None:
        """Send what is stored after the last frame sent: after the channel layer
        reconnected (``layer.reconnected``), everything published meanwhile is lost."""
        async with self.order:
            if not self.finished:
                await self._send_stored()

    # --- the periodic re-check (progress.recheck.RecheckedStream) ------------------------------

    @property
    def access(self) -> StreamAccess | None:
        """What the stream shows and on whose behalf (what each round verifies); None once it has ended."""
        return None if self.finished else self._access

    async def apply_verdict(self, verdict: Verdict) -> None:
        """End the stream if access is gone; send what the layer dropped (the terminal frame above all)."""
        async with self.order:
            if self.finished:
                return
            if verdict.lost is not None:
                self.finished = True
                self._leave_recheck()
                await self.on_lost(verdict.lost)
                return
            # Behind the database: the frames may still be on their way (a busy
            # process delivers them late, and reading them again for every
            # lagging stream slows it down further), so read them only once the
            # gap has lasted a whole round, i.e. the layer really dropped them.
            # A dropped terminal frame therefore arrives within two intervals.
            if self.last_seq < self.recheck_target:
                await self._send_stored()
            self.recheck_target = verdict.stored_seq if verdict.stored_seq > self.last_seq else 0

    # --- internals ----------------------------------------------------------------------------

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
        self._leave_recheck()
        await self.on_terminal()

    def _leave_recheck(self) -> None:
        if self.rechecker is not None:
            self.rechecker.discard(self)
