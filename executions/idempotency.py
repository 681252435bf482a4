"""Idempotent submit: the ``Idempotency-Key`` a client sends with ``POST /executions``.

A submit retried with the same key gets the first answer back, not a second
execution. A key lives per user for ``IDEMPOTENCY_KEY_HOURS``, with a
fingerprint of the body: the same key with another body is a conflict. The
key row is written in the transaction that stores the execution, under a
unique constraint on (user, key): of two simultaneous requests, one commits
and the other finds its execution. A refused submit stores no key.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from .errors import IdempotencyConflictError
from .models import Execution, IdempotencyKey

#: 1 to 255 printable ASCII characters (space to tilde), as the header carries them.
IDEMPOTENCY_KEY_FORMAT = re.compile(r"[\x20-\x7e]{1,255}")


def idempotency_key_error(value: str) -> str | None:
    """Why ``value`` is not a usable key, or None."""
    if IDEMPOTENCY_KEY_FORMAT.fullmatch(value):
        return None
    return "Must be 1 to 255 printable ASCII characters."


def request_fingerprint(body: Any) -> str:
    """sha256 of the parsed body: the same JSON with other key order or spacing is the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_cutoff(now: datetime | None = None) -> datetime:
    """Keys stored before this are expired."""
    return (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def idempotent_execution(
    *, owner: User, key: str, fingerprint: str, now: datetime | None = None
) -> Execution | None:
    """The execution a live ``key`` of ``owner`` made, or None if the key is new (or expired).

    Raises ``IdempotencyConflictError`` when the key came with another body.
    """
    stored = (
        IdempotencyKey.objects.select_related("execution__owner")
        .filter(owner=owner, key=key, created_at__gte=key_cutoff(now))
        .first()
    )
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise IdempotencyConflictError()
    return stored.execution


def idempotency_key_store(
    *, owner: User, key: str, fingerprint: str, execution: Execution, now: datetime | None = None
) -> None:
    """Store the key with the execution it made; call inside the transaction that stores the execution.

    An expired row with the same key is replaced. Raises ``IntegrityError``
    when another request stored the same key first (the unique constraint).
    """
    now = now or timezone.now()
    IdempotencyKey.objects.filter(owner=owner, key=key, created_at__lt=key_cutoff(now)).delete()
    IdempotencyKey.objects.create(owner=owner, key=key, fingerprint=fingerprint, execution=execution, created_at=now)


def idempotency_keys_prune(*, now: datetime | None = None) -> int:
    """Delete expired keys; returns how many. Run with the retention sweep (``executions.maintenance``)."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=key_cutoff(now)).delete()
    return deleted
