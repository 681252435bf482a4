"""The WebSocket consumers' base, and the socket of one execution.

:class:`StreamConsumer` is what every socket of the edge shares (as Channels
layers ``JsonWebsocketConsumer`` on ``WebsocketConsumer``): it accepts first,
so that every refusal is an ``error`` frame with the close code that follows
it, sends nothing once its close frame is asked for, answers client messages
with ``"Unsupported message"``, and counts its frames and itself in the metrics.
:class:`ExecutionProgressConsumer` is the WebSocket around one execution's
``ExecutionStream`` (``progress.streams``); the feed socket is ``progress.feed``.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from core import metrics
from core.db import read_db
from executions.frames import dumps, error_frame

from .auth import session_key_of
from .protocol import (
    CLOSE_NORMAL,
    GROUPABLE_ID,
    INVALID_AFTER_SEQ,
    UNAUTHENTICATED,
    UNSUPPORTED_MESSAGE,
    EventMessage,
    LayerReconnectedMessage,
    Refusal,
    execution_group,
    not_found,
)
from .streams import ExecutionStream, StreamFrame, parse_after_seq, read_opening


class StreamConsumer(AsyncWebsocketConsumer):
    """A server-to-client socket: frames out, refusals as an ``error`` frame and a close code.

    Subclasses call :meth:`open` first in ``connect``, then :meth:`refuse` or
    start streaming; their ``disconnect`` cleans up their own state and calls
    this one's.
    """

    #: True once the close frame has been asked for: nothing may be sent after it.
    closed: bool = False
    #: True while this socket counts in the open-sockets gauge.
    counted: bool = False

    async def open(self) -> None:
        """Accept the handshake: the contract answers every refusal on an open socket."""
        await self.accept()
        self.counted = True
        metrics.socket_opened()

    async def send_frame(self, text: str, event_timestamp: str | None = None) -> None:
        """Every frame goes out here, counted (and its event's latency observed when known)."""
        if self.closed:
            return
        await self.send(text_data=text)
        metrics.frame_sent(event_timestamp)

    async def refuse(self, message: str, code: int) -> None:
        """An ``error`` frame carrying ``code``, then close with it."""
        await self.send_frame(dumps(error_frame(message, code)))
        await self.close(code=code)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Ask for the close frame; nothing is sent after it."""
        self.closed = True
        await super().close(code=code, reason=reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Frames from the client are not part of the protocol: say so, and stay open."""
        await self.send_frame(dumps(error_frame(UNSUPPORTED_MESSAGE, None)))

    async def disconnect(self, code: int) -> None:
        """The socket is gone: send nothing more, leave the open-sockets gauge."""
        self.closed = True
        if self.counted:
            self.counted = False
            metrics.socket_closed()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, without its ``aclose_old_connections`` per message.

        That call is a thread-sensitive hop to the one thread every socket of
        the process shares, for each frame of each socket: with many sockets it
        is the bottleneck. These consumers' database reads run through
        ``read_db``, which closes stale connections in its own threads.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class ExecutionProgressConsumer(StreamConsumer):
    """``WS /api/v1/executions/{id}/progress/ws``: one execution's frames, then close 1000."""

    group: str | None = None
    #: Set once the request is valid and the user may see the execution.
    stream: ExecutionStream | None = None

    async def connect(self) -> None:
        """Check the request in the contract's order, join the group, then send the opening."""
        self.execution_id: str = self.scope["url_route"]["kwargs"]["execution_id"]
        await self.open()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(*UNAUTHENTICATED)
        valid, after_seq = parse_after_seq(self.scope.get("query_string", b""))
        if not valid:
            return await self.refuse(*INVALID_AFTER_SEQ)
        if not GROUPABLE_ID.fullmatch(self.execution_id):
            # No execution has such an id (they are "exec_" and hex digits).
            return await self.refuse(*not_found(self.execution_id))
        # Join before reading the state, so that no event can fall between the
        # two; the read also checks that the user may see the execution.
        self.group = execution_group(self.execution_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        opening = await read_db(read_opening)(user=user, execution_id=self.execution_id, after_seq=after_seq)
        if opening is None:
            await self.leave_group()
            return await self.refuse(*not_found(self.execution_id))
        self.stream = ExecutionStream(
            self.execution_id,
            user_pk=user.pk,
            token_key=self.scope.get("auth_token"),
            session_key=session_key_of(self.scope),
            send=self.forward,
            on_terminal=self.finish,
            on_lost=self.lose,
        )
        # Sends the opening, then joins the process's re-check (progress/recheck.py).
        await self.stream.start(opening)

    async def forward(self, frame: StreamFrame) -> None:
        """The stream's way out: one frame, as the stream ordered it."""
        await self.send_frame(frame.text, frame.timestamp)

    async def finish(self) -> None:
        """Exactly one terminal frame has been sent: close normally."""
        await self.leave_group()
        await self.close(code=CLOSE_NORMAL)

    async def lose(self, refusal: Refusal) -> None:
        """The re-check found the user's access gone: say why, and close with its code."""
        await self.leave_group()
        await self.refuse(*refusal)

    async def leave_group(self) -> None:
        """Leave the execution's group, once."""
        if self.group is not None:
            group, self.group = self.group, None
            await self.channel_layer.group_discard(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        """Stop the stream (it leaves the re-check), then leave the group."""
        if self.stream is not None:
            self.stream.stop()
        await super().disconnect(code)
        await self.leave_group()

    # --- messages from the channel layer ----------------------------------------------------

    async def progress_event(self, message: EventMessage) -> None:
        """A recorded event: the stream sends it in ``seq`` order (or fills a gap first)."""
        if self.stream is not None:
            await self.stream.event(message)

    async def layer_reconnected(self, message: LayerReconnectedMessage) -> None:
        """The channel layer's subscription is back after Redis was away: read what was missed."""
        if self.stream is not None and not self.closed:
            await self.stream.catch_up()
