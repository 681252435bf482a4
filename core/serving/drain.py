"""Whether this server process is draining, and the open streams a drain must end.

A process drains once, on SIGTERM (``core.serving.server``): from then on
:func:`draining` is true (``/readyz`` answers 503) and never false again. The
event streams that a drain ends register here (:func:`add_stream`); the server
calls each one's ``end`` at its turn in the drain's spread. Knows no server
library: anything that serves or streams may read it.
"""

from __future__ import annotations

from collections.abc import Callable

#: The WebSocket close code of a draining server: "service restart, come back" (RFC 6455, IANA).
CLOSE_SERVICE_RESTART = 1012



class _State:
    """The process's one drain state (module functions below read and change it)."""

    def __init__(self) -> None:
        self.draining = False
        #: ``end`` callbacks of the open event streams, by registration.
        self.streams: dict[int, Callable[[], None]] = {}
        self.next_key = 0


_state = _State()


def draining() -> bool:
    """True once this process has begun to drain."""
    return _state.draining


def begin() -> list[Callable[[], None]]:
    """Mark the process draining; the ``end`` of every stream open now, for the server to spread."""
    _state.draining = True
    return list(_state.streams.values())


def add_stream(end: Callable[[], None]) -> Callable[[], None]:
    """Register an open stream's ``end``; returns its unregistration.

    A stream opened while the process already drains is ended at once: its
    client comes back to the processes that took over.
    """
    if _state.draining:
        end()
        return _nothing
    key = _state.next_key
    _state.next_key += 1
    _state.streams[key] = end

    def remove() -> None:
        _state.streams.pop(key, None)

    return remove


def _nothing() -> None:
    """The unregistration of a stream that was never registered."""


def reset() -> None:
    """Forget the drain and every stream (tests play many "processes" in one)."""
    _state.draining = False
    _state.streams.clear()
