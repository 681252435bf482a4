"""The one writer of events: the execution's state machine (transitions, seq, timestamps).

Every state change of an execution after submission goes through
:func:`event_record`: it takes the execution's row lock (``SELECT ... FOR
UPDATE``; on SQLite the IMMEDIATE transaction already holds the write lock),
checks that the transition is allowed, assigns the next ``seq``, writes the
snapshot and the new Execution state in one short transaction, and publishes
the frame after commit. A worker reporting progress and a cancel arriving
through the API are therefore serialised: no ``seq`` collision, and nothing is
ever recorded after a terminal event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import metrics

from .eta import with_eta
from .frames import ErrorInfo, Progress, dumps, event_frame, iso
from .models import TERMINAL_EVENT_TYPES, EventType, Execution, ExecutionStatus, ProgressSnapshot
from .signals import event_recorded

logger = logging.getLogger(__name__)

#: Which statuses each event may leave from. The claim of a run is the
#: ``started`` event: pending -> running, so a second delivery finds it running.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    EventType.STARTED: frozenset({ExecutionStatus.PENDING}),
    EventType.PROGRESS: frozenset({ExecutionStatus.RUNNING}),
    EventType.COMPLETED: frozenset({ExecutionStatus.RUNNING}),
    EventType.FAILED: frozenset({ExecutionStatus.PENDING, ExecutionStatus.RUNNING}),
    EventType.CANCELLED: frozenset({ExecutionStatus.PENDING, ExecutionStatus.RUNNING}),
}

STATUS_AFTER: dict[str, str] = {
    EventType.STARTED: ExecutionStatus.RUNNING,
    EventType.PROGRESS: ExecutionStatus.RUNNING,
    EventType.COMPLETED: ExecutionStatus.COMPLETED,
    EventType.FAILED: ExecutionStatus.FAILED,
    EventType.CANCELLED: ExecutionStatus.CANCELLED,
}

TIMESTAMP_FIELD: dict[str, str] = {
    EventType.STARTED: "started_at",
    EventType.COMPLETED: "completed_at",
    EventType.FAILED: "failed_at",
    EventType.CANCELLED: "cancelled_at",
}

@dataclass(frozen=True)
class RecordedEvent:
    execution_id: str
    seq: int
    type: str
    status: str
    frame_text: str
    callback_url: str = ""
    #: When it was recorded (the frame's ``timestamp``), ISO 8601.
    timestamp: str = ""
    #: Who owns the execution: the socket for many executions is fed per user.
    owner_id: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES


def _merge_progress(current: Progress | None, new: Progress | None) -> Progress | None:
    """Percentage never decreases during a run, whatever order reports arrive in."""
    if new is None:
        return current
    if current is not None and new["percentage"] < current.get("percentage", 0.0):
        new = {**new, "percentage": current["percentage"]}
    new = {**new, "percentage": float(min(max(new["percentage"], 0.0), 100.0))}
    return new


def event_record(
    *,
    execution_id: str,
    event_type: str,
    progress: Progress | None = None,
    outputs: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
    worker: str = "",
    only_if: Q | None = None,
) -> RecordedEvent | None:
    """Record one event; return it, or None when the transition is not allowed.

    ``progress`` is the new progress for ``started``, ``progress`` and
    ``completed``; for ``failed`` it is optional (the latest progress the run
    knew of) and ``cancelled`` keeps the progress the execution has.
    The stored progress gets its ``eta_seconds`` here (``executions.eta``), so
    every surface shows the same estimate.
    ``worker`` names the Celery worker that claims the run (``started`` only).
    ``only_if`` is a further condition on the locked row, checked in the same
    transaction: the sweeper fails a run only if its heartbeat is still stale.
    """
    with transaction.atomic():
        query = Execution.objects.select_for_update().only(
            "id", "status", "seq", "progress", "callback_url", "owner_id", "started_at"
        )
        if only_if is not None:
            query = query.filter(only_if)
        execution = query.filter(pk=execution_id).first()
        if execution is None or execution.status not in ALLOWED_FROM[event_type]:
            return None
        now = timezone.now()
        seq = execution.seq + 1
        status = STATUS_AFTER[event_type]
        if event_type == EventType.CANCELLED or (event_type == EventType.FAILED and progress is None):
            new_progress = execution.progress
        elif event_type == EventType.STARTED:
            new_progress = progress
        else:
            new_progress = _merge_progress(execution.progress, progress)
        started_at = now if event_type == EventType.STARTED else execution.started_at
        new_progress = with_eta(new_progress, status=status, started_at=started_at, now=now)
        updates: dict[str, Any] = {"seq": seq, "status": status, "progress": new_progress}
        if event_type in TIMESTAMP_FIELD:
            updates[TIMESTAMP_FIELD[event_type]] = now
        if event_type == EventType.STARTED:
            # The claim: the first heartbeat, and who holds the run.
            updates["worker"] = worker
            updates["heartbeat_at"] = now
        if event_type == EventType.COMPLETED:
            updates["outputs"] = outputs
        if event_type == EventType.FAILED:
            updates["error"] = error
        Execution.objects.filter(pk=execution_id).update(**updates)

        frame = event_frame(
            event_type=event_type,
            execution_id=execution_id,
            status=status,
            seq=seq,
            timestamp=now,
            progress=new_progress,
            outputs=outputs if event_type == EventType.COMPLETED else None,
            error=error if event_type == EventType.FAILED else None,
        )
        frame_text = dumps(frame)
        terminal = event_type in TERMINAL_EVENT_TYPES
        payload = {"outputs": frame.get("outputs"), "error": frame.get("error")} if terminal else None
        ProgressSnapshot.objects.create(
            execution_id=execution_id,
            seq=seq,
            type=event_type,
            status=status,
            progress=new_progress,
            payload=payload,
            timestamp=now,
            frame=frame_text,
        )
        recorded = RecordedEvent(
            execution_id=execution_id,
            seq=seq,
            type=str(event_type),
            status=str(status),
            frame_text=frame_text,
            callback_url=execution.callback_url,
            timestamp=iso(now),
            owner_id=execution.owner_id,
        )
        transaction.on_commit(lambda: _announce(recorded))
    return recorded


def _announce(recorded: RecordedEvent) -> None:
    metrics.event_recorded(recorded.type)
    for receiver, result in event_recorded.send_robust(sender=RecordedEvent, event=recorded):
        if isinstance(result, Exception):
            logger.error(
                "%s of %s #%s failed: %r", getattr(receiver, "__qualname__", receiver),
                recorded.execution_id, recorded.seq, result, exc_info=result,
            )
