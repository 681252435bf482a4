"""Origin checking for WebSocket handshakes.

Browsers always send ``Origin``: a foreign one is cross-site WebSocket
hijacking and is refused with 403 before the handshake. Command-line clients
send none and authenticate with the ``Authorization`` header, so a missing
``Origin`` is allowed (Channels' own validators refuse it).
"""

from __future__ import annotations

from typing import Any

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
        return super().valid_origin(parsed_origin)
