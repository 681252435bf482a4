"""What daphne's protocols ask of its ``Server``, and no more: drives them without a reactor."""

from __future__ import annotations

import asyncio
from typing import Any


class ServerStandIn:
    """daphne's ``Server`` as its HTTP and WebSocket protocols use it during a request."""

    root_path = ""
    proxy_forwarded_address_header = None
    request_buffer_size = 8192
    server_name = "daphne"

    def protocol_connected(self, protocol: Any) -> None: ...

    def protocol_disconnected(self, protocol: Any) -> None: ...

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> asyncio.Queue[Any]:
        return asyncio.Queue()

    def log_action(self, *args: Any) -> None: ...
