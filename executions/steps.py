"""The step store of durable runs: the one writer of ``ExecutionStep`` rows, and the steps selector.

Every write is a short transaction fenced on the run's attempt: it locks the
execution's row and writes only while the execution is running at the
writer's attempt, so a superseded attempt (its run was handed over) writes
nothing. A completed row is final: its result is never overwritten, and the
step never runs again. :func:`execution_steps` shows one entry per declared
step of any execution: from the rows of a durable run, from the stored events
of any other.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .errors import NotResumableError
from .frames import iso
from .models import EventType, Execution, ExecutionStatus, ExecutionStep, ProgressSnapshot, StepStatus
from .registry import get_target


class StepOrderError(RuntimeError):
    """The steps a run enters, or the ones recorded for it, differ from the declared ones.

    Nothing is ever replayed silently: a run whose code changed between
    attempts fails with this, naming the first difference.
    """


class StepOutputTooLarge(ValueError):
    """A step's result or checkpoint is larger than ``EXECUTION_STEP_OUTPUT_MAX_BYTES`` as JSON."""

    def __init__(self, *, step: str, what: str, size: int, limit: int):
        super().__init__(
            f"step {step!r} {what} is {size:,} bytes, over the limit of {limit:,} (EXECUTION_STEP_OUTPUT_MAX_BYTES)"
        )
        #: ``error.details`` of the failed execution.
        self.details = {"step": step, "size": size, "limit": limit}


def step_output_checked(value: Any, *, step: str, what: str) -> Any:
    """``value`` as it is stored and read back (through JSON); raise if it is not JSON or too large."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"step {step!r} {what} is not JSON-serialisable: {exc}") from exc
    size = len(text.encode())
    limit = settings.EXECUTION_STEP_OUTPUT_MAX_BYTES
    if size > limit:
        raise StepOutputTooLarge(step=step, what=what, size=size, limit=limit)
    return json.loads(text)


def step_order_mismatch(recorded: Sequence[str], declared: Sequence[str]) -> StepOrderError | None:
    """The error naming the first difference between two step lists, or None when they are equal."""
    for index in range(max(len(recorded), len(declared))):
        was = recorded[index] if index < len(recorded) else None
        now = declared[index] if index < len(declared) else None
        if was == now:
            continue
        counts = ""
        if len(recorded) != len(declared):
            counts = f" ({len(recorded)} steps recorded, {len(declared)} declared)"
        if was is None:
            return StepOrderError(f"no step recorded where {now!r} expected{counts}")
        if now is None:
            return StepOrderError(f"step {was!r} recorded where no step expected{counts}")
        return StepOrderError(f"step {was!r} recorded where {now!r} expected{counts}")
    return None


class _Statements:
    """The step writes' SQL for the current database backend, built once.

    The ORM compiled these at every call, most of a step's cost: the writer
    runs them as plain SQL instead, its values prepared by each field
    (``get_db_prep_save``: JSON, datetimes), as ``executions.events`` does.
    """

    def __init__(self) -> None:
        quote = connection.ops.quote_name
        self.fields = {f.name: f for f in ExecutionStep._meta.concrete_fields}
        self.table = quote(ExecutionStep._meta.db_table)
        self.execution_column = quote(self.fields["execution"].column)
        self.index_column = quote(self.fields["index"].column)
        pk = Execution._meta.pk
        assert pk is not None, "every model has a primary key"
        # SQLite has no FOR UPDATE: its IMMEDIATE transaction already holds the write lock.
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        self.fence_sql = (
            f"SELECT 1 FROM {quote(Execution._meta.db_table)} WHERE {quote(pk.column)} = %s "
            f"AND {quote('status')} = %s AND {quote('attempt')} = %s{lock}"
        )
        self.update_sql: dict[tuple[tuple[str, ...], bool], str] = {}

    def holds_run(self, execution_id: str, attempt: int) -> bool:
        """Lock the execution's row if it is running at ``attempt`` (inside a transaction): the fence."""
        with connection.cursor() as cursor:
            cursor.execute(self.fence_sql, [execution_id, str(ExecutionStatus.RUNNING), attempt])
            return cursor.fetchone() is not None

    def update(self, execution_id: str, index: int, values: dict[str, Any], *, running_for: int | None) -> int:
        """Set ``values`` on one step; return how many rows changed (0 or 1).

        With ``running_for``, only while the step runs for that attempt;
        without, only if it is not completed (a completed step is final).
        """
        key = (tuple(values), running_for is None)
        sql = self.update_sql.get(key)
        if sql is None:
            quote = connection.ops.quote_name
            status = quote(self.fields["status"].column)
            assignments = ", ".join(f"{quote(self.fields[name].column)} = %s" for name in values)
            condition = f"{status} <> %s" if running_for is None else f"{status} = %s AND {quote('attempt')} = %s"
            sql = self.update_sql[key] = (
                f"UPDATE {self.table} SET {assignments} "
                f"WHERE {self.execution_column} = %s AND {self.index_column} = %s AND {condition}"
            )
        params = [self.fields[name].get_db_prep_save(value, connection) for name, value in values.items()]
        where: list[Any] = (
            [str(StepStatus.COMPLETED)] if running_for is None else [str(StepStatus.RUNNING), running_for]
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, execution_id, index, *where])
            return cursor.rowcount


_statements_by_vendor: dict[str, _Statements] = {}


def _statements() -> _Statements:
    found = _statements_by_vendor.get(connection.vendor)
    if found is None:
        found = _statements_by_vendor[connection.vendor] = _Statements()
    return found


@dataclass(frozen=True)
class StepsBegun:
    """Where a durable run's steps stand when an attempt begins.

    Only this attempt writes its rows from then on (the fence), so this stays
    true for the attempt: no step needs reading again on entering it.
    """

    #: The 0-based indexes of the completed steps: their stored results are returned, not made again.
    completed: frozenset[int]
    #: The last checkpoint of each step that has one and is not completed, by index.
    checkpoints: Mapping[int, Any] = field(default_factory=dict)

    @property
    def resume_point(self) -> int:
        """How many steps are completed before the first that is not (where the run goes on)."""
        point = 0
        while point in self.completed:
            point += 1
        return point


def steps_begin(*, execution_id: str, names: Sequence[str], attempt: int) -> StepsBegun | None:
    """Begin an attempt of a durable run; None when the attempt is fenced out.

    At the first start, one pending row per declared step. Later (a hand-over,
    or a resume from the failed step, whose rows were copied), the recorded
    names must equal ``names``: :class:`StepOrderError` otherwise.
    """
    with transaction.atomic():
        if not _statements().holds_run(execution_id, attempt):
            return None
        recorded = list(
            ExecutionStep.objects.filter(execution_id=execution_id)
            .order_by("index")
            .values_list("name", "status", "checkpoint")
        )
        if not recorded:
            ExecutionStep.objects.bulk_create(
                ExecutionStep(execution_id=execution_id, index=index, name=name) for index, name in enumerate(names)
            )
            return StepsBegun(completed=frozenset())
    mismatch = step_order_mismatch([name for name, _, _ in recorded], names)
    if mismatch is not None:
        raise mismatch
    completed = {index for index, (_, status, _) in enumerate(recorded) if status == StepStatus.COMPLETED}
    return StepsBegun(
        completed=frozenset(completed),
        checkpoints={
            index: checkpoint
            for index, (_, _, checkpoint) in enumerate(recorded)
            if checkpoint is not None and index not in completed
        },
    )


def steps_resume_point(*, execution_id: str) -> int:
    """How many steps of a durable run are completed before the first that is not (0 with no rows)."""
    statuses = (
        ExecutionStep.objects.filter(execution_id=execution_id).order_by("index").values_list("status", flat=True)
    )
    point = 0
    for status in statuses:
        if status != StepStatus.COMPLETED:
            break
        point += 1
    return point


def step_result(*, execution_id: str, index: int) -> Any:
    """The stored result of a completed step."""
    return (
        ExecutionStep.objects.filter(execution_id=execution_id, index=index, status=StepStatus.COMPLETED)
        .values_list("result", flat=True)
        .get()
    )


class StepEntry(enum.Enum):
    """What :func:`step_enter` found."""

    ENTERED = "entered"
    #: Completed before: its stored result is returned (:func:`step_result`), the step is not run.
    COMPLETED = "completed"
    #: This attempt no longer holds the run: nothing was written.
    FENCED = "fenced"


def step_enter(*, execution_id: str, index: int, attempt: int) -> StepEntry:
    """Mark a step running for ``attempt``, unless it is completed."""
    with transaction.atomic():
        statements = _statements()
        if not statements.holds_run(execution_id, attempt):
            return StepEntry.FENCED
        changed = statements.update(
            execution_id, index,
            {"status": StepStatus.RUNNING, "attempt": attempt, "started_at": timezone.now(), "finished_at": None},
            running_for=None,
        )
    return StepEntry.ENTERED if changed else StepEntry.COMPLETED


def _step_update(*, execution_id: str, index: int, attempt: int, values: dict[str, Any]) -> bool:
    """Write a step running for ``attempt``; False when fenced out (or the step is not running for it)."""
    with transaction.atomic():
        statements = _statements()
        if not statements.holds_run(execution_id, attempt):
            return False
        return bool(statements.update(execution_id, index, values, running_for=attempt))


def step_complete(*, execution_id: str, index: int, attempt: int, result: Any) -> bool:
    """Store a step's result: completed for good. False when fenced out."""
    values = {"status": StepStatus.COMPLETED, "result": result, "finished_at": timezone.now()}
    return _step_update(execution_id=execution_id, index=index, attempt=attempt, values=values)


def step_fail(*, execution_id: str, index: int, attempt: int) -> bool:
    """The step's function raised: failed (a later attempt runs it again). False when fenced out."""
    values = {"status": StepStatus.FAILED, "finished_at": timezone.now()}
    return _step_update(execution_id=execution_id, index=index, attempt=attempt, values=values)


def step_checkpoint(*, execution_id: str, index: int, attempt: int, value: Any) -> bool:
    """Store a running step's checkpoint (``ctx.checkpoint``). False when fenced out."""
    return _step_update(execution_id=execution_id, index=index, attempt=attempt, values={"checkpoint": value})


def steps_resume_index(original: Execution) -> int:
    """The index of the step a resume of ``original`` from its failed step starts at.

    Raises :class:`NotResumableError` unless ``original`` is a failed durable
    execution with a step that did not complete.
    """
    if not original.durable:
        raise NotResumableError(f"Execution '{original.pk}' is not durable: it has no stored steps to resume from")
    if original.status != ExecutionStatus.FAILED:
        raise NotResumableError(
            f"Only a failed execution can be resumed from its failed step (this one is '{original.status}')"
        )
    statuses = list(
        ExecutionStep.objects.filter(execution_id=original.pk).order_by("index").values_list("status", flat=True)
    )
    first = next((index for index, status in enumerate(statuses) if status != StepStatus.COMPLETED), None)
    if first is None:
        raise NotResumableError(f"Execution '{original.pk}' has no failed step to resume from")
    return first


def steps_copy_for_resume(*, original: Execution, new_execution: Execution) -> int:
    """Give ``new_execution`` the rows of a resume of ``original`` from its failed step; return that step's index.

    The steps completed before it are copied as completed (their result, the
    attempt that ran them, ``reused_from``: the execution that ran them). The
    failed step and the rest are pending; the failed step keeps its last
    checkpoint, so that ``ctx.resume_state`` lets it go on where it stopped.
    Raises :class:`NotResumableError` (see :func:`steps_resume_index`).
    """
    first = steps_resume_index(original)
    rows = list(ExecutionStep.objects.filter(execution_id=original.pk).order_by("index"))
    copies = []
    for row in rows:
        if row.index < first:
            copies.append(
                ExecutionStep(
                    execution_id=new_execution.pk, index=row.index, name=row.name, status=StepStatus.COMPLETED,
                    attempt=row.attempt, started_at=row.started_at, finished_at=row.finished_at, result=row.result,
                    # A chain of resumes names the execution that actually ran the step.
                    reused_from=row.reused_from or original.pk,
                )
            )
        else:
            copies.append(
                ExecutionStep(
                    execution_id=new_execution.pk, index=row.index, name=row.name,
                    checkpoint=row.checkpoint if row.index == first else None,
                )
            )
    ExecutionStep.objects.bulk_create(copies)
    return first


# --- the selector -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    """One declared step of an execution, as ``GET .../steps`` shows it."""

    name: str
    status: str
    #: The attempt that ran it last; null for a step that never ran.
    attempt: int | None
    started_at: datetime | None
    finished_at: datetime | None
    #: The execution whose stored result was reused, or None.
    reused_from: str | None


def step_dict(step: StepView) -> dict[str, Any]:
    """A step's public JSON shape (``GET .../steps``, the pages)."""
    return {
        "name": step.name,
        "status": str(step.status),
        "attempt": step.attempt,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "reused_from": step.reused_from,
    }


def execution_steps(execution: Execution) -> list[StepView]:
    """One entry per declared step of ``execution``, durable or not.

    A durable run's come from its rows; any other's from its stored events
    (one query): step k was entered by the ``progress`` event with
    ``current_step`` k-1; it completed when a later step was entered or the
    run completed; the step running when the run failed, was cancelled or
    timed out failed; a step never entered is pending.
    """
    rows = list(
        ExecutionStep.objects.filter(execution_id=execution.pk)
        .order_by("index")
        .values_list("name", "status", "attempt", "started_at", "finished_at", "reused_from")
    )
    if rows:
        ended = execution.is_terminal
        return [
            StepView(
                name=name,
                # A step still running when its run ended did not complete.
                status=StepStatus.FAILED if ended and status == StepStatus.RUNNING else status,
                attempt=attempt, started_at=started_at, finished_at=finished_at, reused_from=reused_from,
            )
            for name, status, attempt, started_at, finished_at, reused_from in rows
        ]
    return _steps_from_events(execution)


def _declared_steps(execution: Execution) -> list[str] | None:
    target = get_target(execution.type, execution.target_id)
    if target is None:
        return None
    try:
        return target.step_names(execution.inputs)
    except Exception:  # noqa: BLE001 - a target's step function failing leaves the events to tell
        return None


@dataclass
class _Seen:
    name: str
    started_at: datetime
    status: str = StepStatus.RUNNING
    finished_at: datetime | None = None


def _steps_from_events(execution: Execution) -> list[StepView]:
    events = (
        ProgressSnapshot.objects.filter(
            execution_id=execution.pk,
            type__in=[EventType.PROGRESS, EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED],
        )
        .order_by("seq")
        .values_list("type", "progress", "timestamp")
    )
    seen: dict[int, _Seen] = {}
    current: _Seen | None = None
    for kind, progress, timestamp in events:
        if kind == EventType.PROGRESS:
            if not isinstance(progress, dict):
                continue
            index, name = progress.get("current_step"), progress.get("current_step_name")
            if not isinstance(index, int) or not isinstance(name, str) or index in seen:
                continue  # before the first step, or a report within the step
            if current is not None:
                current.status, current.finished_at = StepStatus.COMPLETED, timestamp
            current = seen[index] = _Seen(name=name, started_at=timestamp)
        elif current is not None:
            ended_well = kind == EventType.COMPLETED
            current.status = StepStatus.COMPLETED if ended_well else StepStatus.FAILED
            current.finished_at = timestamp
            current = None
    names = _declared_steps(execution)
    if names is None:
        names = [seen[index].name for index in sorted(seen)]
        indexes = sorted(seen)
    else:
        indexes = list(range(len(names)))
    views = []
    for position, index in enumerate(indexes):
        step = seen.get(index)
        if step is None:
            views.append(StepView(names[position], StepStatus.PENDING, None, None, None, None))
        else:
            views.append(StepView(names[position], step.status, 1, step.started_at, step.finished_at, None))
    return views
