"""The sweepers every worker runs periodically, so that the stored state stays true.

* :func:`executions_fail_lost` fails running executions whose heartbeat stopped (``WorkerLostError``),
  or hands a durable one over (``executions.handover``).
* :func:`executions_requeue_lost` queues again pending ones, and handed-over ones, whose task message is gone.
* :func:`executions_fail_on_shutdown` fails (or hands over) the runs a stopping worker holds past its grace.
* :func:`executions_prune` deletes ended executions past the retention period.

Each is safe with several workers at once: every state change is a
compare-and-set, so that only one sweeper acts on a given execution.
docs/operations/reliability.md gives the bounds they keep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import metrics

from .broker import runs_held
from .errors import BrokerUnavailableError
from .frames import ErrorInfo, iso
from .handover import Loss, execution_lost
from .idempotency import idempotency_keys_prune
from .models import (
    TERMINAL_STATUSES,
    Execution,
    ExecutionStatus,
    ExecutionStep,
    ProgressSnapshot,
    WebhookAttempt,
    WorkerBeat,
)
from .services import execution_enqueue

logger = logging.getLogger(__name__)

#: How many executions one sweep looks at (the rest wait for the next sweep).
SWEEP_BATCH = 200


def worker_beat(*, hostname: str, pid: int, started_at: datetime) -> None:
    """Record that a worker is alive (``/readyz`` wants one seen recently)."""
    WorkerBeat.objects.update_or_create(
        hostname=hostname, defaults={"pid": pid, "started_at": started_at, "last_seen_at": timezone.now()}
    )


def workers_alive(*, within_seconds: float | None = None) -> int:
    """How many workers beat within the heartbeat window."""
    window = settings.EXECUTION_HEARTBEAT_TIMEOUT_SECONDS if within_seconds is None else within_seconds
    return WorkerBeat.objects.filter(last_seen_at__gte=timezone.now() - timedelta(seconds=window)).count()


#: A durable run handed over and not claimed yet: it waits for a worker, as a pending one does.
HANDED_OVER = Q(status=ExecutionStatus.RUNNING, durable=True, worker="")


def _stale(cutoff: datetime) -> Q:
    """Running with no heartbeat since ``cutoff`` (a run claimed before heartbeats existed counts from its start)."""
    return (
        Q(status=ExecutionStatus.RUNNING)
        & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
        & ~HANDED_OVER
    )


def executions_fail_lost(*, swept_by: str = "", now: datetime | None = None) -> list[str]:
    """Fail running executions whose heartbeat is older than the timeout, or hand durable ones over; their ids.

    The staleness is checked again inside the locked transaction (the event's,
    or the hand-over's compare-and-set), so a run whose heartbeat arrives
    between the query and the write is left alone, and of two sweepers only
    one acts on a run: the other finds it failed, or its heartbeat fresh.
    A handed-over run waiting for its claim is not lost: the requeue sweeper
    looks after it.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.EXECUTION_HEARTBEAT_TIMEOUT_SECONDS)
    candidates = list(
        Execution.objects.filter(_stale(cutoff)).values_list(
            "id", "worker", "heartbeat_at", "started_at", "attempt"
        )[:SWEEP_BATCH]
    )
    failed, handed_over = [], []
    for execution_id, worker, heartbeat_at, started_at, attempt in candidates:
        last_seen = heartbeat_at or started_at
        assert last_seen is not None, "_stale() selects runs with a heartbeat or a start"
        error: ErrorInfo = {
            "type": "WorkerLostError",
            "message": (
                f"The worker running this execution ({worker or 'unknown'}) stopped answering: "
                f"its last heartbeat was at {iso(last_seen)}, "
                f"{(now - last_seen).total_seconds():.0f} s before this check"
            ),
            "details": {
                "worker": worker or None,
                "last_heartbeat_at": iso(last_seen),
                "detected_at": iso(now),
                "detected_by": swept_by or None,
            },
        }
        loss = execution_lost(
            execution_id=execution_id, attempt=attempt, worker=worker, error=error,
            only_if=_stale(cutoff) & Q(worker=worker),
        )
        if loss is Loss.FAILED:
            logger.warning(
                "failed lost execution %s (worker %s, last heartbeat %s)", execution_id, worker, iso(last_seen)
            )
            failed.append(execution_id)
        elif loss is Loss.HANDED_OVER:
            handed_over.append(execution_id)
    metrics.sweeper_acted(metrics.LOST_RUN_FAILED, len(failed))
    return failed + handed_over


def executions_fail_on_shutdown(*, worker: str, grace_seconds: float) -> list[str]:
    """Fail the executions ``worker`` still runs once its shutdown grace has passed, or hand durable ones over.

    Their run's monitor sees the terminal state (or the next attempt) within a
    poll and stops the target, so the worker can finish its warm shutdown. A
    durable run handed over is queued at once: any other worker takes it up.
    """
    failed, handed_over = [], []
    running = Execution.objects.filter(status=ExecutionStatus.RUNNING, worker=worker).exclude(HANDED_OVER)
    for execution_id, attempt in running.values_list("id", "attempt"):
        error: ErrorInfo = {
            "type": "WorkerShutdown",
            "message": (
                f"The worker {worker} was stopped (a deploy or restart) and this execution was still running "
                f"when its {grace_seconds:g} s grace period ended; start it again to finish it"
            ),
            "details": {"worker": worker, "grace_seconds": grace_seconds},
        }
        loss = execution_lost(
            execution_id=execution_id, attempt=attempt, worker=worker, error=error, only_if=Q(worker=worker)
        )
        if loss is Loss.FAILED:
            failed.append(execution_id)
        elif loss is Loss.HANDED_OVER:
            handed_over.append(execution_id)
    metrics.sweeper_acted(metrics.SHUTDOWN_FAILED, len(failed))
    return failed + handed_over


@dataclass(frozen=True)
class Requeued:
    execution_ids: list[str]
    #: False when the broker's queue could not be inspected and age alone decided.
    inspected: bool


def executions_requeue_lost(*, now: datetime | None = None) -> Requeued:
    """Queue again the executions waiting for a worker whose task message the broker no longer holds.

    Those are pending executions, and durable runs handed over and not
    claimed yet (queued again, never handed over again: a lost message must
    not cost an attempt). A candidate was queued at least
    ``EXECUTION_REQUEUE_SECONDS`` ago; with a Redis broker it is requeued only
    when its id is in neither the queue nor the unacknowledged set (a message
    waiting behind others stays alone). With another broker, age alone
    decides: a duplicate is harmless, since only one delivery can claim the
    run. ``enqueued_at`` is moved forward with a compare-and-set, so
    concurrent sweepers queue each execution once.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.EXECUTION_REQUEUE_SECONDS)
    waiting = Q(status=ExecutionStatus.PENDING) | HANDED_OVER
    candidates = list(
        Execution.objects.filter(waiting)
        .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff))
        .only("id", "config", "enqueued_at", "status", "attempt", "started_at")[:SWEEP_BATCH]
    )
    if not candidates:
        return Requeued([], inspected=True)
    held = runs_held(execution.id for execution in candidates)
    requeued = []
    for execution in candidates:
        if held is not None and execution.id in held:
            continue
        claimed = (
            Execution.objects.filter(waiting)
            .filter(pk=execution.id, attempt=execution.attempt, enqueued_at=execution.enqueued_at)
            .update(enqueued_at=now)
        )
        if not claimed:
            continue
        try:
            execution_enqueue(execution)
        except BrokerUnavailableError:
            # Put the clock back: the next sweep tries again.
            Execution.objects.filter(pk=execution.id, enqueued_at=now).update(enqueued_at=execution.enqueued_at)
            break
        logger.warning("queued lost execution %s again", execution.id)
        requeued.append(execution.id)
    metrics.sweeper_acted(metrics.MESSAGE_REQUEUED, len(requeued))
    return Requeued(requeued, inspected=held is not None)


def executions_prune(
    *, now: datetime | None = None, dry_run: bool = False, batch_size: int = 100, events_per_transaction: int = 5000
) -> int:
    """Delete ended executions older than the retention period, with their events, steps and webhook attempts.

    Returns how many executions were (or, with ``dry_run``, would be) deleted.
    Events and step rows go first, ``events_per_transaction`` at a time, then
    the executions a batch at a time: no transaction holds the write lock for
    long, and a prune interrupted half-way leaves only ended executions with
    fewer events or steps, which the next prune finishes. Pending and running executions are never
    touched, whatever their age. Expired idempotency keys go first, whatever
    the retention (they live ``IDEMPOTENCY_KEY_HOURS``).
    """
    if not dry_run:
        idempotency_keys_prune(now=now)
    days = settings.EXECUTION_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    ended_before_cutoff = Q(status__in=TERMINAL_STATUSES) & (
        Q(completed_at__lt=cutoff) | Q(failed_at__lt=cutoff) | Q(cancelled_at__lt=cutoff)
        | Q(completed_at__isnull=True, failed_at__isnull=True, cancelled_at__isnull=True, created_at__lt=cutoff)
    )
    expired = Execution.objects.filter(ended_before_cutoff)
    if dry_run:
        return expired.count()
    deleted = 0
    while True:
        ids = list(expired.values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        for model in (ProgressSnapshot, ExecutionStep):
            while True:
                with transaction.atomic():
                    row_ids = list(
                        model.objects.filter(execution_id__in=ids).values_list("id", flat=True)[
                            :events_per_transaction
                        ]
                    )
                    if not row_ids:
                        break
                    model.objects.filter(id__in=row_ids).delete()
        with transaction.atomic():
            WebhookAttempt.objects.filter(execution_id__in=ids).delete()
            # Checked again: nothing ever leaves a terminal state, but this
            # keeps "never a running one" true by construction.
            deleted_by_model = Execution.objects.filter(ended_before_cutoff, id__in=ids).delete()[1]
            removed = deleted_by_model.get("executions.Execution", 0)
        deleted += removed
        metrics.sweeper_acted(metrics.EXECUTION_PRUNED, removed)
