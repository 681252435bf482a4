"""The one writer of events: the execution's state machine (transitions, seq, timestamps).

Every state change after submission goes through :func:`event_record`: under
the execution's row lock it checks the transition, assigns the next ``seq``,
writes the snapshot and the new state in one short transaction, and announces
the event after commit. A worker's progress and a cancel through the API are
thus serialised: no ``seq`` collision, nothing recorded after a terminal
event, and a durable run's writes are fenced on its ``attempt``. It is the hot
path of every run: three SQL statements, built once per database backend
(:class:`_Statements`) rather than compiled by the ORM per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core import metrics

from .eta import with_eta
from .frames import ErrorInfo, Progress, dumps, event_frame, iso
from .models import TERMINAL_EVENT_TYPES, UNENDED_STATUSES, EventType, Execution, ExecutionStatus, ProgressSnapshot
from .signals import event_recorded, send_robust_logged

#: Which statuses each event may leave from. The claim of a run is the
#: ``started`` event: pending -> running, so a second delivery finds it running.
#: ``resumed`` claims a handed-over run again: running (with no worker) -> running.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    EventType.STARTED: frozenset({ExecutionStatus.PENDING}),
    EventType.PROGRESS: frozenset({ExecutionStatus.RUNNING}),
    EventType.RESUMED: frozenset({ExecutionStatus.RUNNING}),
    EventType.COMPLETED: frozenset({ExecutionStatus.RUNNING}),
    EventType.FAILED: frozenset(UNENDED_STATUSES),
    EventType.CANCELLED: frozenset(UNENDED_STATUSES),
}

STATUS_AFTER: dict[str, str] = {
    EventType.STARTED: ExecutionStatus.RUNNING,
    EventType.PROGRESS: ExecutionStatus.RUNNING,
    EventType.RESUMED: ExecutionStatus.RUNNING,
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


class LockedRow(NamedTuple):
    """What the writer reads of the execution under its lock (the columns, in this order)."""

    status: str
    seq: int
    progress: Progress | None
    callback_url: str
    #: The execution feed is fed per owner (``progress.broadcast``).
    owner_id: int
    #: The ETA is extrapolated from the time since the run started (``executions.eta``).
    started_at: datetime | None
    #: The fence of a durable run's writes, and the ``resumed`` frame's attempt.
    attempt: int
    #: Empty on a running execution that was handed over and not claimed again.
    worker: str


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
    #: Who owns the execution: the execution feed is fed per user.
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
    attempt: int | None = None,
) -> RecordedEvent | None:
    """Record one event; return it, or None when the transition is not allowed.

    ``progress`` is the new progress for ``started``, ``progress`` and
    ``completed``; for ``failed`` it is optional (the latest progress the run
    knew of) and ``cancelled`` keeps the progress the execution has.
    The stored progress gets its ``eta_seconds`` here (``executions.eta``), so
    every surface shows the same estimate.
    ``worker`` names the Celery worker that claims the run (``started``, and
    ``resumed``, which needs one: it claims a handed-over run, one with no
    worker, so of two claims only the first is recorded).
    ``only_if`` is a further condition on the locked row, checked in the same
    transaction: the sweeper fails a run only if its heartbeat is still stale.
    ``attempt`` fences a durable run's writes: the event is recorded only while
    the execution is at that attempt (None: no fence).
    """
    if event_type == EventType.RESUMED and not worker:
        raise ValueError("a resumed event claims the run: it needs the worker's name")
    with transaction.atomic():
        if only_if is None:
            row = _statements().lock(execution_id)
        else:
            found = (
                Execution.objects.select_for_update()
                .filter(only_if, pk=execution_id)
                .order_by()
                .values_list(*LockedRow._fields)
                .first()
            )
            row = None if found is None else LockedRow(*found)
        if row is None or row.status not in ALLOWED_FROM[event_type]:
            return None
        if attempt is not None and row.attempt != attempt:
            return None
        if event_type == EventType.RESUMED and row.worker:
            return None  # not handed over, or claimed already
        now = timezone.now()
        seq = row.seq + 1
        status = STATUS_AFTER[event_type]
        if event_type == EventType.CANCELLED or (event_type == EventType.FAILED and progress is None):
            new_progress = row.progress
        elif event_type == EventType.STARTED:
            new_progress = progress
        else:
            new_progress = _merge_progress(row.progress, progress)
        # The estimate (executions.eta) is stored with the progress: every surface shows the same one.
        started_at = now if event_type == EventType.STARTED else row.started_at
        new_progress = with_eta(new_progress, status=status, started_at=started_at, now=now)
        updates: dict[str, Any] = {"seq": seq, "status": str(status), "progress": new_progress}
        if event_type in TIMESTAMP_FIELD:
            updates[TIMESTAMP_FIELD[event_type]] = now
        if event_type in (EventType.STARTED, EventType.RESUMED):
            # The claim: the first heartbeat, and who holds the run.
            updates["worker"] = worker
            updates["heartbeat_at"] = now
        if event_type == EventType.COMPLETED:
            updates["outputs"] = outputs
        if event_type == EventType.FAILED:
            updates["error"] = error

        frame = event_frame(
            event_type=event_type,
            execution_id=execution_id,
            status=status,
            seq=seq,
            timestamp=now,
            progress=new_progress,
            outputs=outputs if event_type == EventType.COMPLETED else None,
            error=error if event_type == EventType.FAILED else None,
            attempt=row.attempt if event_type == EventType.RESUMED else None,
        )
        frame_text = dumps(frame)
        terminal = event_type in TERMINAL_EVENT_TYPES
        payload = {"outputs": frame.get("outputs"), "error": frame.get("error")} if terminal else None
        statements = _statements()
        statements.update(execution_id, updates)
        statements.insert_snapshot(
            execution=execution_id, seq=seq, type=str(event_type), status=str(status),
            progress=new_progress, payload=payload, timestamp=now, frame=frame_text,
        )
        recorded = RecordedEvent(
            execution_id=execution_id,
            seq=seq,
            type=str(event_type),
            status=str(status),
            frame_text=frame_text,
            callback_url=row.callback_url,
            timestamp=iso(now),
            owner_id=row.owner_id,
        )
        transaction.on_commit(lambda: _announce(recorded))
    return recorded


class _Statements:
    """The event write's SQL for the current database backend, built once.

    Values go through each field's ``get_db_prep_save`` (JSON, datetimes), and
    the locked row's values through the converters the ORM would apply to them
    (the backend's, then the field's ``from_db_value``: JSON, aware datetimes).
    """

    def __init__(self) -> None:
        quote = connection.ops.quote_name
        self.execution_fields = {f.name: f for f in Execution._meta.concrete_fields}
        self.snapshot_fields = {f.name: f for f in ProgressSnapshot._meta.concrete_fields}
        self.table = quote(Execution._meta.db_table)
        by_attname = {f.attname: f for f in Execution._meta.concrete_fields}
        locked = [by_attname[name] for name in LockedRow._fields]
        columns = ", ".join(quote(field.column) for field in locked)
        # Per column: the converters the SQL compiler would apply (backend's, then the field's own).
        self.lock_converters: list[tuple[Any, list[Any]]] = []
        for field in locked:
            column = field.get_col(Execution._meta.db_table)
            converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            self.lock_converters.append((column, converters))
        pk = Execution._meta.pk
        assert pk is not None, "every model has a primary key"
        self.pk_column = quote(pk.column)
        # SQLite has no FOR UPDATE: its IMMEDIATE transaction already holds the write lock.
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        self.lock_sql = f"SELECT {columns} FROM {self.table} WHERE {self.pk_column} = %s{lock}"
        self.snapshot_columns = ("execution", "seq", "type", "status", "progress", "payload", "timestamp", "frame")
        self.insert_sql = (
            f"INSERT INTO {quote(ProgressSnapshot._meta.db_table)} "
            f"({', '.join(quote(self.snapshot_fields[n].column) for n in self.snapshot_columns)}) "
            f"VALUES ({', '.join(['%s'] * len(self.snapshot_columns))})"
        )
        self.update_sql: dict[tuple[str, ...], str] = {}

    def lock(self, execution_id: str) -> LockedRow | None:
        with connection.cursor() as cursor:
            cursor.execute(self.lock_sql, [execution_id])
            row = cursor.fetchone()
        if row is None:
            return None
        values = []
        for raw, (column, converters) in zip(row, self.lock_converters, strict=True):
            value = raw
            for converter in converters:
                value = converter(value, column, connection)
            values.append(value)
        return LockedRow(*values)

    def update(self, execution_id: str, updates: dict[str, Any]) -> None:
        names = tuple(updates)
        sql = self.update_sql.get(names)
        if sql is None:
            quote = connection.ops.quote_name
            assignments = ", ".join(f"{quote(self.execution_fields[n].column)} = %s" for n in names)
            sql = self.update_sql[names] = f"UPDATE {self.table} SET {assignments} WHERE {self.pk_column} = %s"
        params = [self.execution_fields[n].get_db_prep_save(v, connection) for n, v in updates.items()]
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, execution_id])

    def insert_snapshot(self, **values: Any) -> None:
        params = [self.snapshot_fields[n].get_db_prep_save(values[n], connection) for n in self.snapshot_columns]
        with connection.cursor() as cursor:
            cursor.execute(self.insert_sql, params)


_statements_by_vendor: dict[str, _Statements] = {}


def _statements() -> _Statements:
    found = _statements_by_vendor.get(connection.vendor)
    if found is None:
        found = _statements_by_vendor[connection.vendor] = _Statements()
    return found


def _announce(recorded: RecordedEvent) -> None:
    metrics.event_recorded(recorded.type)
    send_robust_logged(
        event_recorded, f"{recorded.execution_id} #{recorded.seq}", sender=RecordedEvent, event=recorded
    )
