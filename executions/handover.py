"""The hand-over of a durable run to another worker, instead of its failure.

When a durable run's worker is lost (its heartbeat stopped, its process died)
or stops (its shutdown grace ended), the run gets its next ``attempt`` and no
``worker`` in one compare-and-set, and its task is queued after commit; the
worker that takes it claims it with the ``resumed`` event (``executions.runner``).
Of callers racing over one run exactly one wins, and only the winner queues it.
Every write of the superseded attempt is fenced out from then on. A run with
no attempt left (``EXECUTION_MAX_ATTEMPTS``) fails as any other, the error's
``details.attempts`` saying how many it had.
"""

from __future__ import annotations

import enum
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import metrics

from .errors import BrokerUnavailableError
from .events import event_record
from .frames import ErrorInfo
from .models import EventType, Execution, ExecutionStatus
from .services import execution_enqueue

logger = logging.getLogger(__name__)


class Loss(enum.Enum):
    """What :func:`execution_lost` did with a lost run."""

    HANDED_OVER = "handed_over"
    FAILED = "failed"


def attempts_left(attempt: int) -> bool:
    """Whether a durable run at ``attempt`` may be handed over once more."""
    return attempt < settings.EXECUTION_MAX_ATTEMPTS


def execution_hand_over(*, execution_id: str, attempt: int, worker: str, only_if: Q | None = None) -> bool:
    """Give a durable run held by ``worker`` at ``attempt`` its next attempt and queue it; True if this call did.

    ``only_if`` is a further condition on the row (the sweeper's: its heartbeat
    is still stale). The attempt limit is the caller's (:func:`attempts_left`).
    """
    if not worker:
        raise ValueError("a hand-over names the worker that held the run")
    now = timezone.now()
    with transaction.atomic():
        held = Execution.objects.filter(
            pk=execution_id, status=ExecutionStatus.RUNNING, durable=True, attempt=attempt, worker=worker
        )
        if only_if is not None:
            held = held.filter(only_if)
        if not held.update(attempt=attempt + 1, worker="", heartbeat_at=now, enqueued_at=now):
            return False
        transaction.on_commit(lambda: _enqueue(execution_id))
    metrics.sweeper_acted(metrics.RUN_HANDED_OVER)
    logger.warning("handed over execution %s (attempt %d, worker %s): attempt %d", execution_id, attempt, worker,
                   attempt + 1)
    return True


def _enqueue(execution_id: str) -> None:
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None or execution.status != ExecutionStatus.RUNNING or execution.worker:
        return  # cancelled, or claimed already
    try:
        execution_enqueue(execution)
    except BrokerUnavailableError:
        # It waits with no message: the sweeper queues it again (executions_requeue_lost).
        logger.warning("could not queue handed-over execution %s; the sweeper will", execution_id)


def execution_lost(
    *, execution_id: str, attempt: int, worker: str, error: ErrorInfo, only_if: Q | None = None
) -> Loss | None:
    """A run's worker is lost or stopped: hand a durable run over while it has attempts left, else fail it.

    ``attempt`` and ``worker`` are those of the run that was lost; None when
    the run has moved on since (ended, or handed over by someone else first).
    ``error`` is the failure to record; a durable run's gets ``details.attempts``.
    """
    durable = Execution.objects.filter(pk=execution_id).values_list("durable", flat=True).first()
    if durable is None:
        return None
    if durable and attempts_left(attempt):
        handed = execution_hand_over(execution_id=execution_id, attempt=attempt, worker=worker, only_if=only_if)
        return Loss.HANDED_OVER if handed else None
    if durable:
        error = {**error, "details": {**(error["details"] or {}), "attempts": attempt}}
    recorded = event_record(
        execution_id=execution_id, event_type=EventType.FAILED, error=error, only_if=only_if,
        attempt=attempt if durable else None,
    )
    return Loss.FAILED if recorded else None
