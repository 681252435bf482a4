"""Durable runs in this process, made and handed over the way the services and the sweeper do it.

An attempt is ``executions.runner.execution_run``; :func:`hand_over` is the
sweeper's compare-and-set (``executions.handover``) on the worker the run
names; a test target raises :class:`WorkerKilled` to end its attempt as a
killed process would, with nothing more recorded.
"""

from __future__ import annotations

from typing import Any

from executions.handover import execution_hand_over
from executions.models import Execution
from executions.services import execution_create, execution_rerun


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
    """A pending execution of a durable target, submitted as the API does; ``fields`` are set on the row after."""
    execution = execution_create(owner=owner, type=type, target_id=target_id, inputs=inputs or {}, config={})
    assert execution.durable, f"{target_id} is declared durable"
    if fields:
        Execution.objects.filter(pk=execution.pk).update(**fields)
        execution.refresh_from_db()
    return execution


def create_resume_execution(original: Execution) -> Execution:
    """"Resume from the failed step" of ``original``, as ``POST .../rerun {"from_failed_step": true}`` does."""
    return execution_rerun(original=original, owner=original.owner, from_failed_step=True)


def hand_over(execution_id: str) -> bool:
    """The sweeper's hand-over of the run's current attempt; True if this call made it."""
    attempt, worker = Execution.objects.filter(pk=execution_id).values_list("attempt", "worker").get()
    return execution_hand_over(execution_id=execution_id, attempt=attempt, worker=worker)
