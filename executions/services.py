"""Writes that start or stop executions (events themselves: ``executions.events``)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from .events import RecordedEvent, event_record
from .models import EventType, Execution, ExecutionStatus
from .registry import get_target
from .runner import execution_timeout
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


class QueueUnavailable(RuntimeError):  # noqa: N818 - reads as the API's answer
    """The broker could not take the run's task message (Redis down); nothing was stored."""

    def __init__(self, cause: BaseException):
        super().__init__(f"The task queue is unavailable, try again shortly ({type(cause).__name__})")


class CannotCancel(ValueError):  # noqa: N818 - reads as the API's answer
    def __init__(self, status: str):
        super().__init__(f"Cannot cancel execution with status '{status}'")
        self.status = status


def execution_create(
    *,
    owner: User,
    type: str,  # noqa: A002 - the contract's name
    target_id: str,
    inputs: dict[str, Any],
    config: dict[str, Any],
    callback_url: str = "",
) -> Execution:
    """Validate against the target's declaration, store, and queue after commit.

    Raises ``webhooks.UnsafeCallbackUrl`` (a ``callback_url`` on a private
    address), :class:`TargetNotFound` or ``registry.InputsInvalid``, checked in
    that order, and :class:`QueueUnavailable` when the broker cannot take the
    task: the row is then deleted again, so a refused submit leaves nothing.
    """
    if callback_url:
        resolve_callback_url(callback_url)
    target = get_target(type, target_id)
    if target is None:
        raise TargetNotFound(type, target_id)
    cleaned = target.validate_inputs(inputs)
    execution: Execution | None = None
    try:
        with transaction.atomic():
            execution = Execution.objects.create(
                owner=owner,
                type=type,
                target_id=target_id,
                inputs=cleaned,
                config=config,
                callback_url=callback_url or "",
                enqueued_at=timezone.now(),
            )
            created = execution
            # After commit, or the worker may not find the row; robust=False
            # so that a broker failure reaches this caller.
            transaction.on_commit(lambda: execution_enqueue(created), robust=False)
    except QueueUnavailable:
        if execution is not None:
            Execution.objects.filter(pk=execution.id, status=ExecutionStatus.PENDING, seq=0).delete()
        raise
    return execution


def celery_time_limits(config: dict[str, Any]) -> tuple[float, float]:
    """(soft, hard) limits: the cooperative timeout fires first, these are backstops."""
    timeout = execution_timeout(config)
    soft = min(timeout + 2, settings.EXECUTION_MAX_SECONDS) if timeout else settings.EXECUTION_MAX_SECONDS
    return soft, soft + HARD_LIMIT_GRACE_SECONDS


def execution_enqueue(execution: Execution) -> None:
    """Hand the run's task to the broker; raise :class:`QueueUnavailable` if it is unreachable.

    Also used to queue a pending execution again when its message was lost
    (``executions.maintenance``): the run's claim makes a second delivery harmless.
    """
    soft, hard = celery_time_limits(execution.config)
    try:
        run_execution.apply_async(args=[execution.id], soft_time_limit=soft, time_limit=hard)
    except (OperationalError, OSError) as exc:
        logger.warning("could not queue %s: %r", execution.id, exc)
        raise QueueUnavailable(exc) from exc


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
