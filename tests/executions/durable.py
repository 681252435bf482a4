"""Durable runs in this process, attempt by attempt, the way the runner is to run them.

Issue 15's first phase built the pieces (``executions.steps``, the durable
``RunContext``, the ``resumed`` event, the attempt fence); its second phase
wires them into ``executions.runner`` and the sweeper. Until then these
helpers play those parts with the same public calls: :func:`run_attempt` is
one attempt of ``execution_run`` (claim with ``started`` or ``resumed``, begin
the steps, call the target, record the end, every event fenced on the
attempt), :func:`hand_over` the sweeper's compare-and-set, and
:func:`create_durable_execution` the submit of a durable target.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from executions.context import ExecutionCancelled, ExecutionHandedOver, RunContext
from executions.events import event_record
from executions.frames import ErrorInfo
from executions.models import EventType, Execution, ExecutionStatus
from executions.registry import get_target
from executions.runner import execution_timeout
from executions.services import execution_create
from executions.steps import steps_copy_for_resume

#: What :func:`run_attempt` returns when its attempt was superseded.
HANDED_OVER = "handed over"


class WorkerKilled(BaseException):
    """Raised by a test target to end its attempt as a killed process would: nothing more is recorded."""


def create_durable_execution(
    owner: Any,
    *,
    target_id: str = "demo_durable",
    inputs: dict[str, Any] | None = None,
    type: str = "pipeline",  # noqa: A002 - the contract's name
    **fields: Any,
) -> Execution:
    """A pending execution of a durable target, flagged as the submit is to flag it (phase 2)."""
    execution = execution_create(owner=owner, type=type, target_id=target_id, inputs=inputs or {}, config={})
    Execution.objects.filter(pk=execution.pk).update(durable=True, **fields)
    execution.refresh_from_db()
    return execution


def create_resume_execution(original: Execution) -> Execution:
    """"Resume from the failed step" of ``original``: a new execution with the original's steps copied."""
    execution = execution_create(
        owner=original.owner, type=original.type, target_id=original.target_id, inputs=original.inputs,
        config=original.config, rerun_of=original.pk,
    )
    Execution.objects.filter(pk=execution.pk).update(durable=True, from_failed_step=True)
    execution.refresh_from_db()
    steps_copy_for_resume(original=original, new_execution=execution)
    return execution


def hand_over(execution_id: str) -> bool:
    """The sweeper's hand-over: the next attempt, no worker; True if this call made it."""
    attempt = Execution.objects.filter(pk=execution_id).values_list("attempt", flat=True).get()
    return bool(
        Execution.objects.filter(pk=execution_id, status=ExecutionStatus.RUNNING, attempt=attempt).update(
            attempt=attempt + 1, worker="", heartbeat_at=timezone.now()
        )
    )


def _error(exc: BaseException) -> ErrorInfo:
    details = getattr(exc, "details", None)
    return {"type": type(exc).__name__, "message": str(exc), "details": details if isinstance(details, dict) else None}


def run_attempt(execution_id: str, *, worker: str = "worker-a") -> str | None:
    """One attempt: ``completed``, ``failed``, :data:`HANDED_OVER`, or None (not claimed, or cancelled).

    A pending execution is claimed with ``started``; a handed-over one with
    ``resumed``, whose progress is the resume point. :class:`WorkerKilled`
    raised by the target propagates, with nothing recorded.
    """
    execution = Execution.objects.get(pk=execution_id)
    target = get_target(execution.type, execution.target_id)
    assert target is not None
    steps = target.step_names(execution.inputs)
    elapsed = 0.0
    if execution.started_at is not None:
        elapsed = (timezone.now() - execution.started_at).total_seconds()
    ctx = RunContext(
        execution_id=execution_id, inputs=execution.inputs, config=execution.config, steps=steps,
        timeout=execution_timeout(execution.config), coalesce_seconds=settings.PROGRESS_COALESCE_SECONDS,
        poll_seconds=settings.PROGRESS_CANCEL_POLL_SECONDS, heartbeat_seconds=settings.EXECUTION_HEARTBEAT_SECONDS,
        durable=execution.durable, attempt=execution.attempt, from_failed_step=execution.from_failed_step,
        elapsed_seconds=elapsed,
    )
    if execution.status == ExecutionStatus.PENDING:
        start = {"current_step": 0, "total_steps": len(steps), "percentage": 0.0, "current_step_name": None}
        claimed = event_record(execution_id=execution_id, event_type=EventType.STARTED, progress=start, worker=worker)
    else:
        claimed = event_record(
            execution_id=execution_id, event_type=EventType.RESUMED, progress=ctx.resume_progress(),
            worker=worker, attempt=execution.attempt,
        )
    if claimed is None:
        return None
    ctx.start_monitor()
    try:
        try:
            ctx.begin_steps()
            outputs = target.run(ctx)
            ctx.check()
        except ExecutionHandedOver:
            return HANDED_OVER
        except ExecutionCancelled:
            return None
        except Exception as exc:  # noqa: BLE001 - as the runner: any failure of the target becomes `failed`
            ctx.discard_pending()
            failed = event_record(
                execution_id=execution_id, event_type=EventType.FAILED, progress=ctx.current_progress(),
                error=_error(exc), attempt=ctx.fence,
            )
            return "failed" if failed else None
        ctx.discard_pending()
        completed = event_record(
            execution_id=execution_id, event_type=EventType.COMPLETED, progress=ctx.final_progress(),
            outputs=dict(outputs or {}), attempt=ctx.fence,
        )
        return "completed" if completed else None
    finally:
        ctx.stop_monitor()
