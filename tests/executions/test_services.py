"""Submit and cancel (``executions.services``) and the state machine every event
goes through: which transitions are allowed, that each is a compare-and-set,
and that ``seq`` numbers the history without gaps."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from kombu.exceptions import OperationalError

from executions.errors import BrokerUnavailableError, InputsInvalidError, NotCancellableError, TargetNotFoundError
from executions.events import event_record
from executions.limits import HARD_LIMIT_GRACE_SECONDS
from executions.models import EventType, Execution, ProgressSnapshot
from executions.runner import execution_fail
from executions.services import execution_cancel, execution_create
from executions.tasks import run_execution

from ..helpers import create_execution, final_progress, start_progress, step_progress

STATUSES = ["pending", "running", "completed", "failed", "cancelled"]
TERMINAL = {"completed", "failed", "cancelled"}

#: The transitions the contract allows: event type -> statuses it may leave from.
ALLOWED = {
    "started": {"pending"},
    "progress": {"running"},
    "completed": {"running"},
    "failed": {"pending", "running"},
    "cancelled": {"pending", "running"},
}


def seqs(execution_id: str) -> list[int]:
    events = ProgressSnapshot.objects.filter(execution_id=execution_id).order_by("seq")
    return list(events.values_list("seq", flat=True))


def event_types(execution_id: str) -> list[str]:
    events = ProgressSnapshot.objects.filter(execution_id=execution_id).order_by("seq")
    return list(events.values_list("type", flat=True))


def record(execution_id: str, event_type: str) -> Any:
    """Record ``event_type`` with plausible arguments for it."""
    arguments: dict[str, Any] = {}
    if event_type == "started":
        arguments["progress"] = start_progress(5)
    elif event_type == "progress":
        arguments["progress"] = step_progress(2, 5)
    elif event_type == "completed":
        arguments["progress"] = final_progress(5)
        arguments["outputs"] = {"steps_completed": 5}
    elif event_type == "failed":
        arguments["error"] = {"type": "RuntimeError", "message": "late", "details": None}
    return event_record(execution_id=execution_id, event_type=event_type, **arguments)


# --- execution_create -----------------------------------------------------------------------


@pytest.mark.django_db
def test_create_validates_and_fills_defaults(alice: Any) -> None:
    execution = execution_create(
        owner=alice, type="pipeline", target_id="demo_steps", inputs={"steps": 2}, config={"timeout": 9, "x": [1]}
    )
    execution.refresh_from_db()
    assert execution.inputs == {"steps": 2, "step_seconds": 1.0, "fail_at_step": None}
    assert execution.config == {"timeout": 9, "x": [1]}
    assert (execution.status, execution.seq, execution.progress, execution.owner) == ("pending", 0, None, alice)
    assert execution.started_at is None
    assert not ProgressSnapshot.objects.filter(execution=execution).exists(), "submitting is not an event"


@pytest.mark.django_db
def test_create_queues_the_run_only_after_commit(
    alice: Any, task_queue: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        execution = execution_create(owner=alice, type="agent", target_id="echo", inputs={}, config={"timeout": 5})
        assert task_queue.calls == [], "queued inside the transaction"
    assert len(callbacks) == 2, "queue the run, then announce it (execution_created)"
    callbacks[0]()
    assert task_queue.execution_ids == [execution.id]
    assert task_queue.calls[0]["soft_time_limit"] == 7
    assert task_queue.calls[0]["time_limit"] == 7 + HARD_LIMIT_GRACE_SECONDS


@pytest.mark.django_db(transaction=True)
def test_create_refuses_and_stores_nothing_when_the_broker_is_down(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(run_execution, "apply_async", broken)
    with pytest.raises(BrokerUnavailableError, match="task queue is unavailable"):
        execution_create(owner=alice, type="agent", target_id="echo", inputs={}, config={})
    assert not Execution.objects.exists()
    assert not ProgressSnapshot.objects.exists()


@pytest.mark.django_db
def test_create_refuses_an_unknown_target(alice: Any) -> None:
    with pytest.raises(TargetNotFoundError, match=r"^Pipeline 'nope' not found$"):
        execution_create(owner=alice, type="pipeline", target_id="nope", inputs={}, config={})
    with pytest.raises(TargetNotFoundError, match=r"^Agent 'demo_steps' not found$"):
        execution_create(owner=alice, type="agent", target_id="demo_steps", inputs={}, config={})
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_create_refuses_invalid_inputs_and_stores_nothing(alice: Any) -> None:
    with pytest.raises(InputsInvalidError) as caught:
        execution_create(owner=alice, type="pipeline", target_id="demo_steps", inputs={"steps": "5"}, config={})
    assert set(caught.value.errors) == {"steps"}
    assert not Execution.objects.exists()


# --- execution_cancel ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_a_pending_execution(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    recorded = execution_cancel(execution_id=execution.id)
    assert (recorded.seq, recorded.type, recorded.status) == (1, "cancelled", "cancelled")
    execution.refresh_from_db()
    assert (execution.status, execution.seq, execution.progress, execution.started_at) == ("cancelled", 1, None, None)
    assert execution.cancelled_at is not None
    assert execution.outputs is None and execution.error is None
    assert event_types(execution.id) == ["cancelled"]


@pytest.mark.django_db
def test_cancel_a_running_execution_keeps_its_progress(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=3)
    recorded = execution_cancel(execution_id=execution.id)
    assert recorded.seq == 5
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    assert execution.progress == step_progress(3, 5)
    assert execution.cancelled_at >= execution.started_at
    snapshot = ProgressSnapshot.objects.get(execution=execution, seq=5)
    assert snapshot.progress == step_progress(3, 5)


@pytest.mark.django_db
@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_cancel_refuses_a_terminal_execution(make_execution: Any, alice: Any, status: str) -> None:
    execution = make_execution(alice, status)
    with pytest.raises(NotCancellableError, match=f"^Cannot cancel execution with status '{status}'$") as caught:
        execution_cancel(execution_id=execution.id)
    assert caught.value.status == status
    after = Execution.objects.get(pk=execution.id)
    assert (after.status, after.seq) == (status, execution.seq)


@pytest.mark.django_db
def test_cancel_a_missing_execution(db: None) -> None:
    with pytest.raises(NotCancellableError):
        execution_cancel(execution_id="exec_000000000000")


@pytest.mark.django_db(transaction=True)
def test_concurrent_cancels_record_exactly_one_event(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running")
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def cancel() -> None:
        try:
            barrier.wait(timeout=5)
            try:
                execution_cancel(execution_id=execution.id)
                outcome = "cancelled"
            except NotCancellableError as exc:
                outcome = exc.status
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=cancel) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(outcomes) == ["cancelled"] * 6, "one success, then 'cancelled' for everyone else"
    assert event_types(execution.id).count("cancelled") == 1
    assert seqs(execution.id) == list(range(1, execution.seq + 2))


# --- the state machine ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("event_type", list(ALLOWED))
def test_transitions(make_execution: Any, alice: Any, status: str, event_type: str) -> None:
    execution = make_execution(alice, status)
    before = Execution.objects.get(pk=execution.id)
    recorded = record(execution.id, event_type)
    after = Execution.objects.get(pk=execution.id)
    if status in ALLOWED[event_type]:
        assert recorded is not None
        assert recorded.seq == before.seq + 1
        assert after.seq == before.seq + 1
        assert after.status == {"started": "running", "progress": "running"}.get(event_type, event_type)
        assert seqs(execution.id)[-1] == after.seq
    else:
        assert recorded is None
        for field in (
            "status", "seq", "progress", "outputs", "error", "started_at", "completed_at", "failed_at", "cancelled_at"
        ):
            assert getattr(after, field) == getattr(before, field), field
        assert seqs(execution.id) == list(range(1, before.seq + 1))


@pytest.mark.django_db
@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_a_terminal_status_is_never_left(make_execution: Any, alice: Any, status: str) -> None:
    execution = make_execution(alice, status)
    for event_type in ALLOWED:
        assert record(execution.id, event_type) is None
    assert execution_fail(execution_id=execution.id, error={"type": "X", "message": "late", "details": None}) is False
    after = Execution.objects.get(pk=execution.id)
    assert (after.status, after.seq, after.error) == (status, execution.seq, execution.error)
    assert event_types(execution.id)[-1] == status, "the terminal event stays the last"


@pytest.mark.django_db
def test_started_only_from_pending(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    assert record(execution.id, "started") is not None
    assert record(execution.id, "started") is None, "a second claim of the same run"
    assert event_types(execution.id) == ["started"]


@pytest.mark.django_db
def test_started_sets_the_initial_progress_but_its_frame_has_none(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    recorded = record(execution.id, "started")
    execution.refresh_from_db()
    assert execution.progress == start_progress(5)
    assert execution.started_at is not None
    assert '"progress"' not in recorded.frame_text


@pytest.mark.django_db
def test_seq_numbers_every_event_without_gaps(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "completed", inputs={"steps": 7})
    assert seqs(execution.id) == list(range(1, 10))
    assert execution.seq == 9
    assert event_types(execution.id) == ["started"] + ["progress"] * 7 + ["completed"]


@pytest.mark.django_db
def test_percentage_never_decreases(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=3)
    lower = {**step_progress(3, 5), "percentage": 10.0}
    assert event_record(execution_id=execution.id, event_type=EventType.PROGRESS, progress=lower) is not None
    execution.refresh_from_db()
    assert execution.progress["percentage"] == 40.0
    stored = list(
        ProgressSnapshot.objects.filter(execution=execution).order_by("seq").values_list("progress", flat=True)
    )
    percentages = [p["percentage"] for p in stored]
    assert percentages == sorted(percentages)


@pytest.mark.django_db
def test_percentage_is_clamped_to_0_100(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running")
    too_much = {**step_progress(5, 5), "percentage": 250.0}
    event_record(execution_id=execution.id, event_type=EventType.PROGRESS, progress=too_much)
    execution.refresh_from_db()
    assert execution.progress["percentage"] == 100.0


@pytest.mark.django_db
def test_failed_without_progress_keeps_the_last_progress(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=2)
    assert execution_fail(
        execution_id=execution.id, error={"type": "WorkerLostError", "message": "gone", "details": None}
    )
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.progress == step_progress(2, 5)
    assert execution.error == {"type": "WorkerLostError", "message": "gone", "details": None}
    assert execution.failed_at is not None and execution.completed_at is None


@pytest.mark.django_db
def test_a_pending_execution_can_fail_without_starting(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    assert execution_fail(
        execution_id=execution.id, error={"type": "LookupError", "message": "x", "details": None}
    )
    execution.refresh_from_db()
    assert (execution.status, execution.seq, execution.progress, execution.started_at) == ("failed", 1, None, None)


@pytest.mark.django_db
def test_event_record_on_a_missing_execution_does_nothing(db: None) -> None:
    assert record("exec_000000000000", "started") is None
    assert not ProgressSnapshot.objects.exists()


@pytest.mark.django_db
def test_create_execution_helper_reaches_every_state(make_execution: Any, alice: Any) -> None:
    """The fixture the other tests lean on really goes through the services."""
    for status in STATUSES:
        execution = make_execution(alice, status)
        assert execution.status == status
        assert seqs(execution.id) == list(range(1, execution.seq + 1))
    cancelled_early = create_execution(alice, "cancelled", started=False)
    assert event_types(cancelled_early.id) == ["cancelled"]
