"""daphne as this service runs it: :func:`tune_daphne`, the one installer of every adjustment.

Each adjustment is a subclass or a stand-in defined beside its subject
(:mod:`core.serving.websocket`, :mod:`core.serving.http`); this module alone
puts them into daphne and autobahn. Under another ASGI server the
adjustments are inert and :class:`core.serving.http.BoundedBody` still bounds
request bodies.
"""

from __future__ import annotations

from autobahn.websocket import protocol as autobahn_protocol
from daphne import http_protocol
from daphne import server as daphne_server

from . import http, websocket


def tune_daphne() -> None:
    """Install the WebSocket and HTTP adjustments in daphne; calling it again changes nothing."""
    # autobahn calls its module's pformat with one argument: the lazier one takes its place.
    autobahn_protocol.pformat = websocket.pformat_when_debugging  # type: ignore[assignment]  # one-argument stand-in
    # daphne's server builds its WebSocket factory from this name when it starts,
    # after the application module (which calls this) has been loaded.
    daphne_server.WebSocketFactory = websocket.PatientWebSocketFactory
    # Read the same way: the HTTP factory that keeps its connections for a drain.
    daphne_server.HTTPFactory = http.DrainableHTTPFactory
    # daphne's HTTP factory reads this name for every connection it builds.
    http_protocol.WebRequest = http.BoundedWebRequest
