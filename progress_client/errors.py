"""Typed errors: every refusal of the API becomes one exception class, carrying the ``detail``.

The API answers every error with JSON holding a human-readable ``detail``
string (400s add an ``errors`` field map); callers catch the class they can
handle (``NotFound``, ``Throttled`` ...) instead of comparing status codes.
Stream refusals (an ``error`` frame whose ``code`` is the close code that
follows: 4400, 4401, 4403, 4404) map to the same classes by that code, never by
the message text, so a watch fails the same way whatever carried it.
"""

from __future__ import annotations

from typing import Any

import httpx


class ProgressClientError(Exception):
    """Base of everything this package raises."""


class ConnectionFailed(ProgressClientError):
    """The server could not be reached (or kept dropping the connection) after the retries."""


class ApiError(ProgressClientError):
    """The server answered with an error status."""

    #: The status this class stands for (the actual one is ``status``).
    status_code: int = 0

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        body: Any = None,
        headers: httpx.Headers | dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status if status is not None else self.status_code
        self.body = body
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.detail}" if self.status else self.detail


class ValidationFailed(ApiError):
    """400: the request was invalid; ``errors`` maps fields to messages (may be empty)."""

    status_code = 400

    @property
    def errors(self) -> dict[str, Any]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return errors if isinstance(errors, dict) else {}


class AuthenticationFailed(ApiError):
    """401: no token, or a token the server does not know (or a deactivated user)."""

    status_code = 401


class PermissionDenied(ApiError):
    """403."""

    status_code = 403


class NotFound(ApiError):
    """404: unknown execution or target (someone else's execution looks the same)."""

    status_code = 404


class Conflict(ApiError):
    """409: e.g. an ``Idempotency-Key`` reused with a different body."""

    status_code = 409


class RetryableError(ApiError):
    """An answer that says to come back later; ``retry_after`` in seconds (None if not given)."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after") or self.headers.get("Retry-After"))


class Throttled(RetryableError):
    """429: too many requests."""

    status_code = 429


class ServiceUnavailable(RetryableError):
    """503: e.g. the task queue is unreachable (nothing was stored)."""

    status_code = 503


class ServerError(ApiError):
    """Any other 5xx."""

    status_code = 500


BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls
    for cls in (
        ValidationFailed, AuthenticationFailed, PermissionDenied, NotFound, Conflict, Throttled, ServiceUnavailable
    )
}
#: The streams' application close codes (docs/protocol/frames.md, "Close codes"): 4000 + the HTTP status.
BY_CLOSE_CODE: dict[int, type[ApiError]] = {
    4400: ValidationFailed, 4401: AuthenticationFailed, 4403: PermissionDenied, 4404: NotFound
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the delay form; an HTTP date is not used here)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error for an error answer; ``detail`` from its JSON, else from its text."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str):
        detail = (response.text or response.reason_phrase or "").strip()[:500] or f"HTTP {response.status_code}"
    cls = BY_STATUS.get(response.status_code) or (ServerError if response.status_code >= 500 else ApiError)
    return cls(detail, status=response.status_code, body=body, headers=response.headers)


def error_from_close(message: str, code: int | None) -> ApiError:
    """The typed error for a stream's refusal: chosen by ``code``, ``message`` kept as the detail."""
    cls = BY_CLOSE_CODE.get(code or 0, ApiError)
    return cls(message, status=cls.status_code or (code or 0))
