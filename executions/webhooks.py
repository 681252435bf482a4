"""Webhook delivery: a signed POST to ``callback_url`` once an execution ends.

Server-side request forgery is the risk here: a user names a URL and our
server calls it. The address is checked at submit and again at every
delivery, *after* DNS resolution, and the request then connects to the exact
address that passed the check (so a name that re-resolves to a private
address between the check and the connection - DNS rebinding - gains nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

from core import metrics

from .frames import iso
from .models import Execution, WebhookAttempt

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
MAX_RETRIES = 5
#: Countdown before retry n (1-based): 2, 4, 8, 16, 32 s; the first within 5 s.
BACKOFF_BASE_SECONDS = 2.0
SIGNATURE_HEADER = "X-Signature-256"

EVENT_NAMES = {
    "completed": "execution.completed",
    "failed": "execution.failed",
    "cancelled": "execution.cancelled",
}


class UnsafeCallbackUrl(ValueError):  # noqa: N818 - reads as the reason
    """The URL is not http(s), does not resolve, or points at a private address."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def resolve_callback_url(url: str, *, allow_private: bool | None = None) -> Target:
    """Check ``url`` and pick the address to connect to; raise UnsafeCallbackUrl."""
    if allow_private is None:
        allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallbackUrl("Enter a valid http(s) URL.") from exc
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeCallbackUrl("Enter a valid http(s) URL.")
    if parts.username or parts.password:
        raise UnsafeCallbackUrl("Credentials in the URL are not allowed.")
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeCallbackUrl(f"The host {parts.hostname!r} does not resolve.") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise UnsafeCallbackUrl(f"The host {parts.hostname!r} does not resolve.")
    if not allow_private:
        for raw in addresses:
            if _refused(ipaddress.ip_address(raw.split("%", 1)[0])):
                raise UnsafeCallbackUrl(
                    "The callback URL points at a loopback, private, link-local or otherwise "
                    "non-public address; set WEBHOOK_ALLOW_PRIVATE=1 to allow it."
                )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=scheme, host=parts.hostname, port=port, path=path, address=addresses[0])


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(execution: Execution) -> bytes:
    timestamp = execution.completed_at or execution.failed_at or execution.cancelled_at
    payload: dict[str, Any] = {
        "event": EVENT_NAMES[execution.status],
        "execution_id": execution.id,
        "status": execution.status,
        "outputs": execution.outputs,
        "error": execution.error,
        "timestamp": iso(timestamp),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _post(target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST to the checked address, with the original host for Host/SNI/certificate."""
    timeout = urllib3.Timeout(total=TIMEOUT_SECONDS)
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            target.address, target.port, timeout=timeout, retries=False,
            server_hostname=target.host, assert_hostname=target.host, cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False)
    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    if ":" in target.host and not target.host.startswith("["):
        host_header = f"[{target.host}]:{target.port}"
    try:
        response = pool.urlopen(
            "POST", target.path, body=body, headers={**headers, "Host": host_header},
            redirect=False, preload_content=True,
        )
        return response.status
    finally:
        pool.close()


def webhook_deliver(*, execution_id: str, attempt: int) -> bool:
    """One delivery attempt, recorded; True when it needs no retry.

    A refused address is final (retrying would not change the answer);
    a non-2xx answer or no answer is retried by the task.
    """
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None or not execution.callback_url or not execution.is_terminal:
        return True
    body = webhook_body(execution)
    headers = {"Content-Type": "application/json", "User-Agent": "executions-webhook/1"}
    if settings.WEBHOOK_SECRET:
        headers[SIGNATURE_HEADER] = sign(body, settings.WEBHOOK_SECRET)
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    final = refused = False
    try:
        target = resolve_callback_url(execution.callback_url)
        status_code = _post(target, body, headers)
        final = 200 <= status_code < 300
        if not final:
            error = f"HTTP {status_code}"
    except UnsafeCallbackUrl as exc:
        error, final = f"Refused: {exc}", True
        refused = True
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt
        error = f"{type(exc).__name__}: {exc}"[:1000]
    delivered = 200 <= (status_code or 0) < 300
    WebhookAttempt.objects.create(
        execution_id=execution_id,
        attempt=attempt,
        url=execution.callback_url,
        event=EVENT_NAMES[execution.status],
        status_code=status_code,
        error=error,
        duration_ms=int((time.monotonic() - started) * 1000),
        delivered=delivered,
    )
    metrics.webhook_attempted("refused" if refused else "delivered" if delivered else "failed")
    return final


def backoff_seconds(retry: int) -> float:
    return BACKOFF_BASE_SECONDS * (2 ** (retry - 1))
