"""The check of a ``callback_url``: made at submit, and again before every webhook delivery.

Server-side request forgery is the risk: a user names a URL and our server
calls it. :func:`resolve_callback_url` checks the address *after* DNS
resolution and returns the exact address that passed, which the delivery
(``executions.webhooks``) then connects to: a name that re-resolves to a
private address between the check and the connection (DNS rebinding) gains
nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from .errors import UnsafeCallbackUrlError


@dataclass(frozen=True)
class CallbackAddress:
    """A callback URL that passed the check, with the one address to connect to."""

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


def resolve_callback_url(url: str, *, allow_private: bool | None = None) -> CallbackAddress:
    """Check ``url`` and pick the address to connect to; raise :class:`UnsafeCallbackUrlError`."""
    if allow_private is None:
        allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallbackUrlError("Enter a valid http(s) URL.") from exc
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeCallbackUrlError("Enter a valid http(s) URL.")
    if parts.username or parts.password:
        raise UnsafeCallbackUrlError("Credentials in the URL are not allowed.")
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeCallbackUrlError(f"The host {parts.hostname!r} does not resolve.") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise UnsafeCallbackUrlError(f"The host {parts.hostname!r} does not resolve.")
    if not allow_private:
        for raw in addresses:
            if _refused(ipaddress.ip_address(raw.split("%", 1)[0])):
                raise UnsafeCallbackUrlError(
                    "The callback URL points at a loopback, private, link-local or otherwise "
                    "non-public address; set WEBHOOK_ALLOW_PRIVATE=1 to allow it."
                )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return CallbackAddress(scheme=scheme, host=parts.hostname, port=port, path=path, address=addresses[0])
