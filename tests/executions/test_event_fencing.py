"""The event writer's part in durable runs: the ``resumed`` event that claims a
handed-over run, and the ``attempt`` fence, on SQLite and PostgreSQL.

Claimers race in threads, each with its own connection (``.ci/run`` runs this
file on both databases): the row lock, or SQLite's IMMEDIATE transaction, lets
exactly one claim through.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from executions.events import RecordedEvent, event_record
from executions.models import EventType, Execution, ProgressSnapshot

from ..helpers import ANY_ETA, step_progress
from .durable import create_durable_execution, hand_over

RESUMED_KEYS = ["type", "execution_id", "status", "progress", "attempt", "seq", "timestamp"]


def running_durable(owner: Any, *, steps_entered: int = 2) -> Execution:
    """A durable demo_durable run (6 steps) that entered ``steps_entered`` steps, claimed by worker-a."""
    execution = create_durable_execution(owner, inputs={"steps": 6, "step_seconds": 0})
    start = {"current_step": 0, "total_steps": 6, "percentage": 0.0, "current_step_name": None}
    assert event_record(execution_id=execution.id, event_type=EventType.STARTED, progress=start, worker="worker-a")
    for step in range(1, steps_entered + 1):
        assert event_record(
            execution_id=execution.id, event_type=EventType.PROGRESS, progress=step_progress(step, 6), attempt=1
        )
    execution.refresh_from_db()
    return execution


def resume_point(completed: int) -> dict[str, Any]:
    return {"current_step": completed, "total_steps": 6, "percentage": completed / 6 * 100, "current_step_name": None}


def stored_types(execution: Execution) -> list[str]:
    return list(ProgressSnapshot.objects.filter(execution=execution).order_by("seq").values_list("type", flat=True))


@pytest.mark.django_db
def test_resumed_claims_a_handed_over_run_with_its_frame(alice: Any) -> None:
    execution = running_durable(alice)
    assert hand_over(execution.id)
    recorded = event_record(
        execution_id=execution.id, event_type=EventType.RESUMED, progress=resume_point(1), worker="worker-b",
        attempt=2,
    )
    assert recorded is not None and recorded.type == "resumed" and recorded.seq == 4
    frame = json.loads(recorded.frame_text)
    assert list(frame) == RESUMED_KEYS
    assert frame["status"] == "running" and frame["attempt"] == 2 and frame["seq"] == 4
    # Never below what was stored: entering step 2 had said 16.7 %, the resume point says the same.
    assert frame["progress"] == {**resume_point(1), "eta_seconds": ANY_ETA}
    execution.refresh_from_db()
    assert (execution.status, execution.worker, execution.attempt, execution.seq) == ("running", "worker-b", 2, 4)
    assert execution.heartbeat_at == recorded_time(recorded)
    assert stored_types(execution) == ["started", "progress", "progress", "resumed"]


def recorded_time(recorded: RecordedEvent) -> Any:
    return ProgressSnapshot.objects.get(execution_id=recorded.execution_id, seq=recorded.seq).timestamp


@pytest.mark.django_db
def test_resumed_percentage_never_goes_below_the_stored_one(alice: Any) -> None:
    execution = running_durable(alice, steps_entered=3)  # 33.3 % stored
    assert hand_over(execution.id)
    recorded = event_record(
        execution_id=execution.id, event_type=EventType.RESUMED, progress=resume_point(1), worker="worker-b"
    )
    assert recorded is not None
    assert json.loads(recorded.frame_text)["progress"]["percentage"] == pytest.approx(200 / 6)


@pytest.mark.django_db
def test_resumed_is_refused_unless_the_run_was_handed_over(alice: Any, make_execution: Any) -> None:
    execution = running_durable(alice)
    claim = {"event_type": EventType.RESUMED, "progress": resume_point(1), "worker": "worker-b"}
    assert event_record(execution_id=execution.id, **claim) is None, "worker-a still holds it"
    assert hand_over(execution.id)
    assert event_record(execution_id=execution.id, **claim, attempt=1) is None, "a claim for an older attempt"
    assert event_record(execution_id=execution.id, **claim) is not None
    assert event_record(execution_id=execution.id, **claim) is None, "claimed already"
    for status in ("pending", "completed"):
        other = make_execution(alice, status)
        assert event_record(execution_id=other.id, **claim) is None
    with pytest.raises(ValueError, match="worker"):
        event_record(execution_id=execution.id, event_type=EventType.RESUMED, progress=resume_point(1))
    assert stored_types(execution).count("resumed") == 1


@pytest.mark.django_db
def test_the_attempt_fence_refuses_a_superseded_attempts_events(alice: Any) -> None:
    execution = running_durable(alice)
    assert hand_over(execution.id)
    stale = {"attempt": 1}
    assert event_record(
        execution_id=execution.id, event_type=EventType.PROGRESS, progress=step_progress(3, 6), **stale
    ) is None
    assert event_record(
        execution_id=execution.id, event_type=EventType.COMPLETED, progress=resume_point(6), outputs={}, **stale
    ) is None
    assert event_record(
        execution_id=execution.id, event_type=EventType.FAILED,
        error={"type": "ValueError", "message": "late", "details": None}, **stale,
    ) is None
    assert stored_types(execution) == ["started", "progress", "progress"]
    # The guard is optional: a cancel (no attempt) still ends the run.
    assert event_record(execution_id=execution.id, event_type=EventType.CANCELLED) is not None


def run_together(targets: list[Callable[[], None]]) -> None:
    """Start every target at once, each in its own thread (own connection); re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=10)
            target()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a claimer is stuck (deadlock?)"
    if errors:
        raise errors[0]


@pytest.mark.django_db(transaction=True)
def test_of_racing_claims_exactly_one_records_resumed(alice: Any) -> None:
    execution = running_durable(alice)
    assert hand_over(execution.id)
    winners: list[str] = []
    stale_recorded: list[RecordedEvent | None] = []

    def claim(worker: str) -> Callable[[], None]:
        def target() -> None:
            recorded = event_record(
                execution_id=execution.id, event_type=EventType.RESUMED, progress=resume_point(1), worker=worker,
                attempt=2,
            )
            if recorded is not None:
                winners.append(worker)

        return target

    def stale_report() -> None:
        stale_recorded.append(
            event_record(
                execution_id=execution.id, event_type=EventType.PROGRESS, progress=step_progress(3, 6), attempt=1
            )
        )

    run_together([claim(f"worker-{i}") for i in range(6)] + [stale_report])
    assert len(winners) == 1
    assert stale_recorded == [None]
    execution.refresh_from_db()
    assert execution.worker == winners[0] and execution.attempt == 2
    assert stored_types(execution) == ["started", "progress", "progress", "resumed"]
