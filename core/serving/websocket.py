"""daphne's WebSocket library (autobahn), adjusted for a server that only streams.

Five adjustments, installed by :func:`core.serving.daphne.tune_daphne`:
a slow reader keeps its last frames when the server closes
(:class:`PatientWebSocketFactory`); only what a client sends is capped, and a
protocol error is answered with its close code (1009, 1007, 1002); a send to a
socket that is already closing is dropped, not raised; a draining server
closes with 1012 (:class:`StreamingWebSocketProtocol`); autobahn's
configuration is pretty-printed only for its debug log (:func:`pformat_when_debugging`).
"""

from __future__ import annotations

import logging
from pprint import pformat
from typing import Any

import txaio
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings

from . import drain

logger = logging.getLogger(__name__)


def pformat_when_debugging(value: Any) -> str:
    """autobahn's ``pformat``, skipped (an empty string) unless its debug lines are written.

    autobahn formats its whole configuration for a debug line at every
    connection, whether that line is logged or not.
    """
    # txaio installs its API at run time (use_twisted / use_asyncio): mypy sees only the stub module.
    if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]  # see above
        return pformat(value)
    return ""


class StreamingWebSocketProtocol(WebSocketProtocol):
    """daphne's protocol: incoming messages capped, no raise on a closing socket, 1012 for a drain.

    autobahn's ``maxMessagePayloadSize`` would also cap what the *server*
    sends: a frame over it (a ``completed`` frame with large outputs) made the
    consumer crash with ``PayloadExceededError``, and the client saw 1011
    instead of its terminal frame. Here a larger incoming message (one frame,
    or fragments adding up to more) fails the connection with 1009 and the rest
    of it is discarded unread.

    daphne ignores a send only once it has heard that the connection is gone;
    between the client's close (or a dropped TCP connection) and that notice,
    autobahn raised ``Disconnected`` into the consumer, which died with a
    traceback and never left its channel-layer group. Such a send is dropped:
    nothing may follow a close frame anyway.

    A draining server closes every socket with 1012 (:meth:`close_for_restart`).
    """

    def onMessageFrameBegin(self, length: int) -> None:  # noqa: N802 - autobahn's name
        super().onMessageFrameBegin(length)  # adds ``length`` to the message's total
        max_message = settings.WEBSOCKET_MAX_MESSAGE_BYTES
        if not self.failedByMe and 0 < max_message < self.message_data_total_length:
            # Fails the connection with 1009; later data of the message is ignored.
            self._max_message_size_exceeded(
                self.message_data_total_length,
                max_message,
                f"message of at least {self.message_data_total_length} bytes exceeds "
                f"the limit of {max_message} bytes",
            )

    def onOpen(self) -> None:  # noqa: N802 - autobahn's name
        super().onOpen()
        if drain.draining():
            # Opened while the process drains (a handshake under way when it
            # began): the client comes back to the processes that took over.
            self.close_for_restart()

    def close_for_restart(self) -> None:
        """Close with 1012 ("service restart"), through the normal close handshake.

        autobahn's ``sendClose`` lets an application send only 1000 and
        3000-4999; its ``sendCloseFrame`` validates nothing and is what
        ``sendClose`` calls after its check. The close frame goes out after the
        frames already written (a slow reader still gets them), and the
        factory's patient ``closeHandshakeTimeout`` applies. Frames the
        consumer sends after it are dropped (:meth:`serverSend`): the client
        resumes after the last ``seq`` it received.
        """
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=drain.CLOSE_SERVICE_RESTART, isReply=False)

    def serverSend(self, content: Any, binary: bool = False) -> None:  # noqa: N802 - daphne's name
        if self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            logger.debug("dropped a frame for %s: the socket is closing", self.client_addr)
            return
        super().serverSend(content, binary)


class PatientWebSocketFactory(WebSocketFactory):
    """daphne's factory, waiting ``WEBSOCKET_CLOSE_TIMEOUT_SECONDS`` for a client's close reply.

    When the server closes, autobahn waits ``closeHandshakeTimeout`` (1 s, not
    settable from daphne's command line) for the client's close reply, then
    aborts the TCP connection: whatever the client had not read yet, the
    terminal frame included, is thrown away. A client replies only after it has
    read everything before the close frame, so waiting longer costs a healthy
    client nothing and saves a lagging one. Dead peers are still dropped by
    daphne's keep-alive pings.
    """

    protocol = StreamingWebSocketProtocol

    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802 - autobahn's name
        kwargs.setdefault("closeHandshakeTimeout", settings.WEBSOCKET_CLOSE_TIMEOUT_SECONDS)
        # Answer a protocol error with its close code (1009, 1007, 1002) rather
        # than autobahn's default of dropping the TCP connection without a word.
        kwargs.setdefault("failByDrop", False)
        # Frames cannot be larger than the messages they make up; the message
        # cap itself is StreamingWebSocketProtocol's (autobahn's
        # maxMessagePayloadSize would cap outgoing frames as well).
        kwargs.setdefault("maxFramePayloadSize", settings.WEBSOCKET_MAX_MESSAGE_BYTES)
        super().setProtocolOptions(*args, **kwargs)
