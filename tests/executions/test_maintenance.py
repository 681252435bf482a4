"""The services every worker runs to keep the truth true (``executions.maintenance``),
the worker's sweep loop and shutdown grace (``executions.worker``), and the
task's view of a killed pool process (``executions.tasks``).

In this process, on the real database. Interleavings that would be races
between processes (a heartbeat arriving between the sweeper's query and its
write, two sweepers at once) are made to happen deterministically by running
the second party inside the first one's window, and once more with real
threads. The broker checks use the real Redis of the test run, in a database
number of their own (the ``broker`` fixture), with messages published and
fetched the way Celery does.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.contrib.testing.mocks import TaskMessage
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError

from config.celery import app
from executions import handover, maintenance
from executions.errors import BrokerUnavailableError
from executions.events import event_record
from executions.frames import iso
from executions.maintenance import (
    executions_fail_lost,
    executions_fail_on_shutdown,
    executions_prune,
    executions_requeue_lost,
    worker_beat,
    workers_alive,
)
from executions.models import EventType, Execution, ExecutionStep, ProgressSnapshot, WebhookAttempt, WorkerBeat
from executions.runner import execution_run
from executions.tasks import ExecutionRequest, run_execution
from executions.worker import Maintenance, database_in_use, install_fork_guard, start_shutdown_grace

from ..helpers import create_execution, start_progress, wait_for
from .conftest import Broker

WORKER = "w1@host"
OTHER_WORKER = "w2@host"
TIMEOUT = 30.0
REQUEUE = 30.0
RETENTION_DAYS = 30


@pytest.fixture(autouse=True)
def liveness(settings: Any) -> Any:
    """Fixed values, so the tests say exactly how far past each threshold they are."""
    settings.EXECUTION_HEARTBEAT_TIMEOUT_SECONDS = TIMEOUT
    settings.EXECUTION_REQUEUE_SECONDS = REQUEUE
    settings.EXECUTION_RETENTION_DAYS = RETENTION_DAYS
    return settings


def later(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def started_on(owner: Any, worker: str = WORKER) -> Execution:
    """A running execution claimed by ``worker``, as its run's ``started`` event does."""
    execution = create_execution(owner)
    assert event_record(
        execution_id=execution.id, event_type=EventType.STARTED, progress=start_progress(5), worker=worker
    )
    execution.refresh_from_db()
    return execution


def beat_at(execution: Execution, when: datetime | None) -> None:
    """The last heartbeat the run's monitor thread wrote."""
    Execution.objects.filter(pk=execution.id).update(heartbeat_at=when)


def event_types(execution_id: str) -> list[str]:
    events = ProgressSnapshot.objects.filter(execution_id=execution_id).order_by("seq")
    return list(events.values_list("type", flat=True))


def status_of(execution_id: str) -> str:
    return Execution.objects.values_list("status", flat=True).get(pk=execution_id)


# --- executions_fail_lost -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_whose_heartbeat_is_older_than_the_timeout_fails_as_lost(alice: Any) -> None:
    execution = started_on(alice)
    now = later(TIMEOUT + 1)
    assert executions_fail_lost(swept_by=OTHER_WORKER, now=now) == [execution.id]
    execution.refresh_from_db()
    assert execution.status == "failed"
    error = execution.error
    assert error["type"] == "WorkerLostError"
    assert WORKER in error["message"] and iso(execution.heartbeat_at) in error["message"]
    assert error["details"] == {
        "worker": WORKER,
        "last_heartbeat_at": iso(execution.heartbeat_at),
        "detected_at": iso(now),
        "detected_by": OTHER_WORKER,
    }
    assert event_types(execution.id) == ["started", "failed"]


@pytest.mark.django_db
def test_a_run_with_a_fresh_heartbeat_is_left_alone(alice: Any) -> None:
    execution = started_on(alice)
    assert executions_fail_lost(now=later(TIMEOUT - 1)) == []
    assert status_of(execution.id) == "running"
    assert event_types(execution.id) == ["started"]


@pytest.mark.django_db
def test_a_run_claimed_without_a_heartbeat_counts_from_its_start(alice: Any) -> None:
    execution = started_on(alice)
    beat_at(execution, None)
    assert executions_fail_lost(now=later(TIMEOUT - 1)) == []
    assert executions_fail_lost(now=later(TIMEOUT + 1)) == [execution.id]
    execution.refresh_from_db()
    assert execution.error["details"]["last_heartbeat_at"] == iso(execution.started_at)


@pytest.mark.django_db
def test_pending_and_ended_executions_are_never_failed_as_lost(alice: Any) -> None:
    untouched = [create_execution(alice, status) for status in ("pending", "completed", "failed", "cancelled")]
    assert executions_fail_lost(now=later(365 * 86400)) == []
    for execution in untouched:
        assert status_of(execution.id) == execution.status
        assert event_types(execution.id).count("failed") == (1 if execution.status == "failed" else 0)


@pytest.mark.django_db
def test_a_heartbeat_arriving_after_the_query_leaves_the_run_alone(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The staleness is checked again in the locked transaction (``only_if``)."""
    execution = started_on(alice)
    beat_at(execution, timezone.now() - timedelta(seconds=TIMEOUT + 5))
    record = handover.event_record

    def beat_then_record(**kwargs: Any) -> Any:
        beat_at(execution, timezone.now())  # the run's monitor, between the sweeper's query and its write
        return record(**kwargs)

    monkeypatch.setattr(handover, "event_record", beat_then_record)
    assert executions_fail_lost() == []
    assert status_of(execution.id) == "running"
    assert event_types(execution.id) == ["started"]


@pytest.mark.django_db
def test_a_sweeper_that_lost_the_race_does_not_fail_the_run_again(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second sweeper fails the run between the first one's query and its write."""
    execution = started_on(alice)
    record = handover.event_record
    other: list[list[str]] = []

    def other_sweeper_first(**kwargs: Any) -> Any:
        if not other:
            monkeypatch.setattr(handover, "event_record", record)
            other.append(executions_fail_lost(swept_by=OTHER_WORKER, now=later(TIMEOUT + 1)))
        return record(**kwargs)

    monkeypatch.setattr(handover, "event_record", other_sweeper_first)
    assert executions_fail_lost(swept_by=WORKER, now=later(TIMEOUT + 1)) == []
    assert other == [[execution.id]]
    assert event_types(execution.id) == ["started", "failed"]
    execution.refresh_from_db()
    assert execution.error["details"]["detected_by"] == OTHER_WORKER


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweepers_fail_a_run_exactly_once(alice: Any) -> None:
    execution = started_on(alice)
    now = later(TIMEOUT + 1)
    results: list[list[str]] = []
    barrier = threading.Barrier(4)

    def sweep(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(executions_fail_lost(swept_by=name, now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep, args=(f"w{i}@host",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(results) == [[], [], [], [execution.id]]
    assert event_types(execution.id) == ["started", "failed"]


# --- executions_requeue_lost ----------------------------------------------------------------------


def enqueued_at(execution_id: str) -> datetime | None:
    return Execution.objects.values_list("enqueued_at", flat=True).get(pk=execution_id)


@pytest.mark.django_db
def test_a_pending_execution_whose_message_is_gone_is_queued_again(alice: Any, task_queue: Any, broker: Broker) -> None:
    execution = create_execution(alice)
    now = later(REQUEUE + 1)
    requeued = executions_requeue_lost(now=now)
    assert requeued.execution_ids == [execution.id] and requeued.inspected
    assert task_queue.execution_ids == [execution.id]
    assert enqueued_at(execution.id) == now
    # Queued again just now: the next sweep waits another EXECUTION_REQUEUE_SECONDS.
    assert executions_requeue_lost(now=now + timedelta(seconds=1)).execution_ids == []


@pytest.mark.django_db
def test_a_pending_execution_queued_recently_is_left_alone(alice: Any, task_queue: Any, broker: Broker) -> None:
    execution = create_execution(alice)
    assert executions_requeue_lost(now=later(REQUEUE - 1)).execution_ids == []
    assert task_queue.execution_ids == []
    assert enqueued_at(execution.id) == execution.enqueued_at


@pytest.mark.django_db
def test_only_the_execution_whose_message_is_missing_from_the_queue_is_queued_again(
    alice: Any, task_queue: Any, broker: Broker
) -> None:
    waiting, lost = create_execution(alice), create_execution(alice)
    broker.publish(waiting.id)
    assert broker.queued() == 1
    assert executions_requeue_lost(now=later(REQUEUE + 1)).execution_ids == [lost.id]
    assert task_queue.execution_ids == [lost.id]
    assert enqueued_at(waiting.id) == waiting.enqueued_at


@pytest.mark.django_db
def test_a_message_a_worker_holds_unacknowledged_is_not_duplicated(alice: Any, task_queue: Any, broker: Broker) -> None:
    held, lost = create_execution(alice), create_execution(alice)
    broker.publish(held.id)
    with broker.prefetched() as message:
        assert message.payload[0] == [held.id]
        assert (broker.queued(), broker.unacked()) == (0, 1)
        assert executions_requeue_lost(now=later(REQUEUE + 1)).execution_ids == [lost.id]
    assert task_queue.execution_ids == [lost.id]


@pytest.mark.django_db
def test_running_and_ended_executions_are_never_queued_again(alice: Any, task_queue: Any, broker: Broker) -> None:
    for status in ("running", "completed", "failed", "cancelled"):
        create_execution(alice, status)
    assert executions_requeue_lost(now=later(365 * 86400)).execution_ids == []
    assert task_queue.execution_ids == []


@pytest.mark.django_db
def test_a_sweeper_that_lost_the_race_does_not_queue_again(
    alice: Any, task_queue: Any, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second sweeper requeues between the first one's query and its compare-and-set on ``enqueued_at``."""
    executions = [create_execution(alice) for _ in range(3)]
    now = later(REQUEUE + 1)
    runs_held = maintenance.runs_held
    other: list[list[str]] = []

    def other_sweeper_first(execution_ids: Iterable[str]) -> set[str] | None:
        if not other:
            monkeypatch.setattr(maintenance, "runs_held", runs_held)
            other.append(executions_requeue_lost(now=now).execution_ids)
        return runs_held(execution_ids)

    monkeypatch.setattr(maintenance, "runs_held", other_sweeper_first)
    assert executions_requeue_lost(now=now).execution_ids == []
    assert sorted(other[0]) == sorted(e.id for e in executions)
    assert sorted(task_queue.execution_ids) == sorted(e.id for e in executions)


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweepers_queue_each_lost_execution_once(alice: Any, task_queue: Any, broker: Broker) -> None:
    executions = [create_execution(alice) for _ in range(5)]
    now = later(REQUEUE + 1)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            executions_requeue_lost(now=now)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads) and not errors, errors
    # create_execution queued each once after commit; the sweepers once more, together.
    assert Counter(task_queue.execution_ids) == {e.id: 2 for e in executions}


@pytest.mark.django_db
def test_a_requeue_the_broker_refuses_is_tried_again_at_the_next_sweep(
    alice: Any, task_queue: Any, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution = create_execution(alice)

    def broker_down(execution: Execution) -> None:
        raise BrokerUnavailableError(OperationalError("Connection refused"))

    monkeypatch.setattr(maintenance, "execution_enqueue", broker_down)
    assert executions_requeue_lost(now=later(REQUEUE + 1)).execution_ids == []
    assert enqueued_at(execution.id) == execution.enqueued_at, "the clock was put back"
    monkeypatch.undo()
    assert executions_requeue_lost(now=later(REQUEUE + 2)).execution_ids == [execution.id]


@pytest.mark.django_db
def test_without_a_readable_broker_queue_age_alone_decides(
    alice: Any, task_queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another broker than Redis: a duplicate is harmless, since only one delivery can claim the run."""
    execution = create_execution(alice)
    monkeypatch.setattr(maintenance, "runs_held", lambda execution_ids: None)
    requeued = executions_requeue_lost(now=later(REQUEUE + 1))
    assert requeued.execution_ids == [execution.id] and not requeued.inspected


# --- executions_prune -----------------------------------------------------------------------------


def ended(owner: Any, status: str = "completed", *, attempts: int = 0) -> Execution:
    execution = create_execution(owner, status)
    for number in range(1, attempts + 1):
        WebhookAttempt.objects.create(
            execution=execution, attempt=number, url="https://hooks.example.com/", event=status, status_code=500
        )
    return execution


def days_later(days: float) -> datetime:
    return later(days * 86400)


def exists(execution: Execution) -> bool:
    return Execution.objects.filter(pk=execution.id).exists()


@pytest.mark.django_db
def test_prune_deletes_ended_executions_past_the_retention_with_their_events_and_webhook_attempts(alice: Any) -> None:
    old = [ended(alice, status, attempts=2) for status in ("completed", "failed", "cancelled")]
    assert ProgressSnapshot.objects.filter(execution__in=old).exists()
    assert executions_prune(now=days_later(RETENTION_DAYS + 1)) == 3
    assert not Execution.objects.filter(pk__in=[e.id for e in old]).exists()
    assert not ProgressSnapshot.objects.filter(execution_id__in=[e.id for e in old]).exists()
    assert not WebhookAttempt.objects.filter(execution_id__in=[e.id for e in old]).exists()


@pytest.mark.django_db
def test_prune_keeps_what_ended_within_the_retention(alice: Any) -> None:
    old, recent = ended(alice, attempts=1), ended(alice, attempts=1)
    Execution.objects.filter(pk=old.id).update(completed_at=timezone.now() - timedelta(days=RETENTION_DAYS + 1))
    assert executions_prune() == 1
    assert not exists(old) and exists(recent)
    assert ProgressSnapshot.objects.filter(execution=recent).count() == len(event_types(recent.id)) > 0
    assert WebhookAttempt.objects.filter(execution=recent).count() == 1


@pytest.mark.django_db
def test_prune_never_touches_pending_or_running_executions_whatever_their_age(alice: Any) -> None:
    pending, running = create_execution(alice), started_on(alice)
    long_ago = timezone.now() - timedelta(days=10 * 365)
    Execution.objects.filter(pk__in=[pending.id, running.id]).update(
        created_at=long_ago, enqueued_at=long_ago, heartbeat_at=long_ago
    )
    Execution.objects.filter(pk=running.id).update(started_at=long_ago)
    assert executions_prune(now=days_later(10 * 365)) == 0
    assert executions_prune(now=days_later(10 * 365), dry_run=True) == 0
    assert exists(pending) and exists(running)
    assert event_types(running.id) == ["started"]


def in_lists(sql: str, table: str) -> list[int]:
    """Sizes of the ``IN (...)`` lists of the DELETEs on ``table`` in the captured SQL."""
    if not re.match(rf'DELETE FROM "?{table}\b"?', sql):  # not executions_executionstep's
        return []
    return [len(items.split(",")) for items in re.findall(r"\bIN \(([^)]*)\)", sql)]


@pytest.mark.django_db
def test_prune_deletes_in_short_batches(alice: Any) -> None:
    old = [ended(alice) for _ in range(5)]  # 7 events each: started, 5 steps, completed
    with CaptureQueriesContext(connection) as queries:
        assert executions_prune(now=days_later(RETENTION_DAYS + 1), batch_size=2, events_per_transaction=3) == 5
    assert not Execution.objects.filter(pk__in=[e.id for e in old]).exists()
    execution_deletes = [n for q in queries for n in in_lists(q["sql"], "executions_execution")]
    event_deletes = [
        n for q in queries for n in in_lists(q["sql"], "progress_progresssnapshot") if '"id" IN' in q["sql"]
    ]
    assert execution_deletes == [2, 2, 1]
    assert sum(event_deletes) == 35 and max(event_deletes) <= 3


@pytest.mark.django_db(transaction=True)
def test_prune_deletes_the_step_rows_of_durable_runs_in_short_batches(alice: Any) -> None:
    execution = create_execution(alice, target_id="demo_durable", inputs={"steps": 7, "step_seconds": 0})
    assert execution_run(execution_id=execution.id, worker=WORKER) == "completed"
    assert ExecutionStep.objects.filter(execution=execution).count() == 7
    with CaptureQueriesContext(connection) as queries:
        assert executions_prune(now=days_later(RETENTION_DAYS + 1), events_per_transaction=3) == 1
    assert not ExecutionStep.objects.filter(execution_id=execution.id).exists()
    step_deletes = [
        n for q in queries for n in in_lists(q["sql"], "executions_executionstep") if '"id" IN' in q["sql"]
    ]
    assert step_deletes == [3, 3, 1]


@pytest.mark.django_db
def test_prune_dry_run_counts_and_deletes_nothing(alice: Any) -> None:
    old = [ended(alice, attempts=1) for _ in range(2)]
    assert executions_prune(now=days_later(RETENTION_DAYS + 1), dry_run=True) == 2
    assert all(exists(e) for e in old)
    assert WebhookAttempt.objects.filter(execution__in=old).count() == 2


@pytest.mark.django_db
def test_a_retention_of_0_days_keeps_everything(alice: Any, settings: Any) -> None:
    settings.EXECUTION_RETENTION_DAYS = 0
    old = ended(alice)
    assert executions_prune(now=days_later(10 * 365)) == 0
    assert executions_prune(now=days_later(10 * 365), dry_run=True) == 0
    out = StringIO()
    call_command("prune_executions", stdout=out)
    assert "kept forever" in out.getvalue()
    assert exists(old)


@pytest.mark.django_db
def test_the_prune_command_and_its_dry_run(alice: Any) -> None:
    old = ended(alice)
    Execution.objects.filter(pk=old.id).update(completed_at=timezone.now() - timedelta(days=RETENTION_DAYS + 1))
    recent = ended(alice)
    out = StringIO()
    call_command("prune_executions", "--dry-run", stdout=out)
    assert out.getvalue().startswith("Would delete 1 execution ")
    assert exists(old)
    out = StringIO()
    call_command("prune_executions", stdout=out)
    assert out.getvalue().startswith("Deleted 1 execution ")
    assert not exists(old) and exists(recent)


# --- the worker: shutdown grace, sweep loop, beats --------------------------------------------------


@pytest.mark.django_db
def test_when_the_grace_ends_the_workers_running_executions_fail_with_worker_shutdown(alice: Any) -> None:
    mine = [started_on(alice, WORKER) for _ in range(2)]
    other, pending = started_on(alice, OTHER_WORKER), create_execution(alice)
    assert sorted(executions_fail_on_shutdown(worker=WORKER, grace_seconds=30)) == sorted(e.id for e in mine)
    for execution in mine:
        execution.refresh_from_db()
        assert execution.status == "failed"
        assert execution.error["type"] == "WorkerShutdown"
        assert WORKER in execution.error["message"] and "30 s grace" in execution.error["message"]
        assert execution.error["details"] == {"worker": WORKER, "grace_seconds": 30}
        assert event_types(execution.id) == ["started", "failed"]
    assert status_of(other.id) == "running" and status_of(pending.id) == "pending"
    assert executions_fail_on_shutdown(worker=WORKER, grace_seconds=30) == []


@pytest.mark.django_db(transaction=True)
def test_a_warm_shutdown_fails_what_still_runs_once_the_grace_has_passed(alice: Any, settings: Any) -> None:
    settings.WORKER_SHUTDOWN_GRACE_SECONDS = 1.0
    execution = started_on(alice, WORKER)
    signalled = time.monotonic()
    start_shutdown_grace(sender=WORKER, sig="SIGTERM", how="Warm", exitcode=0)
    assert status_of(execution.id) == "running", "the grace has only started"
    wait_for(lambda: status_of(execution.id) == "failed", timeout=10, what="the end of the grace")
    assert time.monotonic() - signalled >= 1.0
    execution.refresh_from_db()
    assert execution.error["type"] == "WorkerShutdown"


@pytest.mark.django_db
def test_a_cold_shutdown_starts_no_grace(settings: Any) -> None:
    settings.WORKER_SHUTDOWN_GRACE_SECONDS = 60
    before = {t for t in threading.enumerate() if t.name == "shutdown-grace"}
    start_shutdown_grace(sender=WORKER, sig="SIGQUIT", how="Cold", exitcode=0)
    assert {t for t in threading.enumerate() if t.name == "shutdown-grace"} == before


@pytest.mark.django_db(transaction=True)
def test_a_sweep_beats_and_fails_lost_runs(alice: Any) -> None:
    execution = started_on(alice, OTHER_WORKER)
    beat_at(execution, timezone.now() - timedelta(seconds=TIMEOUT + 1))
    Maintenance(WORKER).tick()
    assert WorkerBeat.objects.filter(hostname=WORKER).exists()
    assert workers_alive() == 1
    execution.refresh_from_db()
    assert execution.status == "failed" and execution.error["details"]["detected_by"] == WORKER


@pytest.mark.django_db(transaction=True)
def test_a_sweep_outlives_a_broker_outage(alice: Any, task_queue: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lost = started_on(alice, OTHER_WORKER)
    beat_at(lost, timezone.now() - timedelta(seconds=TIMEOUT + 1))
    waiting = create_execution(alice)
    Execution.objects.filter(pk=waiting.id).update(enqueued_at=timezone.now() - timedelta(seconds=REQUEUE + 1))

    def broker_down(execution_ids: Iterable[str]) -> set[str] | None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(maintenance, "runs_held", broker_down)
    queued_before = list(task_queue.execution_ids)  # each once, by its submit
    Maintenance(WORKER).tick()  # logged, not raised: the next sweep tries again
    assert status_of(lost.id) == "failed"
    assert status_of(waiting.id) == "pending" and task_queue.execution_ids == queued_before


#: How long the sweep below keeps its write transaction open: the fork starts within it.
HOLD_SECONDS = 0.5


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite keeps the state of its locks in process memory")
@pytest.mark.django_db(transaction=True)
def test_a_pool_process_forked_during_a_sweep_can_still_write() -> None:
    """Without the guard the child inherits the sweep's write lock and every write it tries is "locked"."""
    install_fork_guard()
    path = connection.settings_dict["NAME"]
    holding = threading.Event()

    def sweep_holding_a_write() -> None:
        # As Maintenance.tick: the connection is closed before the lock is let go
        # (a fork during the close would copy SQLite's own mutexes held).
        with database_in_use:
            try:
                with transaction.atomic():
                    worker_beat(hostname=WORKER, pid=os.getpid(), started_at=timezone.now())
                    holding.set()
                    time.sleep(HOLD_SECONDS)  # not a synchronisation: the fork below must wait for it
            finally:
                connection.close()

    sweep = threading.Thread(target=sweep_holding_a_write)
    sweep.start()
    assert holding.wait(10)
    pid = os.fork()
    if pid == 0:  # the new pool process: write on a connection of its own, then leave at once
        code = 1
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(10)  # a child stuck on a lock it inherited dies instead of hanging the run
            db = sqlite3.connect(path, timeout=2, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
            code = 0
        finally:
            os._exit(code)
    sweep.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked process could not write"


@pytest.mark.django_db
def test_workers_alive_counts_the_workers_seen_within_the_timeout() -> None:
    started = timezone.now()
    worker_beat(hostname=WORKER, pid=1, started_at=started)
    worker_beat(hostname=WORKER, pid=1, started_at=started)
    worker_beat(hostname=OTHER_WORKER, pid=2, started_at=started)
    long_ago = timezone.now() - timedelta(seconds=TIMEOUT + 1)
    WorkerBeat.objects.filter(hostname=OTHER_WORKER).update(last_seen_at=long_ago)
    assert workers_alive() == 1
    assert workers_alive(within_seconds=TIMEOUT + 60) == 2


# --- the task: a pool process killed under a run --------------------------------------------------


def request_for(execution_id: str) -> ExecutionRequest:
    """What the worker's main process holds for a delivered ``run_execution`` message."""
    message = TaskMessage(run_execution.name, args=[execution_id])
    return ExecutionRequest(message, app=app, task=run_execution, hostname=WORKER)


def billiard_failure(exc: BaseException) -> ExceptionInfo:
    """The failure as billiard hands it to the main process: wrapped in ExceptionWithTraceback."""
    try:
        raise exc
    except BaseException:  # noqa: BLE001 - captured, as billiard does
        info = ExceptionInfo()
    assert isinstance(info.exception, ExceptionWithTraceback)
    return info


@pytest.mark.django_db
def test_a_killed_pool_process_fails_its_run_as_worker_lost(alice: Any) -> None:
    execution = started_on(alice, WORKER)
    failure = billiard_failure(WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL) Job: 0."))
    request_for(execution.id).on_failure(failure)
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error["type"] == "WorkerLostError"
    assert "signal 9 (SIGKILL)" in execution.error["message"]
    assert execution.error["details"] == {"worker": WORKER}
    assert event_types(execution.id) == ["started", "failed"]


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["running", "completed"])
def test_other_task_failures_are_left_to_the_runner(alice: Any, status: str) -> None:
    execution = create_execution(alice, status)
    types = event_types(execution.id)
    request_for(execution.id).on_failure(billiard_failure(ValueError("boom")))
    assert status_of(execution.id) == status and event_types(execution.id) == types


@pytest.mark.django_db
def test_a_lost_worker_after_the_run_ended_changes_nothing(alice: Any) -> None:
    execution = create_execution(alice, "completed")
    types = event_types(execution.id)
    request_for(execution.id).on_failure(billiard_failure(WorkerLostError("Worker exited prematurely")))
    assert status_of(execution.id) == "completed" and event_types(execution.id) == types

