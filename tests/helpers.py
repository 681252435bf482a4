"""Helpers shared by the tests: polling, API clients, executions in a given state.

Executions are brought to a state through the services (``execution_create``,
``event_record``, ``execution_cancel``), the same calls a run makes, never by
writing their rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.models import Execution
from executions.registry import get_target
from executions.services import execution_cancel, execution_create
from executions.models import EventType
from executions.events import event_record

PASSWORD = "correct horse battery staple"


class _AnyEta:
    """Equal to every value ``eta_seconds`` may hold while running (null, or seconds >= 0).

    Expected progress objects use it where the estimate depends on the clock
    (``executions.eta``); as input to ``event_record`` it is replaced by the
    writer's own estimate, like anything a report says there.
    """

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return other is None or (isinstance(other, int | float) and not isinstance(other, bool) and other >= 0)

    def __repr__(self) -> str:
        return "<any eta_seconds>"


ANY_ETA: Any = _AnyEta()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def token_client(user: Any) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def assert_timestamp(value: Any) -> datetime:
    """A UTC ISO-8601 timestamp with an explicit offset (the contract)."""
    assert isinstance(value, str), value
    assert value.endswith(("Z", "+00:00")), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    return parsed


def start_progress(total_steps: int) -> dict[str, Any]:
    """The progress a run starts from: nothing done, so no estimate yet."""
    return {"current_step": 0, "total_steps": total_steps, "percentage": 0.0, "current_step_name": None, "eta_seconds": None}


def step_progress(step: int, total_steps: int, name: str | None = None) -> dict[str, Any]:
    """Progress on entering ``step`` (1-based) of ``total_steps`` (no estimate at 0 %, a clock-dependent one after)."""
    percentage = (step - 1) / total_steps * 100
    return {
        "current_step": step - 1,
        "total_steps": total_steps,
        "percentage": percentage,
        "current_step_name": name or f"step_{step}",
        "eta_seconds": None if percentage == 0 else ANY_ETA,
    }


def final_progress(total_steps: int) -> dict[str, Any]:
    return {
        "current_step": total_steps, "total_steps": total_steps, "percentage": 100.0, "current_step_name": None,
        "eta_seconds": 0.0,
    }


def record_start(execution: Execution) -> None:
    """The ``started`` event, with the progress a run starts from."""
    total = len(target_steps(execution))
    assert event_record(execution_id=execution.id, event_type=EventType.STARTED, progress=start_progress(total))


def record_completion(execution: Execution) -> None:
    total = len(target_steps(execution))
    assert event_record(
        execution_id=execution.id,
        event_type=EventType.COMPLETED,
        progress=final_progress(total),
        outputs={"steps_completed": total},
    )


def target_steps(execution: Execution) -> list[str]:
    target = get_target(execution.type, execution.target_id)
    assert target is not None
    return target.step_names(execution.inputs)


def create_execution(
    owner: Any,
    status: str = "pending",
    *,
    type: str = "pipeline",  # noqa: A002 - the contract's name
    target_id: str = "demo_steps",
    inputs: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    steps_entered: int = 1,
    started: bool = True,
) -> Execution:
    """An execution brought to ``status`` through the services, as a run would.

    ``demo_steps`` (the default target) has 5 steps unless ``inputs`` say
    otherwise. ``running`` records ``started`` and enters ``steps_entered``
    steps; ``completed`` enters every step and completes; ``failed`` fails
    after ``steps_entered`` steps with a ``ValueError``; ``cancelled`` cancels a
    running execution, or a pending one when ``started`` is false.
    """
    if status not in {"pending", "running", "completed", "failed", "cancelled"}:
        raise ValueError(f"unknown status {status!r}")
    execution = execution_create(
        owner=owner,
        type=type,
        target_id=target_id,
        inputs=inputs if inputs is not None else {},
        config=config if config is not None else {},
    )
    if status != "pending" and not (status == "cancelled" and not started):
        steps = target_steps(execution)
        record_start(execution)
        entered = len(steps) if status == "completed" else min(steps_entered, len(steps))
        for step in range(1, entered + 1):
            assert event_record(
                execution_id=execution.id,
                event_type=EventType.PROGRESS,
                progress=step_progress(step, len(steps), steps[step - 1]),
            )
        if status == "completed":
            record_completion(execution)
        elif status == "failed":
            assert event_record(
                execution_id=execution.id,
                event_type=EventType.FAILED,
                error={"type": "ValueError", "message": "boom", "details": None},
            )
    if status == "cancelled":
        execution_cancel(execution_id=execution.id)
    execution.refresh_from_db()
    assert execution.status == status
    return execution
