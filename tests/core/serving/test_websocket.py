"""daphne's WebSocket library as :mod:`core.serving.websocket` adjusts it, without a server.

The behaviour on the wire (1009, 1007, 1002, a slow reader's last frames, 1012
from a draining server) is proved against the live server in tests/e2e
(test_ws_fuzz.py, test_slow_reader.py, test_deploy.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import txaio
from django.test import override_settings
from twisted.internet.testing import StringTransport

from core.serving.websocket import PatientWebSocketFactory, StreamingWebSocketProtocol, pformat_when_debugging

from .stand_in import ServerStandIn

HANDSHAKE = (
    b"GET /api/v1/executions/ws HTTP/1.1\r\nHost: testserver\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: A server's close frame (unmasked) with code 1012 and no reason.
CLOSE_1012 = b"\x88\x02\x03\xf4"


def accepted_socket() -> tuple[StreamingWebSocketProtocol, StringTransport]:
    """A protocol through its opening handshake, accepted as a consumer does, on a transport that records."""
    factory = PatientWebSocketFactory(ServerStandIn(), server="test")
    factory.setProtocolOptions(autoPingTimeout=20, allowNullOrigin=True, openHandshakeTimeout=5)
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol._raw_query_string = b""  # what daphne's HTTP side hands over with an upgrade
    protocol.dataReceived(HANDSHAKE)
    protocol.handle_reply({"type": "websocket.accept"})
    response, _, after = transport.value().partition(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101 ")
    transport.clear()
    transport.write(after)  # what followed the handshake's answer at once, if anything
    return protocol, transport


def test_close_for_restart_sends_1012_after_the_frames_already_written_then_drops_later_ones() -> None:
    protocol, transport = accepted_socket()
    assert protocol.state == protocol.STATE_OPEN
    protocol.serverSend('{"seq":7}', False)
    protocol.close_for_restart()  # autobahn's sendClose would refuse 1012
    protocol.serverSend('{"seq":8}', False)
    assert transport.value() == b'\x81\x09{"seq":7}' + CLOSE_1012
    assert protocol.state == protocol.STATE_CLOSING
    # The close handshake is waited for as patiently as any other close (the slow reader's guarantee).
    assert protocol.closeHandshakeTimeoutCall is not None
    protocol.closeHandshakeTimeoutCall.cancel()
    transport.clear()
    protocol.close_for_restart()  # already closing: nothing more
    assert transport.value() == b""


def test_a_socket_accepted_while_the_process_drains_is_closed_with_1012_at_once(
    draining_process: Callable[[], Any],
) -> None:
    draining_process()
    protocol, transport = accepted_socket()
    assert transport.value() == CLOSE_1012
    assert protocol.state == protocol.STATE_CLOSING
    protocol.closeHandshakeTimeoutCall.cancel()


def test_a_send_to_a_socket_that_is_already_closing_is_dropped_not_raised() -> None:
    """Regression: between a client's close (or a reset) and daphne noticing it, a
    frame for the client made autobahn raise ``Disconnected`` into the consumer,
    which died with a traceback and stayed in its channel-layer group. The fuzz
    test's churn hits that window now and then; this hits it every time."""
    protocol = StreamingWebSocketProtocol()
    protocol.client_addr = ["127.0.0.1", 1]
    sent: list[bytes] = []
    protocol.sendMessage = lambda payload, binary=False, *a, **k: sent.append(payload)  # type: ignore[method-assign]  # a stub transport
    for state in (protocol.STATE_CLOSING, protocol.STATE_CLOSED):
        protocol.state = state
        protocol.serverSend('{"type":"progress"}', False)  # must not raise
    assert sent == []
    protocol.state = protocol.STATE_OPEN
    protocol.serverSend('{"type":"progress"}', False)
    assert sent == [b'{"type":"progress"}']


@override_settings(WEBSOCKET_CLOSE_TIMEOUT_SECONDS=42.0, WEBSOCKET_MAX_MESSAGE_BYTES=1234)
def test_the_factory_waits_for_the_close_reply_and_caps_incoming_frames_only() -> None:
    factory = PatientWebSocketFactory(None, server="test")
    # What daphne's server passes when it starts.
    factory.setProtocolOptions(autoPingTimeout=20, allowNullOrigin=True, openHandshakeTimeout=5)
    assert factory.closeHandshakeTimeout == 42.0
    assert factory.maxFramePayloadSize == 1234
    assert factory.maxMessagePayloadSize == 0  # 0: autobahn caps no message, outgoing ones included
    assert factory.failByDrop is False
    assert factory.protocol is StreamingWebSocketProtocol


@pytest.fixture
def autobahn_log_level() -> Iterator[Callable[[str], None]]:
    """Sets txaio's (autobahn's) global log level for one test."""
    before = txaio.get_global_log_level()  # type: ignore[attr-defined]  # installed at run time, see websocket.py
    yield txaio.set_global_log_level  # type: ignore[attr-defined]  # installed at run time, see websocket.py
    txaio.set_global_log_level(before)  # type: ignore[attr-defined]  # installed at run time, see websocket.py


@pytest.mark.parametrize(("level", "formatted"), [("info", False), ("debug", True), ("trace", True)])
def test_the_configuration_is_formatted_only_for_autobahns_debug_log(
    autobahn_log_level: Callable[[str], None], level: str, formatted: bool
) -> None:
    autobahn_log_level(level)
    expected = "{'closeHandshakeTimeout': 60}" if formatted else ""
    assert pformat_when_debugging({"closeHandshakeTimeout": 60}) == expected
