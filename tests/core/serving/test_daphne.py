"""``tune_daphne()``: every adjustment lands where daphne looks it up, once."""

from __future__ import annotations

from autobahn.websocket import protocol as autobahn_protocol
from daphne import http_protocol
from daphne import server as daphne_server

from core.serving import http, websocket
from core.serving.daphne import tune_daphne


def test_tune_daphne_installs_every_adjustment_and_a_second_call_changes_nothing() -> None:
    for _ in range(2):
        tune_daphne()
        assert daphne_server.WebSocketFactory is websocket.PatientWebSocketFactory
        assert daphne_server.HTTPFactory is http.DrainableHTTPFactory
        assert http_protocol.WebRequest is http.BoundedWebRequest
        assert autobahn_protocol.pformat is websocket.pformat_when_debugging


def test_daphnes_http_factory_builds_requests_of_the_bounded_class() -> None:
    """daphne reads the request class from its module at every connection (daphne 4.2)."""
    tune_daphne()
    channel = http_protocol.HTTPFactory(server=None).buildProtocol(("127.0.0.1", 1))
    assert channel.requestFactory is http.BoundedWebRequest
