"""Database reads from async code without queueing on one thread.

Channels' ``database_sync_to_async`` is thread-sensitive by default: every
socket of a process (Channels sets no per-socket context) and every async
view's read would wait for the one thread they all share. The functions given
to :func:`read_db` only read (or, at most, end a session that no longer
verifies, as Django's own ``get_user`` does) and keep no state between calls,
so any thread of the event loop's pool will do. The wrapper still closes
connections that are broken or past ``CONN_MAX_AGE`` around each call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from channels.db import database_sync_to_async

P = ParamSpec("P")
T = TypeVar("T")


def read_db(function: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """``function`` as a coroutine function run in a pooled thread (see the module docstring)."""
    return database_sync_to_async(function, thread_sensitive=False)
