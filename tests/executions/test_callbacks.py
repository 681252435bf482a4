"""The check of a callback URL (``executions.callbacks``): scheme, credentials, and the address after DNS.

Delivery against a real receiver, and a name that turns private after the
submit, are in ``test_webhooks``.
"""

from __future__ import annotations

from typing import Any

import pytest

from executions.callbacks import resolve_callback_url
from executions.errors import UnsafeCallbackUrlError


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/hook",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_private_addresses_are_refused(url: str, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(UnsafeCallbackUrlError):
        resolve_callback_url(url)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http://user:pw@127.0.0.1/", "gopher://x/"])
def test_non_http_urls_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(UnsafeCallbackUrlError):
        resolve_callback_url(url, allow_private=True)


def test_public_address_is_accepted() -> None:
    callback = resolve_callback_url("https://93.184.215.14:8443/path?q=1", allow_private=False)
    assert (callback.scheme, callback.address, callback.port, callback.path) == (
        "https", "93.184.215.14", 8443, "/path?q=1"
    )
