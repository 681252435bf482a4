"""daphne's WebSocket transport, tuned for a server that only streams.

Three adjustments to daphne's WebSocket library (autobahn), installed by
:func:`tune_daphne_websockets` from ``config/asgi.py``:

* **Keep a slow reader's last frames deliverable when the server closes.**
  autobahn waits ``closeHandshakeTimeout`` (1 s, not configurable from
  daphne's command line) for the client's close reply, then aborts the TCP
  connection; whatever the client had not read yet, the terminal frame
  included, is thrown away (measured: 449 of 602 frames reached a slow
  reader). A client's close reply comes only after it has read everything
  before the close frame, so waiting longer costs nothing for a healthy
  client and saves the lagging one. Dead peers are still dropped by daphne's
  keep-alive pings.
* **Cap what a client may send, and only that.** autobahn's
  ``maxMessagePayloadSize`` also caps what the *server* sends: with it, any
  frame over the cap (a ``completed`` frame with large outputs) made the
  consumer crash with ``PayloadExceededError`` and the client saw 1011 instead
  of its terminal frame. The cap is enforced on incoming messages only; a
  larger message (one frame, or fragments adding up to more) is refused with
  close code 1009 and the rest of it is discarded unread. Other protocol
  errors (invalid UTF-8 in a text frame: 1007, a malformed frame: 1002) are
  answered with their close code too, instead of autobahn's default of
  dropping the TCP connection without a word.
* **No pretty-printed configuration per connection.** autobahn formats its
  whole protocol configuration with ``pprint.pformat`` for a debug log line at
  every connection, logged or not: 9 % of a server process's time during a
  burst of connects (py-spy). It is formatted only when autobahn logs at
  debug level.
* **Never raise on a send to a socket that is already closing.** daphne only
  ignores a send once it has heard that the connection is gone; between the
  client's close (or a dropped TCP connection) and that notice, autobahn
  raises ``Disconnected`` into the consumer, which then died with a traceback
  and never left its channel-layer group. Such a send is dropped instead, as
  daphne does a moment later anyway: nothing may follow a close frame.
"""

from __future__ import annotations

import logging
from pprint import pformat
from typing import Any

import txaio
from autobahn.websocket import protocol as autobahn_protocol
from daphne import server as daphne_server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings

logger = logging.getLogger(__name__)

_PATCHED = "_progress_close_timeout_patched"

#: RFC 6455: "a message that is too big for it to process".
CLOSE_MESSAGE_TOO_BIG = 1009


def pformat_when_debugging(value: Any) -> str:
    """autobahn's ``pformat``, skipped (an empty string) unless its debug lines are written."""
    # txaio installs its API at run time (use_twisted / use_asyncio): mypy sees only the stub module.
    if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]  # see above
        return pformat(value)
    return ""


def tune_daphne_websockets() -> None:
    """Install the tuned WebSocket factory and protocol in daphne (see the module docstring)."""
    if getattr(WebSocketFactory, _PATCHED, False):
        return
    # autobahn calls its module's pformat with one argument: the lazier one takes its place.
    autobahn_protocol.pformat = pformat_when_debugging  # type: ignore[assignment]  # one-argument stand-in
    timeout = settings.WEBSOCKET_CLOSE_TIMEOUT_SECONDS
    max_message = settings.WEBSOCKET_MAX_MESSAGE_BYTES

    class StreamingWebSocketProtocol(WebSocketProtocol):
        def onMessageFrameBegin(self, length: int) -> None:  # noqa: N802 - autobahn's name
            super().onMessageFrameBegin(length)  # adds ``length`` to the message's total
            if not self.failedByMe and 0 < max_message < self.message_data_total_length:
                # Fails the connection with 1009; later data of the message is ignored.
                self._max_message_size_exceeded(
                    self.message_data_total_length,
                    max_message,
                    f"message of at least {self.message_data_total_length} bytes exceeds "
                    f"the limit of {max_message} bytes",
                )

        def serverSend(self, content: Any, binary: bool = False) -> None:  # noqa: N802 - daphne's name
            if self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
                logger.debug("dropped a frame for %s: the socket is closing", self.client_addr)
                return
            super().serverSend(content, binary)

    class PatientWebSocketFactory(WebSocketFactory):
        protocol = StreamingWebSocketProtocol

        def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:  # noqa: N802 - autobahn's name
            kwargs.setdefault("closeHandshakeTimeout", timeout)
            # Answer a protocol error with its close code (1009, 1007, 1002).
            kwargs.setdefault("failByDrop", False)
            # Frames cannot be larger than the messages they make up; the
            # message cap itself is StreamingWebSocketProtocol's (autobahn's
            # maxMessagePayloadSize would cap outgoing frames as well).
            kwargs.setdefault("maxFramePayloadSize", max_message)
            super().setProtocolOptions(*args, **kwargs)

    setattr(PatientWebSocketFactory, _PATCHED, True)
    setattr(WebSocketFactory, _PATCHED, True)
    # daphne.server builds its factory from this name when the server starts,
    # after the application module (this one's importer) has been loaded.
    daphne_server.WebSocketFactory = PatientWebSocketFactory
