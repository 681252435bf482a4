"""The limits of an execution: the size and shape of what a client may submit, and how long a run may take.

``config.timeout`` is the run's own, cooperative limit (the run context stops
the target); :func:`run_time_limits` gives the worker's soft and hard limits,
backstops that fire only when a target ignores it. Every limit here comes from
the settings or the submitted config: nothing else decides them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings

#: Seconds the hard time limit allows past the soft one, for the target to
#: unwind after the soft limit's exception before its process is killed.
HARD_LIMIT_GRACE_SECONDS = 10


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counting stops once ``limit`` is passed."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        level = nxt
    return depth - 1 if not level else depth


def json_limit_error(value: Any, *, max_bytes: int) -> str | None:
    """A message when ``value`` is too large or too deeply nested, else None."""
    max_depth = settings.EXECUTION_JSON_MAX_DEPTH
    if json_depth(value, max_depth) > max_depth:
        return f"Nested too deeply: at most {max_depth} levels are allowed."
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        return f"Too large: {size} bytes of JSON; the limit is {max_bytes} bytes."
    return None


def execution_timeout(config: Mapping[str, Any]) -> float | None:
    """``config.timeout`` in seconds, or None when the execution has none."""
    value = config.get("timeout")
    return float(value) if value is not None else None


def run_time_limits(config: Mapping[str, Any], *, elapsed_seconds: float = 0.0) -> tuple[float, float]:
    """(soft, hard) limits of the worker: the cooperative timeout fires first, these are backstops.

    ``elapsed_seconds`` is the time earlier attempts of a durable run took: a
    later attempt gets what remains (``config.timeout`` counts the whole execution).
    """
    timeout = execution_timeout(config)
    soft = min(timeout + 2, settings.EXECUTION_MAX_SECONDS) if timeout else settings.EXECUTION_MAX_SECONDS
    soft = max(soft - elapsed_seconds, 2)
    return soft, soft + HARD_LIMIT_GRACE_SECONDS
