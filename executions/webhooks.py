"""Webhook delivery: a signed POST to ``callback_url`` once an execution ends.

Every attempt checks the URL again (``executions.callbacks``: a name may
re-resolve to a private address since the submit) and connects to the exact
address that passed; a refused address is final, any other failure is retried
by the task with backoff. Every attempt is stored (``WebhookAttempt``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import urllib3
from django.conf import settings

from core import metrics

from .callbacks import CallbackAddress, resolve_callback_url
from .errors import UnsafeCallbackUrlError
from .frames import iso
from .models import TERMINAL_STATUSES, Execution, WebhookAttempt

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
MAX_RETRIES = 5
#: Countdown before retry n (1-based): 2, 4, 8, 16, 32 s; the first within 5 s.
BACKOFF_BASE_SECONDS = 2.0
SIGNATURE_HEADER = "X-Signature-256"

#: The ``event`` of the body, per terminal status.
EVENT_NAMES = {str(status): f"execution.{status}" for status in TERMINAL_STATUSES}


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


def _post(callback: CallbackAddress, body: bytes, headers: dict[str, str]) -> int:
    """POST to the checked address, with the original host for Host/SNI/certificate."""
    timeout = urllib3.Timeout(total=TIMEOUT_SECONDS)
    if callback.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            callback.address, callback.port, timeout=timeout, retries=False,
            server_hostname=callback.host, assert_hostname=callback.host, cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(callback.address, callback.port, timeout=timeout, retries=False)
    host_header = callback.host if callback.port in (80, 443) else f"{callback.host}:{callback.port}"
    if ":" in callback.host and not callback.host.startswith("["):
        host_header = f"[{callback.host}]:{callback.port}"
    try:
        response = pool.urlopen(
            "POST", callback.path, body=body, headers={**headers, "Host": host_header},
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
        callback = resolve_callback_url(execution.callback_url)
        status_code = _post(callback, body, headers)
        final = 200 <= status_code < 300
        if not final:
            error = f"HTTP {status_code}"
    except UnsafeCallbackUrlError as exc:
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
