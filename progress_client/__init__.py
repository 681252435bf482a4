"""A Python client of the executions API: start, inspect, cancel, and watch without losing a frame.

    from progress_client import Client

    with Client("http://127.0.0.1:8000", token) as client:
        started = client.start("demo_steps", {"steps": 3})
        for frame in client.watch(started["execution_id"]):
            print(frame["type"], frame.get("progress"))

Depends on httpx, websockets and rich only (nothing of the server). The
command line is ``python -m progress_client`` (see ``cli.py``).
"""

from .client import TRANSPORTS, AsyncClient, Client
from .errors import (
    ApiError,
    AuthenticationFailed,
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    ProgressClientError,
    ServerError,
    ServiceUnavailable,
    Throttled,
    ValidationFailed,
)

__all__ = [
    "TRANSPORTS",
    "ApiError",
    "AsyncClient",
    "AuthenticationFailed",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "NotFound",
    "PermissionDenied",
    "ProgressClientError",
    "ServerError",
    "ServiceUnavailable",
    "Throttled",
    "ValidationFailed",
]
