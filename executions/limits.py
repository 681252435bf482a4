"""Size and shape limits of what a client may submit."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings


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
