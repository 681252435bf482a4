"""``executions.steps``: the step rows of durable runs (begin, enter, complete, fail,
checkpoint, each fenced on the attempt), the copy for a resume from the failed
step, the output limit, and ``execution_steps`` for every kind of execution.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest
from django.db import connection, transaction

from executions.errors import NotResumableError
from executions.events import event_record
from executions.frames import ErrorInfo
from executions.models import EventType, Execution, ExecutionStep, ProgressSnapshot
from executions.services import execution_cancel
from executions.steps import (
    StepEntry,
    StepOrderError,
    StepOutputTooLarge,
    StepsBegun,
    StepView,
    execution_steps,
    step_checkpoint,
    step_complete,
    step_enter,
    step_fail,
    step_order_mismatch,
    step_output_checked,
    step_result,
    steps_begin,
    steps_copy_for_resume,
    steps_resume_index,
    steps_resume_point,
)

from ..helpers import step_progress, wait_for
from .durable import create_durable_execution, hand_over

pytestmark = pytest.mark.django_db

NAMES = ["step_1", "step_2", "step_3", "step_4"]


def started_durable(owner: Any, steps: int = 4, **inputs: Any) -> Execution:
    """A claimed demo_durable run whose rows are made (attempt 1)."""
    execution = create_durable_execution(owner, inputs={"steps": steps, "step_seconds": 0, **inputs})
    start = {"current_step": 0, "total_steps": steps, "percentage": 0.0, "current_step_name": None}
    assert event_record(execution_id=execution.id, event_type=EventType.STARTED, progress=start, worker="w")
    assert steps_begin(execution_id=execution.id, names=NAMES[:steps], attempt=1) == StepsBegun(frozenset())
    execution.refresh_from_db()
    return execution


def statuses(execution: Execution) -> list[tuple[str, int | None]]:
    return list(ExecutionStep.objects.filter(execution=execution).order_by("index").values_list("status", "attempt"))


def run_step(execution: Execution, index: int, result: Any = "done", attempt: int = 1) -> None:
    assert step_enter(execution_id=execution.id, index=index, attempt=attempt) is StepEntry.ENTERED
    assert step_complete(execution_id=execution.id, index=index, attempt=attempt, result=result)


def fail(execution: Execution) -> None:
    error: ErrorInfo = {"type": "ValueError", "message": "boom", "details": None}
    assert event_record(execution_id=execution.id, event_type=EventType.FAILED, error=error)
    execution.refresh_from_db()


# --- the store -----------------------------------------------------------------------------------------


def test_begin_makes_one_pending_row_per_declared_step(alice: Any) -> None:
    execution = started_durable(alice)
    assert list(ExecutionStep.objects.filter(execution=execution).values_list("index", "name", "status")) == [
        (i, name, "pending") for i, name in enumerate(NAMES)
    ]
    run_step(execution, 0)
    run_step(execution, 1)
    again = steps_begin(execution_id=execution.id, names=NAMES, attempt=1)
    assert again == StepsBegun(frozenset({0, 1})) and again.resume_point == 2
    assert ExecutionStep.objects.filter(execution=execution).count() == 4


def test_begin_refuses_a_changed_step_list(alice: Any) -> None:
    execution = started_durable(alice)
    with pytest.raises(StepOrderError, match="step 'step_3' recorded where 'other' expected"):
        steps_begin(execution_id=execution.id, names=["step_1", "step_2", "other", "step_4"], attempt=1)


def test_the_step_order_messages_name_the_first_difference() -> None:
    assert step_order_mismatch(["a", "b"], ["a", "b"]) is None
    assert str(step_order_mismatch(["a", "b", "c"], ["a", "x", "y"])) == "step 'b' recorded where 'x' expected"
    assert str(step_order_mismatch(["a"], ["a", "b"])) == (
        "no step recorded where 'b' expected (1 steps recorded, 2 declared)"
    )
    assert str(step_order_mismatch(["a", "b"], ["a"])) == (
        "step 'b' recorded where no step expected (2 steps recorded, 1 declared)"
    )


def test_a_completed_step_is_final(alice: Any) -> None:
    execution = started_durable(alice)
    run_step(execution, 0, {"n": 1})
    assert step_enter(execution_id=execution.id, index=0, attempt=1) is StepEntry.COMPLETED
    assert step_result(execution_id=execution.id, index=0) == {"n": 1}
    assert not step_complete(execution_id=execution.id, index=0, attempt=1, result={"n": 2})
    assert not step_fail(execution_id=execution.id, index=0, attempt=1)
    assert not step_checkpoint(execution_id=execution.id, index=0, attempt=1, value=1)
    row = ExecutionStep.objects.get(execution=execution, index=0)
    assert (row.status, row.result, row.checkpoint) == ("completed", {"n": 1}, None)
    assert row.started_at is not None and row.finished_at is not None and row.started_at <= row.finished_at


def test_a_failed_step_is_run_again_and_keeps_its_checkpoint(alice: Any) -> None:
    execution = started_durable(alice)
    assert step_enter(execution_id=execution.id, index=0, attempt=1) is StepEntry.ENTERED
    assert step_checkpoint(execution_id=execution.id, index=0, attempt=1, value={"page": 7})
    assert step_fail(execution_id=execution.id, index=0, attempt=1)
    assert statuses(execution)[0] == ("failed", 1)
    assert hand_over(execution.id)
    begun = steps_begin(execution_id=execution.id, names=NAMES, attempt=2)
    assert begun == StepsBegun(completed=frozenset(), checkpoints={0: {"page": 7}})
    assert step_enter(execution_id=execution.id, index=0, attempt=2) is StepEntry.ENTERED
    assert statuses(execution)[0] == ("running", 2)


def test_every_write_is_fenced_on_the_attempt(alice: Any) -> None:
    execution = started_durable(alice)
    assert step_enter(execution_id=execution.id, index=0, attempt=1) is StepEntry.ENTERED
    assert hand_over(execution.id)
    assert step_enter(execution_id=execution.id, index=1, attempt=1) is StepEntry.FENCED
    assert not step_complete(execution_id=execution.id, index=0, attempt=1, result="late")
    assert not step_fail(execution_id=execution.id, index=0, attempt=1)
    assert not step_checkpoint(execution_id=execution.id, index=0, attempt=1, value="late")
    assert steps_begin(execution_id=execution.id, names=NAMES, attempt=1) is None
    assert statuses(execution) == [("running", 1), ("pending", None), ("pending", None), ("pending", None)]
    # The current attempt writes; the step it takes over is its own from then on.
    assert step_enter(execution_id=execution.id, index=0, attempt=2) is StepEntry.ENTERED
    assert step_complete(execution_id=execution.id, index=0, attempt=2, result="by 2")
    assert statuses(execution)[0] == ("completed", 2)


@pytest.mark.django_db(transaction=True)
def test_no_write_of_a_superseded_attempt_lands_after_the_hand_over(alice: Any) -> None:
    """Racing a writer of attempt 1: once the hand-over commits, its writes are refused, none is lost.

    The hand-over reads the step in its own transaction, after its update: the
    fence's row lock keeps any write of attempt 1 from committing after that.
    """
    execution = started_durable(alice)
    assert step_enter(execution_id=execution.id, index=0, attempt=1) is StepEntry.ENTERED
    outcomes: list[tuple[int, bool]] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            for value in range(1, 100_000):
                if stop.is_set():
                    return
                stored = step_checkpoint(execution_id=execution.id, index=0, attempt=1, value=value)
                outcomes.append((value, stored))
        finally:
            connection.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(outcomes) >= 20, timeout=30, what="writes before the hand-over")
        with transaction.atomic():
            assert hand_over(execution.id)
            at_hand_over = ExecutionStep.objects.get(execution=execution, index=0).checkpoint
        wait_for(lambda: sum(not stored for _, stored in outcomes) >= 20, timeout=30, what="writes after it")
    finally:
        stop.set()
        thread.join(timeout=30)
    stored_flags = [stored for _, stored in outcomes]
    assert stored_flags == sorted(stored_flags, reverse=True), "refused for good once refused"
    last_stored = max(value for value, stored in outcomes if stored)
    assert ExecutionStep.objects.get(execution=execution, index=0).checkpoint == at_hand_over == last_stored


def test_nothing_is_written_once_the_run_ended(alice: Any) -> None:
    execution = started_durable(alice)
    assert step_enter(execution_id=execution.id, index=0, attempt=1) is StepEntry.ENTERED
    execution_cancel(execution_id=execution.id)
    assert not step_complete(execution_id=execution.id, index=0, attempt=1, result="late")
    assert step_enter(execution_id=execution.id, index=1, attempt=1) is StepEntry.FENCED
    assert statuses(execution)[0] == ("running", 1)


def test_resume_point_counts_the_completed_steps_before_the_first_that_is_not(alice: Any) -> None:
    execution = started_durable(alice)
    assert steps_resume_point(execution_id=execution.id) == 0
    run_step(execution, 0)
    run_step(execution, 2)  # a later step completed after a failed one was caught by the target
    assert steps_resume_point(execution_id=execution.id) == 1
    assert StepsBegun(frozenset({0, 2})).resume_point == 1


# --- the output limit ----------------------------------------------------------------------------------


def test_outputs_are_checked_and_returned_as_read_back(settings: Any) -> None:
    assert step_output_checked({"t": (1, 2), 3: "x"}, step="s", what="result") == {"t": [1, 2], "3": "x"}
    with pytest.raises(TypeError, match="step 's' result is not JSON-serialisable"):
        step_output_checked({"when": datetime(2026, 1, 1)}, step="s", what="result")  # noqa: DTZ001 - any datetime
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        step_output_checked(float("nan"), step="s", what="checkpoint")
    settings.EXECUTION_STEP_OUTPUT_MAX_BYTES = 10
    assert step_output_checked("é" * 4, step="s", what="result") == "éééé"  # 10 bytes in UTF-8
    with pytest.raises(StepOutputTooLarge) as caught:
        step_output_checked("é" * 5, step="s", what="result")
    assert str(caught.value) == "step 's' result is 12 bytes, over the limit of 10 (EXECUTION_STEP_OUTPUT_MAX_BYTES)"
    assert caught.value.details == {"step": "s", "size": 12, "limit": 10}


# --- resume from the failed step --------------------------------------------------------------------


def test_copy_for_resume_reuses_the_steps_before_the_failed_one(alice: Any) -> None:
    original = started_durable(alice)
    run_step(original, 0, {"n": 1})
    run_step(original, 1, {"n": 2})
    assert step_enter(execution_id=original.id, index=2, attempt=1) is StepEntry.ENTERED
    assert step_checkpoint(execution_id=original.id, index=2, attempt=1, value={"page": 3})
    assert step_fail(execution_id=original.id, index=2, attempt=1)
    fail(original)
    new = create_durable_execution(alice, inputs=original.inputs, from_failed_step=True)

    assert steps_copy_for_resume(original=original, new_execution=new) == 2
    copied = list(
        ExecutionStep.objects.filter(execution=new).order_by("index").values_list(
            "name", "status", "attempt", "result", "checkpoint", "reused_from"
        )
    )
    assert copied == [
        ("step_1", "completed", 1, {"n": 1}, None, original.id),
        ("step_2", "completed", 1, {"n": 2}, None, original.id),
        ("step_3", "pending", None, None, {"page": 3}, None),
        ("step_4", "pending", None, None, None, None),
    ]
    source = ExecutionStep.objects.get(execution=original, index=0)
    reused = ExecutionStep.objects.get(execution=new, index=0)
    assert (reused.started_at, reused.finished_at) == (source.started_at, source.finished_at)


def test_a_chain_of_resumes_names_the_execution_that_ran_the_step(alice: Any) -> None:
    first = started_durable(alice)
    run_step(first, 0)
    fail(first)
    second = create_durable_execution(alice, inputs=first.inputs, from_failed_step=True)
    steps_copy_for_resume(original=first, new_execution=second)
    start = {"current_step": 0, "total_steps": 4, "percentage": 0.0, "current_step_name": None}
    assert event_record(execution_id=second.id, event_type=EventType.STARTED, progress=start, worker="w")
    run_step(second, 1)
    fail(second)
    third = create_durable_execution(alice, inputs=first.inputs, from_failed_step=True)
    assert steps_copy_for_resume(original=second, new_execution=third) == 2
    assert list(
        ExecutionStep.objects.filter(execution=third).order_by("index").values_list("reused_from", flat=True)
    ) == [first.id, second.id, None, None]


def test_what_cannot_be_resumed_from_its_failed_step(alice: Any, make_execution: Any) -> None:
    plain = make_execution(alice, "failed")
    with pytest.raises(NotResumableError, match="is not durable"):
        steps_resume_index(plain)
    running = started_durable(alice)
    with pytest.raises(NotResumableError, match="this one is 'running'"):
        steps_resume_index(running)
    every_step_done = started_durable(alice, steps=1)
    run_step(every_step_done, 0)
    fail(every_step_done)  # e.g. its outputs were not JSON
    with pytest.raises(NotResumableError, match="has no failed step"):
        steps_copy_for_resume(original=every_step_done, new_execution=running)
    assert not ExecutionStep.objects.filter(execution=running).exclude(status="pending").exists()


# --- execution_steps ------------------------------------------------------------------------------------


def views(execution: Execution) -> list[tuple[str, str, int | None, str | None]]:
    execution.refresh_from_db()
    return [(v.name, v.status, v.attempt, v.reused_from) for v in execution_steps(execution)]


def event_times(execution: Execution) -> list[datetime]:
    stored = ProgressSnapshot.objects.filter(execution=execution).order_by("seq")
    return list(stored.values_list("timestamp", flat=True))


def test_a_durable_runs_steps_come_from_its_rows(alice: Any) -> None:
    execution = started_durable(alice)
    run_step(execution, 0)
    assert step_enter(execution_id=execution.id, index=1, attempt=1) is StepEntry.ENTERED
    assert views(execution) == [
        ("step_1", "completed", 1, None), ("step_2", "running", 1, None),
        ("step_3", "pending", None, None), ("step_4", "pending", None, None),
    ]
    row = ExecutionStep.objects.get(execution=execution, index=0)
    first = execution_steps(execution)[0]
    assert isinstance(first, StepView) and (first.started_at, first.finished_at) == (row.started_at, row.finished_at)
    execution_cancel(execution_id=execution.id)
    assert [status for _, status, _, _ in views(execution)] == ["completed", "failed", "pending", "pending"]


def test_a_pending_durable_execution_shows_its_declared_steps_pending(alice: Any) -> None:
    execution = create_durable_execution(alice, inputs={"steps": 2})
    assert views(execution) == [("step_1", "pending", None, None), ("step_2", "pending", None, None)]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", ["pending"] * 5),
        ("running", ["completed", "running", "pending", "pending", "pending"]),
        ("completed", ["completed"] * 5),
        ("failed", ["completed", "failed", "pending", "pending", "pending"]),
        ("cancelled", ["completed", "failed", "pending", "pending", "pending"]),
    ],
)
def test_the_steps_of_a_run_that_is_not_durable_come_from_its_events(
    alice: Any, make_execution: Any, status: str, expected: list[str]
) -> None:
    execution = make_execution(alice, status, steps_entered=2)
    assert [(name, s) for name, s, _, _ in views(execution)] == [
        (f"step_{i}", s) for i, s in zip(range(1, 6), expected, strict=True)
    ]
    assert all(attempt == (None if s == "pending" else 1) for _, s, attempt, _ in views(execution))
    assert not ExecutionStep.objects.filter(execution=execution).exists()


def test_event_derived_steps_carry_the_event_times(alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "failed", steps_entered=2)  # started, step 1, step 2, failed
    started, step_1, step_2, failed = event_times(execution)
    entries = execution_steps(execution)
    assert (entries[0].started_at, entries[0].finished_at) == (step_1, step_2)
    assert (entries[1].started_at, entries[1].finished_at) == (step_2, failed)
    assert (entries[2].started_at, entries[2].finished_at) == (None, None)
    assert started < step_1


def test_reports_within_a_step_do_not_make_steps(alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=1)
    within = {**step_progress(1, 5), "percentage": 10.0}
    assert event_record(execution_id=execution.id, event_type=EventType.PROGRESS, progress=within)
    assert [s for _, s, _, _ in views(execution)] == ["running"] + ["pending"] * 4


def test_event_derived_steps_cost_two_queries(alice: Any, make_execution: Any, django_assert_num_queries: Any) -> None:
    execution = make_execution(alice, "completed")
    with django_assert_num_queries(2):  # the rows (none), then the events
        assert len(execution_steps(execution)) == 5


def test_the_events_tell_the_steps_of_a_target_that_is_gone(alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "failed", steps_entered=2)
    Execution.objects.filter(pk=execution.id).update(target_id="no_longer_registered")
    assert views(execution) == [("step_1", "completed", 1, None), ("step_2", "failed", 1, None)]
