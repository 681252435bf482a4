"""daphne's server with a drain: what each process of ``manage.py serve`` runs.

On SIGTERM or SIGINT the process drains (docs/operations/deployment.md) instead of
cancelling every application at once, as daphne does (clients then see 1006):
``/readyz`` answers 503 at once (:mod:`core.serving.drain`), the port stops
accepting (the socket itself stays open in ``serve``), every WebSocket is closed
with 1012 and every event stream ended, spread over ``SERVE_DRAIN_SPREAD_SECONDS``,
requests in progress are answered and their connections closed, idle
connections last; then the reactor stops. daphne's own shutdown only meets
what is still open ``SERVE_GRACE_SECONDS`` (less a margin) after the signal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from daphne.server import Server
from twisted.internet import reactor as installed_reactor

from . import drain
from .http import DrainableHTTPFactory
from .websocket import StreamingWebSocketProtocol

logger = logging.getLogger(__name__)

#: The asyncio reactor daphne's server module installed. Twisted declares the module as
#: its zope interfaces, whose methods mypy takes for unbound ones.
reactor: Any = installed_reactor

#: How often a drain looks whether everything has ended.
CHECK_SECONDS = 0.05
#: The process stops by itself this long before ``serve`` would kill it.
STOP_MARGIN_SECONDS = 1.0


def stop_after(grace: float) -> float:
    """When a drain gives up on what is still open, ``serve`` killing the process at ``grace``."""
    return max(grace - STOP_MARGIN_SECONDS, grace / 2)


class DrainingServer(Server):
    """daphne's ``Server``: its own signal handling, a readiness callback, and :meth:`drain`.

    ``ready`` is called once the reactor runs with the port adopted: from then
    on the process accepts and answers. ``tune_daphne()`` must have run (the
    application module calls it): the drain relies on its WebSocket protocol
    and HTTP factory.
    """

    def __init__(
        self,
        application: Any,
        endpoints: list[str],
        *,
        spread: float,
        grace: float,
        ready: Callable[[], None] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(application, endpoints, signal_handlers=False, **options)
        self.spread = spread
        self.grace = grace
        self.on_ready = ready
        self.ports: list[Any] = []
        #: monotonic time the drain began (None: serving).
        self.drain_started: float | None = None
        self.idle_closed = False

    def run(self) -> None:
        """Serve until drained (or stopped); returns when the reactor has stopped."""
        reactor.callWhenRunning(self._running)
        super().run()

    def _running(self) -> None:
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.drain)
        if self.on_ready is not None:
            self.on_ready()

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    # --- the drain --------------------------------------------------------------------------

    def websockets(self) -> list[StreamingWebSocketProtocol]:
        """The WebSockets of this process whose handshake is done and which are not closing."""
        return [
            protocol
            for protocol in self.connections
            if isinstance(protocol, StreamingWebSocketProtocol) and protocol.state == protocol.STATE_OPEN
        ]

    def applications_running(self) -> int:
        """Application instances not done yet: requests, event streams and sockets still open."""
        return sum(
            1
            for details in self.connections.values()
            if details.get("application_instance") is not None and not details["application_instance"].done()
        )

    def drain(self) -> None:
        """Begin the drain (the module docstring); a second call changes nothing."""
        if self.drain_started is not None:
            return
        self.drain_started = time.monotonic()
        streams = drain.begin()
        for port in self.ports:
            port.stopListening()
        sockets = self.websockets()
        endings: list[Callable[[], None]] = [*(socket.close_for_restart for socket in sockets), *streams]
        # Evenly spread, in no particular order: the clients, all told to come back, do not
        # come back at once, and no kind of stream always comes back last.
        random.shuffle(endings)
        for index, end in enumerate(endings):
            reactor.callLater(self.spread * index / len(endings), end)
        factory = self.http_factory
        if isinstance(factory, DrainableHTTPFactory):
            factory.close_after_responses()
        logger.info(
            "draining (pid %d): %d WebSockets and %d event streams over %g s, %d applications running",
            os.getpid(), len(sockets), len(streams), self.spread, self.applications_running(),
        )
        reactor.callLater(CHECK_SECONDS, self._check)

    def _check(self) -> None:
        """Stop once everything has ended (or at the deadline); else look again shortly."""
        assert self.drain_started is not None
        elapsed = time.monotonic() - self.drain_started
        factory = self.http_factory
        drainable = isinstance(factory, DrainableHTTPFactory)
        if elapsed >= stop_after(self.grace):
            logger.warning(
                "drain (pid %d): %d applications still running after %.1f s; stopping",
                os.getpid(), self.applications_running(), elapsed,
            )
            reactor.stop()
            return
        # Sockets opened since the drain began are closed as they open (StreamingWebSocketProtocol.onOpen).
        quiet = not self.applications_running() and not (drainable and factory.busy())
        if quiet and not (drainable and factory.open_channels()):
            logger.info("drained in %.2f s (pid %d)", elapsed, os.getpid())
            reactor.stop()
            return
        if quiet and drainable and elapsed >= self.spread and not self.idle_closed:
            # Idle kept-alive connections stay open for the spread: a request on one is answered
            # with "Connection: close" (BoundedWebRequest), which beats racing a close with it.
            self.idle_closed = True
            closed = factory.close_idle()
            logger.info("drain: everything answered after %.2f s; closed %d idle connections", elapsed, closed)
        reactor.callLater(CHECK_SECONDS, self._check)
