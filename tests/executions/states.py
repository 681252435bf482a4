"""Executions in every state the API can show, for the schema conformance tests.

Every status, with ``progress`` and ``error`` both null and set, ``outputs``
set, ``callback_url`` set and unset, both target types. Each is brought to
its state through the services (``tests.helpers``), as a run would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.test import override_settings

from executions.events import event_record
from executions.models import EventType, Execution
from executions.services import execution_create

from ..helpers import create_execution, record_start

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


EXECUTION_STATES: dict[str, Callable[[Any], Execution]] = {
    "pending": lambda owner: create_execution(owner),
    "running": lambda owner: create_execution(owner, "running", steps_entered=2),
    "running with a callback": running_with_callback,
    "completed": lambda owner: create_execution(owner, "completed"),
    "failed": lambda owner: create_execution(owner, "failed", steps_entered=3),
    "failed before start": failed_before_start,
    "cancelled while pending": lambda owner: create_execution(owner, "cancelled", started=False),
    "cancelled while running": lambda owner: create_execution(owner, "cancelled", steps_entered=1),
    "agent completed": lambda owner: create_execution(
        owner, "completed", type="agent", target_id="echo", inputs={"message": "hi"}, config={"timeout": 30}
    ),
}
