"""Writes that start or stop executions (events themselves: ``executions.events``)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from .events import RecordedEvent, event_record
from .models import EventType, Execution
from .registry import get_target
from .runner import execution_fail, execution_timeout
from .tasks import run_execution
from .webhooks import resolve_callback_url

logger = logging.getLogger(__name__)

#: Seconds the hard Celery time limit allows past the soft one, for the
#: target to unwind after SoftTimeLimitExceeded before its process is killed.
HARD_LIMIT_GRACE_SECONDS = 10


class TargetNotFound(LookupError):  # noqa: N818 - reads as the API's answer
    def __init__(self, target_type: str, target_id: str):
        label = "Agent" if target_type == "agent" else "Pipeline"
        super().__init__(f"{label} '{target_id}' not found")


class CannotCancel(ValueError):  # noqa: N818
    def __init__(self, status: str):
        super().__init__(f"Cannot cancel execution with status '{status}'")
        self.status = status


def execution_create(
    *,
    owner: AbstractBaseUser,
    type: str,  # noqa: A002 - the contract's name
    target_id: str,
    inputs: dict[str, Any],
    config: dict[str, Any],
    callback_url: str = "",
) -> Execution:
    """Validate against the target's declaration, store, and queue after commit.

    Raises ``webhooks.UnsafeCallbackUrl`` (a ``callback_url`` on a private
    address), :class:`TargetNotFound` or ``registry.InputsInvalid``, checked in
    that order.
    """
    if callback_url:
        resolve_callback_url(callback_url)
    target = get_target(type, target_id)
    if target is None:
        raise TargetNotFound(type, target_id)
    cleaned = target.validate_inputs(inputs)
    with transaction.atomic():
        execution = Execution.objects.create(
            owner=owner,
            type=type,
            target_id=target_id,
            inputs=cleaned,
            config=config,
            callback_url=callback_url or "",
        )
        transaction.on_commit(lambda: _enqueue(execution))
    return execution


def celery_time_limits(config: dict[str, Any]) -> tuple[float, float]:
    """(soft, hard) limits: the cooperative timeout fires first, these are backstops."""
    timeout = execution_timeout(config)
    soft = min(timeout + 2, settings.EXECUTION_MAX_SECONDS) if timeout else settings.EXECUTION_MAX_SECONDS
    return soft, soft + HARD_LIMIT_GRACE_SECONDS


def _enqueue(execution: Execution) -> None:
    soft, hard = celery_time_limits(execution.config)
    try:
        run_execution.apply_async(args=[execution.id], soft_time_limit=soft, time_limit=hard)
    except Exception as exc:  # noqa: BLE001 - a broker outage must not leave it pending forever
        logger.exception("could not queue %s", execution.id)
        execution_fail(
            execution_id=execution.id,
            error={"type": "QueueUnavailable", "message": f"Could not queue the execution: {exc}", "details": None},
        )


def execution_cancel(*, execution_id: str) -> RecordedEvent:
    """Cancel a pending or running execution at once, in the database and on the sockets.

    A pending one never runs (its task's claim fails); a running one's target is
    interrupted by its monitor within ``PROGRESS_CANCEL_POLL_SECONDS``.
    Raises :class:`CannotCancel` when it has already ended.
    """
    recorded = event_record(execution_id=execution_id, event_type=EventType.CANCELLED)
    if recorded is None:
        status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
        raise CannotCancel(status or "unknown")
    return recorded
