"""The run of one execution: claim it, call its target, record how it ended.

The Celery task (``executions.tasks``) calls :func:`execution_run`; the target
reports through its :class:`~executions.context.RunContext`.

A pool process told to stop (SIGTERM to the worker's whole process group,
systemd's default) gets ``SystemExit`` raised in the run by billiard's
terminate handler: the run records ``WorkerShutdown`` before the process goes,
or, durable, is handed over to another worker (``executions.handover``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Mapping

from billiard.common import terminate_handler_fired
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from core import metrics

from .context import ExecutionCancelled, ExecutionHandedOver, ExecutionTimeout, RunContext
from .events import event_record
from .frames import ErrorInfo
from .handover import attempts_left, execution_hand_over
from .limits import execution_timeout
from .models import EventType, Execution, ExecutionStatus
from .registry import Target, get_target

logger = logging.getLogger(__name__)


def _error_info(exc: BaseException) -> ErrorInfo:
    """Class name and message only: a traceback never leaves the worker's log."""
    details = getattr(exc, "details", None)
    if not isinstance(details, dict):
        details = None
    else:
        try:
            json.dumps(details)
        except (TypeError, ValueError):
            details = {"repr": repr(details)[:2000]}
    return {"type": type(exc).__name__, "message": (str(exc) or type(exc).__name__)[:4000], "details": details}


def _timeout_error(timeout: float | None) -> ErrorInfo:
    return {
        "type": "TimeoutError",
        "message": (
            f"Execution exceeded its timeout of {timeout:g} s" if timeout else "Execution exceeded its time limit"
        ),
        "details": {"timeout": timeout},
    }


def execution_fail(*, execution_id: str, error: ErrorInfo, attempt: int | None = None) -> bool:
    """Mark an execution failed unless it already ended (or, with ``attempt``, moved past it); used when a run dies."""
    recorded = event_record(execution_id=execution_id, event_type=EventType.FAILED, error=error, attempt=attempt)
    return recorded is not None


def _stopped_error(exc: SystemExit, worker: str) -> ErrorInfo:
    """Why a run ends when its process exits under it.

    billiard's terminate handler (installed in every pool process, over any
    handler set in ``worker_process_init``) raises ``SystemExit(-(256 - signum))``.
    Any other ``SystemExit`` came from the target itself and is its failure.
    """
    if not terminate_handler_fired():
        return _error_info(exc)
    signal_name = None
    if isinstance(exc.code, int) and -256 < exc.code < 0:
        with contextlib.suppress(ValueError):
            signal_name = signal.Signals(256 + exc.code).name
    return {
        "type": "WorkerShutdown",
        "message": (
            f"The worker process running this execution ({worker or 'unknown'}) "
            f"received {signal_name or 'a signal to stop'} and stopped; start it again to finish it"
        ),
        "details": {"worker": worker or None, "signal": signal_name},
    }


def this_process() -> str:
    """The worker name of a run claimed outside a Celery worker: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def execution_run(*, execution_id: str, worker: str = "") -> ExecutionStatus | None:
    """Claim an execution, run its target and record how it ended.

    A pending execution is claimed with ``started``; a durable one handed over
    (running, no worker) with ``resumed``, and it goes on at its first step not
    completed. Returns the terminal status it recorded, or None when the claim
    failed (a second delivery of the same task, or the execution was cancelled
    first) or this attempt was handed over in turn. ``worker`` is the Celery
    node name, kept on the execution for the sweepers (:func:`this_process`
    without one).
    """
    close_old_connections()
    worker = worker or this_process()
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None:
        return None
    resuming = execution.status == ExecutionStatus.RUNNING and execution.durable and not execution.worker
    if execution.status != ExecutionStatus.PENDING and not resuming:
        return None
    # A handed-over run is fenced on its attempt from the first write on.
    fence = execution.attempt if resuming else None
    target: Target | None = get_target(execution.type, execution.target_id)
    if target is None:
        execution_fail(
            execution_id=execution_id,
            error={
                "type": "LookupError",
                "message": f"Target {execution.target_id!r} is no longer registered",
                "details": None,
            },
            attempt=fence,
        )
        return ExecutionStatus.FAILED
    try:
        steps = target.step_names(execution.inputs)
    except Exception as exc:  # noqa: BLE001 - a target's step function failing fails the run, never strands it
        failed = execution_fail(execution_id=execution_id, error=_error_info(exc), attempt=fence)
        return ExecutionStatus.FAILED if failed else None
    if resuming:
        ctx = _context(execution, steps)
        claimed = event_record(
            execution_id=execution_id, event_type=EventType.RESUMED, progress=ctx.resume_progress(),
            worker=worker, attempt=execution.attempt,
        )
    else:
        claimed = event_record(
            execution_id=execution_id,
            event_type=EventType.STARTED,
            progress={"current_step": 0, "total_steps": len(steps), "percentage": 0.0, "current_step_name": None},
            worker=worker,
        )
        # Built after the started event: config.timeout counts from started_at, so
        # the deadline clock must not start before it.
        ctx = _context(execution, steps)
    if claimed is None:
        return None
    ctx.start_monitor()
    try:
        return _run_target(ctx, target)
    except SystemExit as exc:
        # The process is on its way out (see the module docstring): say why
        # this run ends, or it would wait for the sweeper as a lost one.
        _process_exiting(ctx, exc, worker)
        raise
    finally:
        ctx.stop_monitor()


def _context(execution: Execution, steps: list[str]) -> RunContext:
    """The run context of this attempt; a later attempt's deadline counts the time the earlier ones took."""
    elapsed = 0.0
    if execution.started_at is not None and execution.status == ExecutionStatus.RUNNING:
        elapsed = max((timezone.now() - execution.started_at).total_seconds(), 0.0)
    return RunContext(
        execution_id=execution.id,
        inputs=execution.inputs,
        config=execution.config,
        steps=steps,
        timeout=execution_timeout(execution.config),
        coalesce_seconds=settings.PROGRESS_COALESCE_SECONDS,
        poll_seconds=settings.PROGRESS_CANCEL_POLL_SECONDS,
        heartbeat_seconds=settings.EXECUTION_HEARTBEAT_SECONDS,
        durable=execution.durable,
        attempt=execution.attempt,
        from_failed_step=execution.from_failed_step,
        elapsed_seconds=elapsed,
    )


def _process_exiting(ctx: RunContext, exc: SystemExit, worker: str) -> None:
    """Record why the run ends as its process exits: a durable run stopped by a signal is handed over."""
    error = _stopped_error(exc, worker)
    stopped = error["type"] == "WorkerShutdown"
    if stopped and ctx.durable:
        if attempts_left(ctx.attempt):
            execution_hand_over(execution_id=ctx.execution_id, attempt=ctx.attempt, worker=worker)
            return
        error["details"] = {**(error["details"] or {}), "attempts": ctx.attempt}
    if _record_failure(ctx, error) and stopped:
        metrics.sweeper_acted(metrics.SHUTDOWN_FAILED)


def _record_failure(ctx: RunContext, error: ErrorInfo) -> ExecutionStatus | None:
    """The failed event carries the latest progress, a coalesced report folded in."""
    ctx.discard_pending()
    recorded = event_record(
        execution_id=ctx.execution_id, event_type=EventType.FAILED, progress=ctx.current_progress(), error=error,
        attempt=ctx.fence,
    )
    return ExecutionStatus.FAILED if recorded else None


def _run_target(ctx: RunContext, target: Target) -> ExecutionStatus | None:
    try:
        ctx.begin_steps()
        outputs = target.run(ctx)
        ctx.check()
    except (ExecutionCancelled, ExecutionHandedOver):
        return None  # cancelled: recorded already; handed over: the next attempt records the rest
    except (ExecutionTimeout, SoftTimeLimitExceeded):
        return _record_failure(ctx, _timeout_error(ctx.timeout))
    except Exception as exc:  # noqa: BLE001 - any failure of the target becomes `failed`
        logger.info("execution %s failed: %r", ctx.execution_id, exc)
        return _record_failure(ctx, _error_info(exc))
    ctx.discard_pending()
    if outputs is None:
        outputs = {}
    elif not isinstance(outputs, Mapping):
        outputs = {"result": outputs}
    try:
        json.dumps(outputs)
    except (TypeError, ValueError) as exc:
        return _record_failure(
            ctx, {"type": "TypeError", "message": f"The outputs are not JSON-serialisable: {exc}", "details": None}
        )
    recorded = event_record(
        execution_id=ctx.execution_id,
        event_type=EventType.COMPLETED,
        progress=ctx.final_progress(),
        outputs=dict(outputs),
        attempt=ctx.fence,
    )
    return ExecutionStatus.COMPLETED if recorded else None
