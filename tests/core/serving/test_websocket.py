"""daphne's WebSocket library as :mod:`core.serving.websocket` adjusts it, without a server.

The behaviour on the wire (1009, 1007, 1002, a slow reader's last frames) is
proved against the live server in tests/e2e (test_ws_fuzz.py, test_slow_reader.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import txaio
from django.test import override_settings

from core.serving.websocket import PatientWebSocketFactory, StreamingWebSocketProtocol, pformat_when_debugging


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
