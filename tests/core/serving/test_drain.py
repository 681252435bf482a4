"""A process's drain in pieces, without a reactor: its state, and its HTTP connections.

The whole drain of a real ``serve`` (1012 on every socket, event streams ended,
no request failed, across SIGTERM and SIGHUP) is in tests/e2e/test_deploy.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from core.serving import drain
from core.serving.daphne import tune_daphne
from core.serving.http import DrainableHTTPFactory

from .stand_in import ServerStandIn

Begin = Callable[[], list[Callable[[], None]]]


def test_streams_open_when_the_drain_begins_are_handed_to_the_server_to_end(draining_process: Begin) -> None:
    ended: list[str] = []
    forget_a = drain.add_stream(lambda: ended.append("a"))
    drain.add_stream(lambda: ended.append("b"))
    forget_a()  # stream a ended by itself
    assert not drain.draining()
    ends = draining_process()
    assert drain.draining()
    assert ended == []  # the server calls them, each at its turn in the spread
    for end in ends:
        end()
    assert ended == ["b"]


def test_a_stream_opened_during_the_drain_is_ended_at_once(draining_process: Begin) -> None:
    draining_process()
    ended: list[str] = []
    forget = drain.add_stream(lambda: ended.append("late"))
    assert ended == ["late"]
    forget()  # harmless
    assert drain.begin() == []


# --- HTTP connections ------------------------------------------------------------------------


@pytest.fixture
def factory() -> DrainableHTTPFactory:
    tune_daphne()  # daphne's requests are then ours (BoundedWebRequest)
    return DrainableHTTPFactory(ServerStandIn())


def connect(factory: DrainableHTTPFactory) -> tuple[Any, StringTransport]:
    """A connection accepted by the factory, on a transport that records what is written."""
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    # As a TCP transport has them: the protocol it feeds, and whether it is still connected.
    transport.protocol = protocol  # type: ignore[attr-defined]  # a TCP transport's attribute
    transport.connected = True
    protocol.makeConnection(transport)
    return protocol, transport


def answer(protocol: Any, body: bytes = b"ok") -> None:
    """The application's answer to the connection's request in progress."""
    request = protocol._channel.requests[0]
    request.handle_reply({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    request.handle_reply({"type": "http.response.body", "body": body})


def test_a_request_in_progress_is_answered_then_its_connection_closed(
    factory: DrainableHTTPFactory, draining_process: Begin
) -> None:
    busy, busy_transport = connect(factory)
    idle, idle_transport = connect(factory)
    busy.dataReceived(b"GET /api/v1/executions HTTP/1.1\r\nHost: testserver\r\n\r\n")
    assert (len(factory.open_channels()), factory.busy()) == (2, 1)

    draining_process()
    factory.close_after_responses()
    answer(busy)
    assert busy_transport.value().startswith(b"HTTP/1.1 200 OK\r\nConnection: close\r\n")
    assert busy_transport.value().endswith(b"2\r\nok\r\n0\r\n\r\n")  # the whole answer, then the close
    assert busy_transport.disconnecting
    # The idle connection stays open: a client polling on it gets its next answer, then the close.
    assert not idle_transport.disconnecting
    idle.dataReceived(b"GET /readyz HTTP/1.1\r\nHost: testserver\r\n\r\n")
    answer(idle)
    assert idle_transport.value().startswith(b"HTTP/1.1 200 OK\r\nConnection: close\r\n")
    assert idle_transport.disconnecting


def test_idle_connections_are_closed_last(factory: DrainableHTTPFactory, draining_process: Begin) -> None:
    busy, busy_transport = connect(factory)
    _, idle_transport = connect(factory)
    busy.dataReceived(b"GET /api/v1/executions HTTP/1.1\r\nHost: testserver\r\n\r\n")
    draining_process()
    assert factory.close_idle() == 1
    assert idle_transport.disconnecting and idle_transport.value() == b""
    assert not busy_transport.disconnecting and factory.busy() == 1
