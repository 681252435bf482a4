"""Origin checking for WebSocket handshakes.

Browsers always send ``Origin``: a foreign one is cross-site WebSocket
hijacking and is refused with 403 before the handshake. Command-line clients
send none and authenticate with the ``Authorization`` header, so a missing
``Origin`` is allowed (Channels' own validators refuse it).

An ``Origin`` that is not a serialized origin (``scheme://host[:port]``, what
browsers send) is refused too: ``http://evil.example@localhost`` names the host
``localhost`` to ``urlparse`` and would otherwise pass.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    def __init__(self, application: Any):
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return is_serialized_origin(parsed_origin) and super().valid_origin(parsed_origin)


def is_serialized_origin(parsed: ParseResult) -> bool:
    """Only a scheme, a host and an optional port (RFC 6454; a trailing ``/`` is tolerated)."""
    return (
        bool(parsed.scheme)
        and bool(parsed.hostname)
        and "@" not in parsed.netloc
        and parsed.path in ("", "/")
        and not (parsed.params or parsed.query or parsed.fragment)
    )
