"""Integers in query strings and headers, parsed the same way by every edge.

A query integer is plain ASCII digits (``"+5"``, ``" 5"``, ``"5.0"`` and
``"-1"`` are not), at most 18 of them: every such value fits the database's
64-bit integers, so a comparison with one can never overflow.
"""

from __future__ import annotations

MAX_QUERY_DIGITS = 18
MAX_QUERY_INTEGER = 10**MAX_QUERY_DIGITS - 1


def parse_seq(raw: object) -> int | None:
    """A ``seq`` (or any count) written in plain digits, else None."""
    if not (isinstance(raw, str) and raw.isascii() and raw.isdigit()) or len(raw) > MAX_QUERY_DIGITS:
        return None
    return int(raw)
