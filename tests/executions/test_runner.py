"""``execution_run`` and the run context: claiming, cancelling at each phase,
timeouts, failures, and the coalescing of progress reports.

Runs happen in this process, against the real database (the run's monitor
thread reads it through its own connection, hence ``transaction=True``) and
the real channel layer. Tests that cancel a run start it in a worker thread
and act from the test thread, synchronising on conditions, never on sleeps.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from billiard.common import TERMSIGS_DEFAULT, clear_terminate_handler_fired, reset_signals
from django.conf import settings
from django.db import connection
from django.utils import timezone

from executions import registry
from executions.context import (
    ExecutionCancelled,
    ExecutionInterrupted,
    ExecutionTimeout,
    RunContext,
)
from executions.models import Execution, ProgressSnapshot
from executions.registry import Number, pipeline
from executions.runner import execution_run
from executions.services import execution_cancel

from ..helpers import ANY_ETA, create_execution, final_progress, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

#: What the test targets saw, by execution id.
CALLS: Counter[str] = Counter()
INTERRUPTIONS: dict[str, type[BaseException]] = {}
MARKS: dict[str, dict[str, Any]] = {}


def note_interruption(ctx: RunContext, exc: BaseException) -> None:
    INTERRUPTIONS[ctx.execution_id] = type(exc)


@pipeline("test_runner_sleep", steps=["work"], inputs={"seconds": Number(minimum=0, default=30.0)})
def sleep_target(ctx: RunContext) -> dict[str, Any]:
    CALLS[ctx.execution_id] += 1
    ctx.enter_step("work")
    try:
        ctx.sleep(ctx.inputs["seconds"])
    except ExecutionInterrupted as exc:
        note_interruption(ctx, exc)
        raise
    return {"slept": ctx.inputs["seconds"]}


@pipeline("test_runner_busy", steps=["spin"])
def busy_target(ctx: RunContext) -> dict[str, Any]:
    """Never sleeps: reports in a tight loop until told to stop."""
    CALLS[ctx.execution_id] += 1
    ctx.enter_step("spin")
    try:
        while True:
            ctx.report(0.5)
    except ExecutionInterrupted as exc:
        note_interruption(ctx, exc)
        raise


@pipeline("test_runner_wait", steps=["wait"])
def wait_target(ctx: RunContext) -> dict[str, Any]:
    """Waits on an event nobody sets."""
    CALLS[ctx.execution_id] += 1
    ctx.enter_step("wait")
    try:
        ctx.wait(threading.Event())
    except ExecutionInterrupted as exc:
        note_interruption(ctx, exc)
        raise
    return {}


REPORTS = 100_000


@pipeline("test_runner_hammer", steps=["first", "second"])
def hammer_target(ctx: RunContext) -> dict[str, Any]:
    """100,000 progress reports, half in each step, as fast as it can."""
    per_step = REPORTS // 2
    for step in ctx.steps:
        ctx.enter_step(step)
        for i in range(1, per_step + 1):
            ctx.report(i / per_step)
    return {"reports": REPORTS}


@pipeline("test_runner_report_then_sleep", steps=["only"])
def report_then_sleep_target(ctx: RunContext) -> dict[str, Any]:
    """One report right after entering the step (so it is coalesced), then a long sleep."""
    ctx.enter_step("only")
    MARKS[ctx.execution_id] = {"reported_at": timezone.now()}
    ctx.report(0.5)
    ctx.sleep(1.0)
    return {}


@pipeline("test_runner_quick_steps", steps=["a", "b", "c", "d"])
def quick_steps_target(ctx: RunContext) -> dict[str, Any]:
    """Four steps entered within microseconds of each other."""
    for step in ctx.steps:
        ctx.enter_step(step)
        ctx.report(0.5)
    return {}


@pipeline("test_runner_backwards", steps=["a", "b"])
def backwards_target(ctx: RunContext) -> dict[str, Any]:
    """Reports that go backwards, overshoot and undershoot."""
    for step in ctx.steps:
        ctx.enter_step(step)
        for fraction in (0.9, 0.1, 0.5, 2.0, -1.0, 0.95, 0.0):
            ctx.report(fraction)
            ctx.sleep(settings.PROGRESS_COALESCE_SECONDS * 0.6)
    return {}


class DetailedError(Exception):
    def __init__(self, message: str, details: Any):
        super().__init__(message)
        self.details = details


@pipeline("test_runner_fail_with_details", steps=["one", "two"])
def fail_with_details_target(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step("one")
    ctx.enter_step("two")
    raise DetailedError("Quota exceeded", {"quota": 10, "used": 11})


@pipeline("test_runner_fail_odd_details", steps=["one"])
def fail_odd_details_target(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step("one")
    raise DetailedError("", {"when": datetime(2020, 1, 1, tzinfo=UTC)})


@pipeline("test_runner_wrong_step", steps=["one", "two"])
def wrong_step_target(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step("two")
    return {}


@pipeline("test_runner_too_many_steps", steps=["one"])
def too_many_steps_target(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step()
    ctx.enter_step()
    return {}


@pipeline("test_runner_bad_outputs", steps=["one"])
def bad_outputs_target(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step()
    return {"when": object()}


@pipeline("test_runner_scalar_outputs", steps=["one"])
def scalar_outputs_target(ctx: RunContext) -> Any:
    ctx.enter_step()
    return 42


@pipeline("test_runner_terminated", steps=["work"])
def terminated_target(ctx: RunContext) -> dict[str, Any]:
    """Its process is told to stop mid-run, as SIGTERM to a worker's process group does."""
    ctx.enter_step("work")
    os.kill(os.getpid(), signal.SIGTERM)
    ctx.sleep(30)
    return {}


@pipeline("test_runner_exits", steps=["work"])
def exiting_target(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step("work")
    sys.exit(3)


@pipeline("test_runner_no_outputs", steps=["one"])
def no_outputs_target(ctx: RunContext) -> None:
    ctx.enter_step()


@pipeline("test_runner_no_steps", steps=[])
def no_steps_target(ctx: RunContext) -> dict[str, Any]:
    MARKS[ctx.execution_id] = {"progress_while_running": Execution.objects.get(pk=ctx.execution_id).progress}
    ctx.report(0.5)
    return {"ok": True}


@pipeline("test_runner_skips_steps", steps=["a", "b", "c"])
def skips_steps_target(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step("a")
    return {}


@pipeline("test_runner_swallows_cancel", steps=["one"])
def swallows_cancel_target(ctx: RunContext) -> dict[str, Any]:
    """Catches the interruption and returns as if it had finished."""
    CALLS[ctx.execution_id] += 1
    ctx.enter_step()
    with contextlib.suppress(ExecutionInterrupted):
        ctx.sleep(30)
    return {"pretended": "done"}


# --- helpers ------------------------------------------------------------------------------


@dataclass
class Worker:
    """``execution_run`` in a thread, as a Celery worker would call it."""

    execution_id: str
    thread: threading.Thread = field(init=False)
    result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"worker-{self.execution_id}", daemon=True)

    def _run(self) -> None:
        try:
            self.result["status"] = execution_run(execution_id=self.execution_id)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.result["error"] = exc
        finally:
            self.result["returned_at"] = time.monotonic()
            connection.close()

    def start(self) -> Worker:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the worker did not return within {timeout} s"
        assert "error" not in self.result, self.result.get("error")


def run(
    owner: Any, target_id: str, inputs: dict[str, Any] | None = None, config: dict[str, Any] | None = None
) -> Execution:
    execution = create_execution(owner, target_id=target_id, inputs=inputs, config=config)
    execution_run(execution_id=execution.id)
    execution.refresh_from_db()
    return execution


def snapshots(execution_id: str) -> list[ProgressSnapshot]:
    return list(ProgressSnapshot.objects.filter(execution_id=execution_id).order_by("seq"))


def assert_history(execution: Execution) -> list[ProgressSnapshot]:
    """The invariants of any stored history: seq 1..n without gaps, one terminal event, last."""
    events = snapshots(execution.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert execution.seq == len(events)
    terminal = [e for e in events if e.type in ("completed", "failed", "cancelled")]
    if execution.is_terminal:
        assert len(terminal) == 1 and terminal[0] is events[-1]
        assert events[-1].type == execution.status
    else:
        assert terminal == []
    for event in events:
        frame = json.loads(event.frame)
        assert (frame["type"], frame["seq"], frame["execution_id"]) == (event.type, event.seq, execution.id)
    percentages = [e.progress["percentage"] for e in events if e.progress is not None]
    assert percentages == sorted(percentages), "percentage never decreases"
    assert all(0.0 <= p <= 100.0 for p in percentages)
    return events


def status_of(execution_id: str) -> str:
    return Execution.objects.filter(pk=execution_id).values_list("status", flat=True).get()


def seq_of(execution_id: str) -> int:
    return Execution.objects.filter(pk=execution_id).values_list("seq", flat=True).get()


# --- a normal run --------------------------------------------------------------------------------


def test_a_run_completes_with_the_full_history(alice: Any) -> None:
    execution = run(alice, "demo_steps", {"steps": 3, "step_seconds": 0})
    assert execution.status == "completed"
    assert execution.outputs == {"steps_completed": 3}
    assert execution.progress == final_progress(3)
    assert execution.error is None
    assert execution.created_at <= execution.started_at <= execution.completed_at
    events = assert_history(execution)
    assert [e.type for e in events] == ["started", "progress", "progress", "progress", "completed"]
    assert events[0].progress == {
        "current_step": 0, "total_steps": 3, "percentage": 0.0, "current_step_name": None, "eta_seconds": None,
    }
    for number, event in enumerate(events[1:4], start=1):
        assert event.progress == {
            "current_step": number - 1,
            "total_steps": 3,
            "percentage": (number - 1) / 3 * 100,
            "current_step_name": f"step_{number}",
            "eta_seconds": None if number == 1 else ANY_ETA,
        }
    completed = json.loads(events[-1].frame)
    assert completed["progress"] == final_progress(3)
    assert completed["outputs"] == {"steps_completed": 3}
    assert completed["error"] is None


def test_customer_service_flow_answers(alice: Any) -> None:
    execution = run(alice, "customer_service_flow", {"customer_query": "I need a refund on my invoice"})
    assert execution.status == "completed"
    assert execution.outputs["intent"] == "billing"
    assert isinstance(execution.outputs["response"], str) and execution.outputs["response"]
    step_names = [e.progress["current_step_name"] for e in assert_history(execution)[1:-1]]
    assert step_names == ["classify", "retrieve", "respond"]


def test_echo_returns_its_inputs(alice: Any) -> None:
    execution = create_execution(alice, type="agent", target_id="echo", inputs={"say": ["hi", {"n": 1}]})
    assert execution_run(execution_id=execution.id) == "completed"
    execution.refresh_from_db()
    assert execution.outputs == {"output": {"say": ["hi", {"n": 1}]}}
    assert [e.type for e in assert_history(execution)] == ["started", "progress", "completed"]


def test_a_pipeline_without_steps(alice: Any) -> None:
    execution = run(alice, "test_runner_no_steps")
    assert execution.status == "completed"
    assert MARKS[execution.id]["progress_while_running"] == {
        "current_step": 0, "total_steps": 0, "percentage": 0.0, "current_step_name": None, "eta_seconds": None,
    }
    assert execution.progress == {
        "current_step": 0, "total_steps": 0, "percentage": 100.0, "current_step_name": None, "eta_seconds": 0.0,
    }
    assert [e.type for e in assert_history(execution)] == ["started", "completed"]


def test_completion_is_100_percent_even_if_steps_were_skipped(alice: Any) -> None:
    execution = run(alice, "test_runner_skips_steps")
    assert execution.status == "completed"
    assert execution.progress == final_progress(3)


@pytest.mark.parametrize(
    ("target_id", "outputs"),
    [("test_runner_scalar_outputs", {"result": 42}), ("test_runner_no_outputs", {})],
)
def test_outputs_are_always_an_object(alice: Any, target_id: str, outputs: dict[str, Any]) -> None:
    execution = run(alice, target_id)
    assert (execution.status, execution.outputs) == ("completed", outputs)


# --- compare-and-set claims -------------------------------------------------------------------------


def test_a_second_run_of_the_same_execution_does_nothing(alice: Any) -> None:
    execution = run(alice, "test_runner_sleep", {"seconds": 0})
    assert execution.status == "completed"
    history = [(e.seq, e.type, e.frame) for e in snapshots(execution.id)]
    assert execution_run(execution_id=execution.id) is None
    assert CALLS[execution.id] == 1
    after = Execution.objects.get(pk=execution.id)
    assert (after.status, after.seq, after.completed_at) == ("completed", execution.seq, execution.completed_at)
    assert [(e.seq, e.type, e.frame) for e in snapshots(execution.id)] == history


def test_two_simultaneous_deliveries_run_the_target_once(alice: Any) -> None:
    execution = create_execution(alice, target_id="test_runner_sleep", inputs={"seconds": 0.3})
    workers = [Worker(execution.id) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert sorted(str(w.result["status"]) for w in workers) == ["None", "completed"]
    assert CALLS[execution.id] == 1
    execution.refresh_from_db()
    assert [e.type for e in assert_history(execution)] == ["started", "progress", "completed"]


def test_running_a_missing_execution_does_nothing(db: None) -> None:
    assert execution_run(execution_id="exec_000000000000") is None
    assert not ProgressSnapshot.objects.exists()


@pipeline("test_runner_removed", steps=["one"])
def removed_target(ctx: RunContext) -> dict[str, Any]:
    raise AssertionError("unregistered before it runs")


def test_an_execution_whose_target_is_gone_fails(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    execution = create_execution(alice, target_id="test_runner_removed")
    # Then a deploy removed the target before a worker ran it.
    monkeypatch.delitem(registry._REGISTRY, ("pipeline", "test_runner_removed"))
    assert execution_run(execution_id=execution.id) == "failed"
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error["type"] == "LookupError"
    assert "test_runner_removed" in execution.error["message"]
    assert execution.started_at is None


# --- cancel at each phase -------------------------------------------------------------------------------


def test_cancel_while_pending_means_the_target_never_starts(alice: Any) -> None:
    execution = create_execution(alice, target_id="test_runner_sleep")
    execution_cancel(execution_id=execution.id)
    assert execution_run(execution_id=execution.id) is None
    assert CALLS[execution.id] == 0
    execution.refresh_from_db()
    assert (execution.status, execution.progress, execution.started_at) == ("cancelled", None, None)
    assert [e.type for e in assert_history(execution)] == ["cancelled"]


def cancel_while_running(alice: Any, target_id: str) -> tuple[Execution, Worker, float]:
    execution = create_execution(alice, target_id=target_id)
    worker = Worker(execution.id).start()
    # Running, and inside its only step (the progress event of entering it is stored).
    wait_for(lambda: seq_of(execution.id) >= 2, timeout=10, what="the target to enter its step")
    cancelled_at = time.monotonic()
    execution_cancel(execution_id=execution.id)
    worker.join(2.0)
    return execution, worker, cancelled_at


@pytest.mark.parametrize("target_id", ["test_runner_sleep", "test_runner_busy", "test_runner_wait"])
def test_cancel_while_running_interrupts_the_target_promptly(alice: Any, target_id: str) -> None:
    execution, worker, cancelled_at = cancel_while_running(alice, target_id)
    assert worker.result["status"] is None, "the run records nothing after a cancel"
    assert worker.result["returned_at"] - cancelled_at < 2.0
    assert INTERRUPTIONS[execution.id] is ExecutionCancelled
    assert CALLS[execution.id] == 1
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    events = assert_history(execution)
    assert events[-1].type == "cancelled"
    final_seq = events[-1].seq
    # The monitor thread has stopped too: nothing more is ever recorded.
    assert [e.seq for e in snapshots(execution.id)][-1] == final_seq
    assert seq_of(execution.id) == final_seq


def test_a_target_that_swallows_the_cancel_still_ends_cancelled(alice: Any) -> None:
    execution, worker, _ = cancel_while_running(alice, "test_runner_swallows_cancel")
    assert worker.result["status"] is None
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    assert execution.outputs is None, "its outputs are not recorded"
    assert assert_history(execution)[-1].type == "cancelled"


def test_cancel_after_completion_changes_nothing(alice: Any) -> None:
    execution = run(alice, "test_runner_sleep", {"seconds": 0})
    with pytest.raises(Exception, match="Cannot cancel execution with status 'completed'"):
        execution_cancel(execution_id=execution.id)
    assert status_of(execution.id) == "completed"


# --- failures and timeouts ---------------------------------------------------------------------------------


def test_a_failing_step_fails_the_run_with_type_and_message(alice: Any) -> None:
    execution = run(alice, "demo_steps", {"steps": 4, "step_seconds": 0, "fail_at_step": 2})
    assert execution.status == "failed"
    assert execution.error == {"type": "ValueError", "message": "Simulated failure at step 2", "details": None}
    assert execution.outputs is None
    assert execution.failed_at is not None and execution.completed_at is None
    events = assert_history(execution)
    assert [e.type for e in events] == ["started", "progress", "progress", "failed"]
    failed = json.loads(events[-1].frame)
    assert failed["error"] == execution.error
    assert failed["progress"] == {
        "current_step": 1, "total_steps": 4, "percentage": 25.0, "current_step_name": "step_2",
        "eta_seconds": None,
    }
    assert "Traceback" not in events[-1].frame


def test_a_failure_carries_the_exceptions_details(alice: Any) -> None:
    execution = run(alice, "test_runner_fail_with_details")
    assert execution.error == {
        "type": "DetailedError", "message": "Quota exceeded", "details": {"quota": 10, "used": 11}
    }


def test_details_that_are_not_json_are_made_safe(alice: Any) -> None:
    execution = run(alice, "test_runner_fail_odd_details")
    assert execution.status == "failed"
    assert execution.error["type"] == "DetailedError"
    assert execution.error["message"] == "DetailedError", "an empty message falls back to the type"
    json.dumps(execution.error)
    assert "Traceback" not in json.dumps(execution.error)


@pytest.mark.parametrize(
    ("target_id", "error_type"),
    [
        ("test_runner_wrong_step", "StepError"),
        ("test_runner_too_many_steps", "StepError"),
        ("test_runner_bad_outputs", "TypeError"),
    ],
)
def test_target_mistakes_fail_the_run(alice: Any, target_id: str, error_type: str) -> None:
    execution = run(alice, target_id)
    assert execution.status == "failed"
    assert execution.error["type"] == error_type
    assert execution.error["message"]
    assert_history(execution)


@pytest.mark.parametrize("target_id", ["test_runner_sleep", "test_runner_busy", "test_runner_wait"])
def test_timeout_fails_the_run_while_the_target_is_busy(alice: Any, target_id: str) -> None:
    timeout = 0.3
    execution = create_execution(alice, target_id=target_id, config={"timeout": timeout})
    started = time.monotonic()
    assert execution_run(execution_id=execution.id) == "failed"
    elapsed = time.monotonic() - started
    assert timeout <= elapsed < timeout + 1.5
    assert INTERRUPTIONS[execution.id] is ExecutionTimeout
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error["type"] == "TimeoutError"
    assert execution.error["message"]
    assert execution.error["details"] == {"timeout": timeout}
    assert (execution.failed_at - execution.started_at).total_seconds() >= timeout, "counted from started_at"
    events = assert_history(execution)
    assert events[-1].type == "failed"


def test_demo_steps_timeout_interrupts_a_long_sleep(alice: Any) -> None:
    execution = create_execution(alice, inputs={"steps": 2, "step_seconds": 60}, config={"timeout": 0.2})
    started = time.monotonic()
    assert execution_run(execution_id=execution.id) == "failed"
    assert time.monotonic() - started < 2.0
    execution.refresh_from_db()
    assert execution.error["type"] == "TimeoutError"
    assert [e.type for e in assert_history(execution)] == ["started", "progress", "failed"]


def test_a_run_within_its_timeout_completes(alice: Any) -> None:
    execution = run(alice, "test_runner_sleep", {"seconds": 0.05}, config={"timeout": 5})
    assert execution.status == "completed"


@pytest.fixture
def pool_process_signals() -> Any:
    """This process handles terminate signals as a Celery pool process does (billiard's handler)."""
    names = [name for name in TERMSIGS_DEFAULT if hasattr(signal, name)]
    previous = {name: signal.getsignal(getattr(signal, name)) for name in names}
    reset_signals()
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
        clear_terminate_handler_fired()


def test_a_run_whose_pool_process_is_told_to_stop_records_worker_shutdown(
    alice: Any, pool_process_signals: Any
) -> None:
    execution = create_execution(alice, target_id="test_runner_terminated")
    with pytest.raises(SystemExit):  # the process still exits
        execution_run(execution_id=execution.id, worker="w1@host")
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error["type"] == "WorkerShutdown"
    assert execution.error["details"] == {"worker": "w1@host", "signal": "SIGTERM"}
    assert "w1@host" in execution.error["message"] and "SIGTERM" in execution.error["message"]
    assert [e.type for e in assert_history(execution)] == ["started", "progress", "failed"]


def test_a_target_that_exits_fails_its_run_and_the_exit_goes_on(alice: Any) -> None:
    execution = create_execution(alice, target_id="test_runner_exits")
    with pytest.raises(SystemExit):
        execution_run(execution_id=execution.id, worker="w1@host")
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error == {"type": "SystemExit", "message": "3", "details": None}


# --- progress coalescing ----------------------------------------------------------------------------------


def test_100k_reports_are_coalesced(alice: Any) -> None:
    interval = settings.PROGRESS_COALESCE_SECONDS
    execution = create_execution(alice, target_id="test_runner_hammer")
    started = time.monotonic()
    worker = Worker(execution.id).start()
    worker.thread.join(10.0)
    if worker.thread.is_alive():
        # Without coalescing this would write 100,000 events: stop it rather than wait.
        execution_cancel(execution_id=execution.id)
        worker.join(5.0)
        pytest.fail(f"{REPORTS} reports did not finish within 10 s ({seq_of(execution.id)} events so far)")
    assert worker.result == {"status": "completed", "returned_at": worker.result["returned_at"]}
    elapsed = worker.result["returned_at"] - started
    execution.refresh_from_db()
    events = assert_history(execution)
    duration = (execution.completed_at - execution.started_at).total_seconds()
    steps = 2
    bound = math.ceil(duration / interval) + steps + 2
    assert len(events) <= bound, f"{len(events)} events in {duration:.2f} s (at most {bound}); run took {elapsed:.2f} s"
    progress = [e for e in events if e.type == "progress"]
    names = [e.progress["current_step_name"] for e in progress]
    assert names.count("first") >= 1 and names.count("second") >= 1
    assert names == sorted(names, key=["first", "second"].index), "steps in order"
    for event in progress:
        k = event.progress["current_step"]
        assert k / 2 * 100 <= event.progress["percentage"] <= (k + 1) / 2 * 100
    assert execution.progress == final_progress(2)


def test_step_boundaries_are_never_coalesced(alice: Any) -> None:
    execution = run(alice, "test_runner_quick_steps")
    events = assert_history(execution)
    boundary_names = [
        e.progress["current_step_name"]
        for e in events
        if e.type == "progress" and e.progress["percentage"] == e.progress["current_step"] / 4 * 100
    ]
    assert boundary_names == ["a", "b", "c", "d"]
    for event in events:
        if event.type == "progress":
            k = event.progress["current_step"]
            assert event.progress["current_step_name"] == "abcd"[k]
    assert (execution.completed_at - execution.started_at).total_seconds() < settings.PROGRESS_COALESCE_SECONDS * 4, (
        "four steps entered in well under the interval each"
    )


def test_a_coalesced_report_is_flushed_within_one_interval(alice: Any) -> None:
    interval = settings.PROGRESS_COALESCE_SECONDS
    execution = run(alice, "test_runner_report_then_sleep")
    assert execution.status == "completed"
    events = assert_history(execution)
    assert [e.type for e in events] == ["started", "progress", "progress", "completed"]
    entered, half = events[1], events[2]
    assert entered.progress["percentage"] == 0.0
    assert half.progress == {
        "current_step": 0, "total_steps": 1, "percentage": 50.0, "current_step_name": "only", "eta_seconds": ANY_ETA,
    }
    reported_at = MARKS[execution.id]["reported_at"]
    delay = (half.timestamp - reported_at).total_seconds()
    waited = (half.timestamp - entered.timestamp).total_seconds()
    assert waited >= interval * 0.9, "it was coalesced, not written at once"
    assert delay <= interval * 2, f"flushed {delay:.3f} s after the report (interval {interval} s)"
    assert (events[-1].timestamp - half.timestamp).total_seconds() > 0.5, "not folded into the terminal event"


def test_percentage_never_decreases_and_stays_within_the_step(alice: Any) -> None:
    execution = run(alice, "test_runner_backwards")
    assert execution.status == "completed"
    events = assert_history(execution)
    progress = [e.progress for e in events if e.type == "progress"]
    assert len(progress) > 2, "some sub-step reports were recorded"
    for p in progress:
        k = p["current_step"]
        assert k * 50 <= p["percentage"] <= (k + 1) * 50
    first_step = [p["percentage"] for p in progress if p["current_step"] == 0]
    assert max(first_step) == 50.0, "2.0 is clamped to the end of the step"


def test_run_context_reports_before_any_step_are_ignored() -> None:
    ctx = make_context(["a", "b"])
    ctx.report(0.7)
    assert ctx.current_progress() == {"current_step": 0, "total_steps": 2, "percentage": 0.0, "current_step_name": None}


def test_run_context_check_raises_once_the_deadline_passes() -> None:
    ctx = make_context(["a"], timeout=0.05)
    assert not ctx.cancelled
    wait_for(lambda: ctx.cancelled, timeout=2, what="the deadline")
    with pytest.raises(ExecutionTimeout):
        ctx.check()
    with pytest.raises(ExecutionTimeout):
        ctx.sleep(10)


def make_context(steps: list[str], timeout: float | None = None) -> RunContext:
    return RunContext(
        execution_id="exec_000000000000",
        inputs={},
        config={},
        steps=steps,
        timeout=timeout,
        coalesce_seconds=settings.PROGRESS_COALESCE_SECONDS,
        poll_seconds=settings.PROGRESS_CANCEL_POLL_SECONDS,
    )
