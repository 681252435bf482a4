"""The hand-over of durable runs (``executions.handover``) and every path that leads to it.

A lost worker found by the sweeper, a shutdown grace that ended, a pool
process told to stop (the runner's ``SystemExit``), a pool process that died
(the main process's ``ExecutionRequest``); then the claim of the next attempt
(``resumed``), the attempt cap, the re-queue of a handed-over run whose
message was lost, a cancel during the hand-over, and ``config.timeout``
across attempts. In this process, on the real database; races between
sweepers and between claims run in real threads (``transaction=True``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from billiard.common import TERMSIGS_DEFAULT, clear_terminate_handler_fired, reset_signals
from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery.contrib.testing.mocks import TaskMessage
from django.db import connection
from django.utils import timezone

from config.celery import app
from executions.context import RunContext
from executions.events import event_record
from executions.limits import HARD_LIMIT_GRACE_SECONDS
from executions.maintenance import executions_fail_lost, executions_fail_on_shutdown, executions_requeue_lost
from executions.models import EventType, Execution, ExecutionStep, ProgressSnapshot
from executions.registry import pipeline
from executions.runner import execution_run
from executions.services import execution_cancel
from executions.tasks import ExecutionRequest, run_execution

from ..helpers import create_execution, start_progress
from .conftest import Broker
from .durable import WorkerKilled, create_durable_execution, hand_over

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "w1@host"
OTHER_WORKER = "w2@host"
TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def liveness(settings: Any) -> Any:
    settings.EXECUTION_HEARTBEAT_TIMEOUT_SECONDS = TIMEOUT
    settings.EXECUTION_REQUEUE_SECONDS = 30.0
    settings.EXECUTION_MAX_ATTEMPTS = 3
    return settings


@pipeline("test_handover_dies", steps=["one", "two", "three"], durable=True)
def dies_in_step_two(ctx: RunContext) -> dict[str, Any]:
    """Its first attempt's process dies in step two (``WorkerKilled``); a later attempt finishes."""

    def two() -> int:
        if ctx.attempt == 1:
            raise WorkerKilled
        return ctx.attempt

    return {"results": [ctx.step("one", lambda: 1), ctx.step("two", two), ctx.step("three", lambda: 3)]}


@pipeline("test_handover_terminated", steps=["one", "two"], durable=True)
def terminated(ctx: RunContext) -> dict[str, Any]:
    """Its pool process is told to stop in step two's first run, as SIGTERM to a worker's process group does."""

    def two() -> str:
        if ctx.attempt == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            ctx.sleep(30)
        return "two"

    return {"results": [ctx.step("one", lambda: "one"), ctx.step("two", two)]}


def later(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def types(execution_id: str) -> list[str]:
    events = ProgressSnapshot.objects.filter(execution_id=execution_id).order_by("seq")
    return list(events.values_list("type", flat=True))


def row(execution_id: str) -> Execution:
    return Execution.objects.get(pk=execution_id)


def killed_in_step_two(owner: Any, worker: str = WORKER) -> Execution:
    """A durable run whose first attempt died in step two: running, claimed by ``worker``, heartbeat stopped."""
    execution = create_durable_execution(owner, target_id="test_handover_dies")
    with pytest.raises(WorkerKilled):
        execution_run(execution_id=execution.id, worker=worker)
    return row(execution.id)


def claimed(owner: Any, worker: str = WORKER, **inputs: Any) -> Execution:
    """A running ``demo_durable`` claimed by ``worker`` (its ``started`` event only)."""
    execution = create_durable_execution(owner, inputs=inputs)
    assert event_record(
        execution_id=execution.id, event_type=EventType.STARTED, progress=start_progress(6), worker=worker
    )
    return row(execution.id)


# --- the sweeper: a lost worker ---------------------------------------------------------------------


def test_a_lost_durable_run_is_handed_over_and_queued_not_failed(alice: Any, task_queue: Any) -> None:
    execution = killed_in_step_two(alice)
    task_queue.calls.clear()
    assert executions_fail_lost(swept_by=OTHER_WORKER, now=later(TIMEOUT + 1)) == [execution.id]
    handed = row(execution.id)
    assert (handed.status, handed.attempt, handed.worker) == ("running", 2, "")
    assert handed.enqueued_at is not None and handed.heartbeat_at is not None
    assert types(execution.id) == ["started", "progress", "progress"], "the hand-over records no event"
    assert task_queue.execution_ids == [execution.id]
    assert task_queue.calls[0]["kwargs"] == {"attempt": 2}
    # Not lost while it waits for its claim, however long that takes.
    assert executions_fail_lost(now=later(10 * TIMEOUT)) == []

    assert execution_run(execution_id=execution.id, worker=OTHER_WORKER) == "completed"
    done = row(execution.id)
    assert done.outputs == {"results": [1, 2, 3]} and (done.attempt, done.worker) == (2, OTHER_WORKER)
    assert types(execution.id) == ["started", "progress", "progress", "resumed", "progress", "progress", "completed"]


def test_the_lost_run_of_a_target_that_is_not_durable_still_fails(alice: Any) -> None:
    execution = create_execution(alice, "running")
    assert executions_fail_lost(now=later(TIMEOUT + 1)) == [execution.id]
    assert row(execution.id).status == "failed" and "attempts" not in row(execution.id).error["details"]


def test_a_loss_beyond_the_attempt_cap_fails_with_the_attempts(alice: Any, settings: Any) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 2
    execution = killed_in_step_two(alice)
    assert hand_over(execution.id)
    Execution.objects.filter(pk=execution.id).update(worker=OTHER_WORKER)  # attempt 2 claimed, then lost too
    assert executions_fail_lost(now=later(TIMEOUT + 1)) == [execution.id]
    failed = row(execution.id)
    assert (failed.status, failed.attempt) == ("failed", 2)
    assert failed.error["type"] == "WorkerLostError"
    assert failed.error["details"]["attempts"] == 2 and failed.error["details"]["worker"] == OTHER_WORKER


def in_threads(work: Callable[[int], object], count: int = 4) -> None:
    """``work(i)`` in ``count`` threads released at once; each closes its connection."""
    barrier = threading.Barrier(count)

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            work(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)


def test_concurrent_sweepers_hand_a_run_over_once_and_concurrent_claims_resume_it_once(
    alice: Any, task_queue: Any
) -> None:
    execution = killed_in_step_two(alice)
    task_queue.calls.clear()
    now = later(TIMEOUT + 1)
    swept: list[list[str]] = []
    ran: list[str | None] = []
    in_threads(lambda i: swept.append(executions_fail_lost(swept_by=f"w{i}@host", now=now)))
    assert sorted(swept) == [[], [], [], [execution.id]]
    assert row(execution.id).attempt == 2 and task_queue.execution_ids == [execution.id], "queued once"

    in_threads(lambda i: ran.append(execution_run(execution_id=execution.id, worker=f"w{i}@host")))
    assert sorted(map(str, ran)) == ["None", "None", "None", "completed"]
    assert types(execution.id).count("resumed") == 1
    assert types(execution.id)[-1] == "completed"


# --- a handed-over run whose message was lost ------------------------------------------------------


def test_a_handed_over_run_whose_message_is_lost_is_queued_again_not_handed_over_again(
    alice: Any, task_queue: Any, broker: Broker
) -> None:
    execution = killed_in_step_two(alice)
    assert hand_over(execution.id)
    task_queue.calls.clear()
    assert executions_requeue_lost(now=later(10)).execution_ids == [], "queued recently"
    broker.publish(execution.id)
    assert executions_requeue_lost(now=later(31)).execution_ids == [], "its message waits in the broker"
    broker.client.flushdb()
    assert executions_requeue_lost(now=later(31)).execution_ids == [execution.id]
    assert task_queue.calls[0]["kwargs"] == {"attempt": 2}
    assert row(execution.id).attempt == 2, "a lost message costs no attempt"
    assert executions_fail_lost(now=later(10 * TIMEOUT)) == []


def test_a_claimed_run_is_never_queued_again(alice: Any, task_queue: Any, broker: Broker) -> None:
    claimed(alice)
    assert executions_requeue_lost(now=later(3600)).execution_ids == []


# --- the shutdown grace -------------------------------------------------------------------------


def test_when_the_grace_ends_a_durable_run_is_handed_over_at_once(alice: Any, task_queue: Any) -> None:
    durable, plain = claimed(alice), create_execution(alice, "running")
    Execution.objects.filter(pk=plain.id).update(worker=WORKER)
    task_queue.calls.clear()
    assert sorted(executions_fail_on_shutdown(worker=WORKER, grace_seconds=30)) == sorted([durable.id, plain.id])
    assert (row(durable.id).status, row(durable.id).attempt, row(durable.id).worker) == ("running", 2, "")
    assert task_queue.execution_ids == [durable.id], "queued at once: any free worker takes it"
    assert row(plain.id).status == "failed" and row(plain.id).error["type"] == "WorkerShutdown"
    assert executions_fail_on_shutdown(worker=WORKER, grace_seconds=30) == []
    assert executions_fail_on_shutdown(worker="", grace_seconds=30) == [], "a run waiting for its claim is no one's"


def test_past_the_cap_the_grace_fails_a_durable_run_with_worker_shutdown(alice: Any, settings: Any) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 1
    execution = claimed(alice)
    assert executions_fail_on_shutdown(worker=WORKER, grace_seconds=30) == [execution.id]
    error = row(execution.id).error
    assert error["type"] == "WorkerShutdown"
    assert error["details"] == {"worker": WORKER, "grace_seconds": 30, "attempts": 1}


# --- a pool process told to stop, or killed ---------------------------------------------------------


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


def test_a_pool_process_told_to_stop_hands_its_durable_run_over(
    alice: Any, task_queue: Any, pool_process_signals: Any
) -> None:
    execution = create_durable_execution(alice, target_id="test_handover_terminated")
    task_queue.calls.clear()
    with pytest.raises(SystemExit):  # the process still exits
        execution_run(execution_id=execution.id, worker=WORKER)
    handed = row(execution.id)
    assert (handed.status, handed.attempt, handed.worker) == ("running", 2, "")
    assert types(execution.id) == ["started", "progress", "progress"]
    assert task_queue.calls[0]["kwargs"] == {"attempt": 2}
    # The main process then sees its child gone: the message was for attempt 1, which is over.
    request_for(execution.id, attempt=1).on_failure(billiard_failure(WorkerLostError("exited prematurely")))
    assert row(execution.id).attempt == 2 and types(execution.id)[-1] == "progress"

    assert execution_run(execution_id=execution.id, worker=OTHER_WORKER) == "completed"
    assert row(execution.id).outputs == {"results": ["one", "two"]}


def test_past_the_cap_a_pool_process_told_to_stop_fails_its_run(
    alice: Any, settings: Any, pool_process_signals: Any
) -> None:
    settings.EXECUTION_MAX_ATTEMPTS = 1
    execution = create_durable_execution(alice, target_id="test_handover_terminated")
    with pytest.raises(SystemExit):
        execution_run(execution_id=execution.id, worker=WORKER)
    error = row(execution.id).error
    assert error["type"] == "WorkerShutdown" and error["details"] == {
        "worker": WORKER, "signal": "SIGTERM", "attempts": 1,
    }


def request_for(execution_id: str, attempt: int | None) -> ExecutionRequest:
    kwargs = {} if attempt is None else {"attempt": attempt}
    message = TaskMessage(run_execution.name, args=[execution_id], kwargs=kwargs)
    return ExecutionRequest(message, app=app, task=run_execution, hostname=WORKER)


def billiard_failure(exc: BaseException) -> ExceptionInfo:
    try:
        raise exc
    except BaseException:  # noqa: BLE001 - captured, as billiard does
        return ExceptionInfo()


@pytest.mark.parametrize("attempt", [1, None], ids=["message names its attempt", "older message"])
def test_a_killed_pool_process_hands_its_durable_run_over(
    alice: Any, task_queue: Any, attempt: int | None
) -> None:
    execution = killed_in_step_two(alice)
    request_for(execution.id, attempt).on_failure(billiard_failure(WorkerLostError("signal 9 (SIGKILL)")))
    assert (row(execution.id).status, row(execution.id).attempt, row(execution.id).worker) == ("running", 2, "")


def test_a_killed_pool_process_leaves_a_later_attempt_of_its_run_alone(alice: Any) -> None:
    """The run was handed over and claimed again by this worker before its main process noticed the death."""
    execution = killed_in_step_two(alice)
    assert hand_over(execution.id)
    assert event_record(
        execution_id=execution.id, event_type=EventType.RESUMED, progress=start_progress(3), worker=WORKER, attempt=2
    )
    request_for(execution.id, attempt=1).on_failure(billiard_failure(WorkerLostError("signal 9 (SIGKILL)")))
    assert (row(execution.id).status, row(execution.id).attempt, row(execution.id).worker) == ("running", 2, WORKER)


# --- the claim ------------------------------------------------------------------------------------


def test_only_a_handed_over_durable_run_is_claimed_while_running(alice: Any) -> None:
    plain = create_execution(alice, "running")  # no worker: claimed in a process that named none
    assert execution_run(execution_id=plain.id) is None
    durable = claimed(alice)
    assert execution_run(execution_id=durable.id, worker=OTHER_WORKER) is None, "held by its worker"
    assert types(durable.id) == ["started"]


def test_a_run_claimed_outside_a_worker_names_this_process(alice: Any) -> None:
    execution = create_durable_execution(alice, inputs={"steps": 1, "step_seconds": 0})
    assert execution_run(execution_id=execution.id) == "completed"
    assert row(execution.id).worker.endswith(f":{os.getpid()}")


def test_a_cancel_during_the_hand_over_wins(alice: Any, task_queue: Any, broker: Broker) -> None:
    execution = killed_in_step_two(alice)
    assert hand_over(execution.id)
    execution_cancel(execution_id=execution.id)
    assert execution_run(execution_id=execution.id, worker=OTHER_WORKER) is None
    assert row(execution.id).status == "cancelled"
    assert "resumed" not in types(execution.id)
    assert executions_requeue_lost(now=later(3600)).execution_ids == []
    assert ExecutionStep.objects.get(execution=execution, index=0).status == "completed"


def test_config_timeout_counts_the_whole_execution_across_attempts(alice: Any, task_queue: Any) -> None:
    execution = create_durable_execution(alice, inputs={"steps": 2, "step_seconds": 0})
    Execution.objects.filter(pk=execution.id).update(config={"timeout": 5})
    assert event_record(
        execution_id=execution.id, event_type=EventType.STARTED, progress=start_progress(2), worker=WORKER
    )
    Execution.objects.filter(pk=execution.id).update(started_at=timezone.now() - timedelta(seconds=4))
    task_queue.calls.clear()
    assert hand_over(execution.id)
    soft = task_queue.calls[0]["soft_time_limit"]
    assert 2.5 < soft <= 3.0, "what remains of 5 s + 2, after 4 s"
    assert task_queue.calls[0]["time_limit"] == soft + HARD_LIMIT_GRACE_SECONDS

    Execution.objects.filter(pk=execution.id).update(started_at=timezone.now() - timedelta(seconds=6))
    assert execution_run(execution_id=execution.id, worker=OTHER_WORKER) == "failed"
    assert row(execution.id).error["type"] == "TimeoutError"
    assert types(execution.id) == ["started", "resumed", "failed"]
