"""Executions in every state the API can show, for the schema conformance tests.

Every status, with ``progress`` and ``error`` both null and set, ``outputs``
set, ``callback_url`` set and unset, both target types, a durable run resumed
on its second attempt and one failed with stored steps. Each is brought to
its state through the services (``tests.helpers``), as a run would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.test import override_settings

from executions.events import event_record
from executions.handover import execution_hand_over
from executions.models import EventType, Execution
from executions.services import execution_create
from executions.steps import step_complete, step_enter, step_fail, steps_begin

from ..helpers import create_execution, record_start, start_progress

#: A loopback address: the SSRF check refuses it unless WEBHOOK_ALLOW_PRIVATE is on.
CALLBACK_URL = "http://127.0.0.1:9/hook"


def failed_before_start(owner: Any) -> Execution:
    """A worker lost before the target ran: failed, no progress, an error with details."""
    execution = create_execution(owner)
    error = {"type": "WorkerLostError", "message": "the worker died", "details": {"exitcode": 9}}
    assert event_record(execution_id=execution.id, event_type=EventType.FAILED, error=error)
    execution.refresh_from_db()
    return execution


def running_with_callback(owner: Any) -> Execution:
    with override_settings(WEBHOOK_ALLOW_PRIVATE=True):
        execution = execution_create(
            owner=owner, type="pipeline", target_id="demo_steps", inputs={}, config={}, callback_url=CALLBACK_URL
        )
    record_start(execution)
    execution.refresh_from_db()
    return execution


def resumed_after_a_hand_over(owner: Any) -> Execution:
    """A durable run whose worker was lost after step 2, taken up by another worker (attempt 2)."""
    execution = create_execution(owner, target_id="demo_durable", inputs={"steps": 4})
    assert event_record(
        execution_id=execution.id, event_type=EventType.STARTED, progress=start_progress(4), worker="w1@host"
    )
    assert execution_hand_over(execution_id=execution.id, attempt=1, worker="w1@host")
    resume_point = {"current_step": 2, "total_steps": 4, "percentage": 50.0, "current_step_name": None}
    assert event_record(
        execution_id=execution.id, event_type=EventType.RESUMED, progress=resume_point,
        worker="w2@host", attempt=2,
    )
    execution.refresh_from_db()
    return execution


def durable_failed_at_step_3(owner: Any) -> Execution:
    """A durable run that stored steps 1 and 2, then failed in step 3 (written as its run writes them)."""
    execution = create_execution(owner, target_id="demo_durable", inputs={"steps": 4})
    assert event_record(
        execution_id=execution.id, event_type=EventType.STARTED, progress=start_progress(4), worker="w1@host"
    )
    assert steps_begin(execution_id=execution.id, names=[f"step_{n}" for n in range(1, 5)], attempt=1)
    for index in range(3):
        step_enter(execution_id=execution.id, index=index, attempt=1)
        if index < 2:
            assert step_complete(execution_id=execution.id, index=index, attempt=1, result={"n": index})
    assert step_fail(execution_id=execution.id, index=2, attempt=1)
    error = {"type": "ValueError", "message": "Simulated failure at step 3", "details": None}
    assert event_record(execution_id=execution.id, event_type=EventType.FAILED, error=error, attempt=1)
    execution.refresh_from_db()
    return execution


EXECUTION_STATES: dict[str, Callable[[Any], Execution]] = {
    "pending": lambda owner: create_execution(owner),
    "running": lambda owner: create_execution(owner, "running", steps_entered=2),
    "running with a callback": running_with_callback,
    "completed": lambda owner: create_execution(owner, "completed"),
    "failed": lambda owner: create_execution(owner, "failed", steps_entered=3),
    "failed before start": failed_before_start,
    "cancelled while pending": lambda owner: create_execution(owner, "cancelled", started=False),
    "cancelled while running": lambda owner: create_execution(owner, "cancelled", steps_entered=1),
    "resumed after a hand-over": resumed_after_a_hand_over,
    "durable failed at step 3": durable_failed_at_step_3,
    "agent completed": lambda owner: create_execution(
        owner, "completed", type="agent", target_id="echo", inputs={"message": "hi"}, config={"timeout": 30}
    ),
}
