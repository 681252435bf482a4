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
  messages under load), catches up from the database when the channel layer
  reconnects (``progress.resync``), and takes part in its process's periodic
  re-check (``progress.resync.resyncer``: one round of a few queries for all
  open streams, WebSocket and SSE alike), which ends a stream whose access is
  gone and sends the stored events the layer dropped, the terminal one above
  all (nothing follows it to reveal the gap).

A transport supplies how a frame goes out (``send``), what to do once the
terminal frame is out (``on_terminal``: close the socket, end the response)
and once access is lost (``on_lost``: an error frame, then close or end).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from django.utils import timezone

from core.db import read_db
from executions.frames import dumps, status_frame
from executions.models import TERMINAL_EVENT_TYPES, TERMINAL_STATUSES
from executions.selectors import event_frame_at, event_frames_after, execution_get_for_user

from .resync import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, Resyncer, Verdict, Watch, resyncer

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_NORMAL",
    "CLOSE_NOT_FOUND",
    "CLOSE_UNAUTHENTICATED",
    "GROUPABLE_ID",
    "ExecutionStream",
    "Opening",
    "StreamFrame",
    "parse_after_seq",
    "parse_seq",
    "read_opening",
]

#: What a group name may hold (Channels' rule), within an execution id's length.
GROUPABLE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: A resume point has at most this many digits (as the REST ``after_seq``).
MAX_SEQ_DIGITS = 18

# WebSocket close codes (the SSE view answers the same cases with HTTP statuses, or
# an ``error`` event once streaming). The re-check's own two come from progress.resync.
CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400


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


class ExecutionStream:
    """The order of one client's frames: each event once, by ``seq``, ending at the terminal one.

    Every frame goes out through ``send`` while ``order`` is held, so a
    channel-layer message, a catch-up, a re-check and a gap fill never
    interleave. Once ``finished`` is set (terminal frame sent, access lost, or
    the transport stopped) nothing more goes out. From :meth:`start` until then
    the stream is a member of its process's re-check (``progress.resync``).
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
        on_lost: Callable[[str, int], Awaitable[None]],
    ) -> None:
        self.execution_id = execution_id
        #: On whose behalf it streams: what the re-check verifies every round.
        self.viewer = Watch(user_pk=user_pk, token_key=token_key, session_key=session_key, execution_id=execution_id)
        self.send = send
        self.on_terminal = on_terminal
        self.on_lost = on_lost
        self.last_seq = 0
        self.finished = False
        #: The stored seq the last re-check saw ahead of this stream (0: none).
        self.resync_target = 0
        #: The re-check of the event loop this stream started on (None before, or if it never joined).
        self.resyncer: Resyncer | None = None
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
        self.resyncer = resyncer()
        self.resyncer.add(self)

    def stop(self) -> None:
        """The transport is gone (client disconnected): send nothing more, leave the re-check."""
        self.finished = True
        self._leave_resync()

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
        """Send what is stored after the last frame sent: after the channel layer
        reconnected (``progress.resync`` from the hub), everything published
        meanwhile is lost."""
        async with self.order:
            if not self.finished:
                await self._send_stored()

    # --- the periodic re-check (progress.resync.Watcher) -------------------------------------

    def watch(self) -> Watch | None:
        """What the round checks for this stream; None once it has ended."""
        return None if self.finished else self.viewer

    async def apply_resync(self, verdict: Verdict) -> None:
        """End the stream if access is gone; send what the layer dropped (the terminal frame above all)."""
        async with self.order:
            if self.finished:
                return
            if verdict.lost is not None:
                self.finished = True
                self._leave_resync()
                await self.on_lost(*verdict.lost)
                return
            # Behind the database: the frames may still be on their way (a busy
            # process delivers them late), so read them only once the gap has
            # lasted a whole round, i.e. the layer really dropped them.
            if self.last_seq < self.resync_target:
                await self._send_stored()
            self.resync_target = verdict.stored_seq if verdict.stored_seq > self.last_seq else 0

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
        self._leave_resync()
        await self.on_terminal()

    def _leave_resync(self) -> None:
        if self.resyncer is not None:
            self.resyncer.discard(self)
