"""Database reads from async code without queueing on one thread, and IN lists cut to size.

Channels' ``database_sync_to_async`` is thread-sensitive by default: every
socket of a process (Channels sets no per-socket context) and every async
view's read would wait for the one thread they all share. The functions given
to :func:`read_db` only read (or, at most, end a session that no longer
verifies, as Django's own ``get_user`` does) and keep no state between calls,
so any thread of the event loop's pool will do. The wrapper still closes
connections that are broken or past ``CONN_MAX_AGE`` around each call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import ParamSpec, TypeVar

from channels.db import database_sync_to_async

P = ParamSpec("P")
T = TypeVar("T")

#: The most values one ``IN`` list holds: below SQLite's variable limit, and short queries.
IN_LIST_SIZE = 500


def read_db(function: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """``function`` as a coroutine function run in a pooled thread (see the module docstring)."""
    return database_sync_to_async(function, thread_sensitive=False)


def chunks(values: Iterable[T], size: int = IN_LIST_SIZE) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``, for queries with an ``IN`` list each."""
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]
