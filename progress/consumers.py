"""The WebSocket consumer: forwards an execution's events as the contract's frames.

It joins the execution's group *before* reading the current state, so no event
can fall between the two; anything older than what it already sent is dropped
by ``seq``, and a frame whose ``seq`` skips ahead (channel layers drop messages
under load) is preceded by the missing events read from the database. A
periodic resync (``progress/resync.py``, one round for all of a process's
sockets) sends what the layer dropped at the very end (the terminal frame has
no successor to reveal the gap) and closes the socket when the user's access
is gone (deactivated, token deleted).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from core import metrics
from core.db import read_db
from executions.frames import dumps, error_frame, status_frame
from executions.models import TERMINAL_EVENT_TYPES, TERMINAL_STATUSES
from executions.selectors import event_frame_at, event_frames_after, execution_get_for_user

from .broadcast import group_name
from .resync import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, Verdict, Watch, resyncer

logger = logging.getLogger(__name__)


#: What a group name may hold (Channels' rule), within an execution id's length.
GROUPABLE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400


@dataclass
class Opening:
    """What to send right after connecting, read from the database."""

    frames: list[str] = field(default_factory=list)
    last_seq: int = 0
    finished: bool = False


def parse_after_seq(query_string: bytes) -> tuple[bool, int | None]:
    """(valid, value): ``after_seq`` must be plain digits; absent is valid (None)."""
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("after_seq")
    if not values:
        return True, None
    raw = values[-1]
    if len(values) > 1 or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return False, None
    return True, int(raw)


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
                frames=[frame for _, _, frame in events],
                last_seq=events[-1][0],
                finished=events[-1][1] in TERMINAL_EVENT_TYPES,
            )
    frames = [
        dumps(
            status_frame(
                execution_id=execution.id,
                status=execution.status,
                progress=execution.progress,
                seq=execution.seq,
                timestamp=timezone.now(),
            )
        )
    ]
    finished = execution.status in TERMINAL_STATUSES
    if finished and after_seq is None:
        terminal = event_frame_at(execution_id=execution.id, seq=execution.seq)
        if terminal is not None:
            frames.append(terminal)
    return Opening(frames=frames, last_seq=execution.seq, finished=finished)


class ExecutionProgressConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    #: True once the close frame has been asked for: nothing may be sent after it.
    closed: bool = False
    #: True while this socket counts in the open-sockets gauge.
    counted: bool = False
    #: The stored seq the last resync round saw ahead of this socket (0: none).
    resync_target: int = 0

    async def connect(self) -> None:
        self.execution_id: str = self.scope["url_route"]["kwargs"]["execution_id"]
        self.last_seq = 0
        self.finished = False
        self.order = asyncio.Lock()
        # Accept first: the contract answers every refusal with an error frame
        # and an application close code, which needs an open socket.
        await self.accept()
        self.counted = True
        metrics.socket_opened()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse("Authentication required", CLOSE_UNAUTHENTICATED)
        valid, after_seq = parse_after_seq(self.scope.get("query_string", b""))
        if not valid:
            return await self.refuse("Invalid after_seq", CLOSE_BAD_REQUEST)
        if not GROUPABLE_ID.fullmatch(self.execution_id):
            # No execution has such an id (they are "exec_" and hex digits).
            return await self.refuse(f"Execution '{self.execution_id}' not found", CLOSE_NOT_FOUND)
        # Join before reading the state, so that no event can fall between the
        # two; the read also checks that the user may see the execution.
        self.group = group_name(self.execution_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        opening = await read_db(read_opening)(user=user, execution_id=self.execution_id, after_seq=after_seq)
        if opening is None:
            await self.leave_group()
            return await self.refuse(f"Execution '{self.execution_id}' not found", CLOSE_NOT_FOUND)
        async with self.order:
            for frame in opening.frames:
                await self.send_frame(frame)
            self.last_seq = opening.last_seq
            if opening.finished:
                await self.finish()
                return
        # Re-checked with the process's other sockets every PROGRESS_WS_RESYNC_SECONDS.
        resyncer().add(self)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed = True
        await super().close(code=code, reason=reason)

    async def send_frame(self, text: str, event_timestamp: str | None = None) -> None:
        """Every frame goes out here, counted (and its event's latency observed when known)."""
        await self.send(text_data=text)
        metrics.frame_sent(event_timestamp)

    async def refuse(self, message: str, code: int) -> None:
        await self.send_frame(dumps(error_frame(message)))
        await self.close(code=code)

    async def finish(self) -> None:
        """Exactly one terminal frame has been sent: close normally."""
        self.finished = True
        await self.leave_group()
        await self.close(code=CLOSE_NORMAL)

    async def leave_group(self) -> None:
        if self.group is not None:
            group, self.group = self.group, None
            await self.channel_layer.group_discard(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        resyncer().discard(self)
        if self.counted:
            self.counted = False
            metrics.socket_closed()
        await self.leave_group()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Frames from the client are not part of the protocol. Once the close
        # frame is out nothing may follow it (the terminal frame is the last one;
        # some ASGI servers raise on a send after close).
        if not self.closed:
            await self.send_frame(dumps(error_frame("Unsupported message")))

    # --- events from the channel layer ------------------------------------------------
    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, without its ``aclose_old_connections`` per message.

        That call is a thread-sensitive hop to the one thread every socket of
        the process shares, for each frame of each socket: at 1,000 watchers it
        is the bottleneck. This consumer's database reads run through
        ``read_db``, which closes stale connections in its own threads.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def progress_resync(self, message: dict[str, Any]) -> None:
        """The channel layer's subscription came back after Redis was away: read what was missed."""
        async with self.order:
            if not self.finished and not self.closed:
                await self.send_stored()

    async def progress_event(self, message: dict[str, Any]) -> None:
        seq = int(message["seq"])
        async with self.order:
            if self.finished or seq <= self.last_seq:
                return
            if seq > self.last_seq + 1:
                await self.send_stored(before_seq=seq)
                if self.finished:
                    return
            await self.send_frame(message["frame"], message.get("timestamp"))
            self.last_seq = seq
            if message.get("event") in TERMINAL_EVENT_TYPES:
                await self.finish()

    async def send_stored(self, before_seq: int | None = None) -> None:
        """Send the stored events after ``last_seq`` (and before ``before_seq``)."""
        events = await read_db(event_frames_after)(
            execution_id=self.execution_id, after_seq=self.last_seq, before_seq=before_seq
        )
        for seq, event_type, frame in events:
            await self.send_frame(frame)
            self.last_seq = seq
            if event_type in TERMINAL_EVENT_TYPES:
                await self.finish()
                return

    def session_key(self) -> str | None:
        session = self.scope.get("session")
        return getattr(session, "session_key", None) if session is not None else None

    # --- the periodic re-check (progress/resync.py) ------------------------------------------
    def watch(self) -> Watch | None:
        """What the round checks for this socket; None once it has ended."""
        if self.finished or self.closed:
            return None
        return Watch(
            user_pk=self.scope["user"].pk,
            token_key=self.scope.get("auth_token"),
            session_key=self.session_key(),
            execution_id=self.execution_id,
        )

    async def apply_resync(self, verdict: Verdict) -> None:
        """Close if access is gone; send what the layer dropped (the terminal frame above all)."""
        async with self.order:
            if self.finished or self.closed:
                return
            if verdict.lost is not None:
                self.finished = True
                await self.leave_group()
                await self.refuse(*verdict.lost)
                return
            # Behind the database: the frames may still be on their way (a busy
            # process delivers them late), so read them only once the gap has
            # lasted a whole round, i.e. the layer really dropped them.
            if self.last_seq < self.resync_target:
                await self.send_stored()
            self.resync_target = verdict.stored_seq if verdict.stored_seq > self.last_seq else 0
