"""Helpers shared by the tests: users, clients, executions in a given state, polling.

The one source of each: every user is made by :func:`make_user` (the fixtures
of tests/conftest.py and of the packages' conftest.py call it), every
execution through the services (``execution_create``, ``event_record``,
``execution_cancel``, the same calls a run makes) by :func:`create_execution`.
Only :func:`create_execution_with_history` writes event rows itself, for the
tests of thousands of events.

Constants and helpers live here, never in a conftest.py: conftest modules are
pytest's to import.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.errors import NotCancellableError
from executions.events import event_record
from executions.models import UNENDED_STATUSES, EventType, Execution, ProgressSnapshot
from executions.registry import get_target
from executions.services import execution_cancel, execution_create

#: Every test user's password (hashed fast, see tests/settings.py).
PASSWORD = "correct horse battery staple"


def make_user(username: str | None = None, *, staff: bool = False, superuser: bool = False, **extra: Any) -> User:
    """A user with the password :data:`PASSWORD`, named ``username`` or a fresh unique name."""
    username = username or f"user-{uuid.uuid4().hex[:12]}"
    manager = get_user_model().objects
    if superuser:
        return manager.create_superuser(username, password=PASSWORD, **extra)
    return manager.create_user(username, password=PASSWORD, is_staff=staff, **extra)


def user_token(user: Any) -> str:
    """The user's DRF token key (created on first use)."""
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def logged_in(user: Any) -> Client:
    """A Django test client logged in as ``user`` through the login form's backend."""
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def session_cookie(user: Any) -> str:
    """A ``sessionid=...`` cookie of a logged-in session of ``user``, for a socket or a live server."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class _AnyEta:
    """Equal to every value ``eta_seconds`` may hold while running (null, or seconds >= 0).

    Expected progress objects use it where the estimate depends on the clock
    (``executions.eta``); as input to ``event_record`` it is replaced by the
    writer's own estimate, like anything a report says there.
    """

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a class defining __eq__ should be

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
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user_token(user)}")
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
    return {
        "current_step": 0, "total_steps": total_steps, "percentage": 0.0, "current_step_name": None, "eta_seconds": None
    }


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


def create_execution_with_history(owner: Any, events: int) -> Execution:
    """A running ``demo_steps`` execution with ``events`` stored events (``started``, then progress).

    Made through the services up to its ``started`` event; the rest of its
    history is then written in bulk, with the row's ``seq`` and ``progress`` to
    match: thousands of ``event_record`` calls would take about a minute. For
    the tests of what a long history costs to show, nothing else.
    """
    execution = create_execution(owner, "running", inputs={"steps": events, "step_seconds": 0}, steps_entered=0)
    started = ProgressSnapshot.objects.get(execution=execution, seq=1)
    # Stored as the writer would store it: a number for the estimate (not the ANY_ETA matcher).
    progress = [{**step_progress(seq - 1, events), "eta_seconds": 1.0} for seq in range(2, events + 1)]
    ProgressSnapshot.objects.bulk_create(
        ProgressSnapshot(
            execution=execution,
            seq=seq,
            type=EventType.PROGRESS,
            status="running",
            progress=progress[seq - 2],
            timestamp=started.timestamp + timedelta(milliseconds=seq),
            frame="{}",
        )
        for seq in range(2, events + 1)
    )
    Execution.objects.filter(pk=execution.pk, seq=1).update(seq=events, progress=progress[-1])
    execution.refresh_from_db()
    return execution


def settle_executions(timeout: float = 30.0) -> None:
    """Cancel every execution still unended and wait until each has ended.

    Called before a live test's committed tables are flushed: the flush's TRUNCATE
    locks every table, and a run still recording an event (execution row, then
    its snapshot) deadlocked with it once on PostgreSQL.
    """

    def all_ended() -> bool:
        unended = list(Execution.objects.filter(status__in=UNENDED_STATUSES).values_list("pk", flat=True))
        for execution_id in unended:
            with contextlib.suppress(NotCancellableError):  # it ended meanwhile
                execution_cancel(execution_id=execution_id)
        return not unended

    wait_for(all_ended, timeout=timeout, interval=0.05, what="every execution ended before the flush")
