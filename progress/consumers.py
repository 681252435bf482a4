"""The WebSocket consumer: forwards an execution's events as the contract's frames.

The stream itself (order by ``seq``, gap repair, the opening, the periodic
re-check) is ``progress.streams.ExecutionStream``, shared with the SSE view;
this consumer is the WebSocket around it. It joins the execution's group
*before* reading the current state, so no event can fall between the two,
refuses a bad request with an ``error`` frame and an application close code,
closes with 1000 after the terminal frame, and with the re-check's code when
the user's access is gone (deactivated, token deleted).
"""

from __future__ import annotations

import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from core import metrics
from core.db import read_db
from executions.frames import dumps, error_frame

from .auth import session_key_of
from .broadcast import group_name
from .streams import (
    CLOSE_BAD_REQUEST,
    CLOSE_NORMAL,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    GROUPABLE_ID,
    ExecutionStream,
    StreamFrame,
    parse_after_seq,
    read_opening,
)

logger = logging.getLogger(__name__)


class ExecutionProgressConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    #: Set once the request is valid and the user may see the execution.
    stream: ExecutionStream | None = None
    #: True once the close frame has been asked for: nothing may be sent after it.
    closed: bool = False
    #: True while this socket counts in the open-sockets gauge.
    counted: bool = False

    async def connect(self) -> None:
        self.execution_id: str = self.scope["url_route"]["kwargs"]["execution_id"]
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
        self.stream = ExecutionStream(
            self.execution_id,
            user_pk=user.pk,
            token_key=self.scope.get("auth_token"),
            session_key=session_key_of(self.scope),
            send=self.forward,
            on_terminal=self.finish,
            on_lost=self.lose,
        )
        # Sends the opening, then joins the process's re-check (progress/resync.py).
        await self.stream.start(opening)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed = True
        await super().close(code=code, reason=reason)

    async def send_frame(self, text: str, event_timestamp: str | None = None) -> None:
        """Every frame goes out here, counted (and its event's latency observed when known)."""
        await self.send(text_data=text)
        metrics.frame_sent(event_timestamp)

    async def forward(self, frame: StreamFrame) -> None:
        await self.send_frame(frame.text, frame.timestamp)

    async def refuse(self, message: str, code: int) -> None:
        await self.send_frame(dumps(error_frame(message)))
        await self.close(code=code)

    async def finish(self) -> None:
        """Exactly one terminal frame has been sent: close normally."""
        await self.leave_group()
        await self.close(code=CLOSE_NORMAL)

    async def lose(self, message: str, code: int) -> None:
        """The re-check found the user's access gone: say why, and close with its code."""
        await self.leave_group()
        await self.refuse(message, code)

    async def leave_group(self) -> None:
        if self.group is not None:
            group, self.group = self.group, None
            await self.channel_layer.group_discard(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if self.stream is not None:
            self.stream.stop()
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
        if self.stream is not None and not self.closed:
            await self.stream.catch_up()

    async def progress_event(self, message: dict[str, Any]) -> None:
        if self.stream is not None:
            await self.stream.event(message)
