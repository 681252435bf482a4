"""``executions.events.event_record`` under real concurrency, on SQLite and PostgreSQL.

Each thread has its own database connection (Django gives every thread one),
so writers of one execution really race: on PostgreSQL the row lock taken by
``select_for_update`` is what serialises them, on SQLite the IMMEDIATE
transaction's write lock. Either way the history must come out numbered 1..N
without a gap or a duplicate, with exactly one terminal event, and the
execution's status must be that event's. ``.ci/run`` runs this file on both.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from executions.errors import NotCancellableError
from executions.events import RecordedEvent, event_record
from executions.models import TERMINAL_EVENT_TYPES, EventType, Execution, ProgressSnapshot
from executions.services import execution_cancel

from ..helpers import final_progress, step_progress, wait_for

REPORTERS = 20
REPORTS_EACH = 15
CANCELLERS = 5
#: Cancels start once this many progress events are stored, so they land mid-stream.
CANCEL_AFTER_EVENTS = REPORTERS * REPORTS_EACH // 3
JOIN_TIMEOUT = 60.0
STEPS = 5


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Run each target in its own thread (own connection, closed at the end); return what they raised."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    def wrapped(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped, args=(target,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a writer is stuck (deadlock?)"
    return errors


def stored_events(execution_id: str) -> list[tuple[int, str]]:
    return list(
        ProgressSnapshot.objects.filter(execution_id=execution_id).order_by("seq", "id").values_list("seq", "type")
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_reporters_and_cancels_number_the_history_without_gaps(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=1)
    first_seq = execution.seq + 1
    start = threading.Barrier(REPORTERS + CANCELLERS + 1)
    cancel_now = threading.Event()
    lock = threading.Lock()
    recorded: list[RecordedEvent] = []
    refused_reports = 0
    cancel_outcomes: list[str] = []

    def keep(event: RecordedEvent) -> None:
        with lock:
            recorded.append(event)
            if sum(e.type == EventType.PROGRESS for e in recorded) >= CANCEL_AFTER_EVENTS:
                cancel_now.set()

    def reporter(index: int) -> Callable[[], None]:
        def report() -> None:
            nonlocal refused_reports
            start.wait(timeout=JOIN_TIMEOUT)
            for report_number in range(REPORTS_EACH):
                step = 1 + (index + report_number) % STEPS
                event = event_record(
                    execution_id=execution.id,
                    event_type=EventType.PROGRESS,
                    progress=step_progress(step, STEPS),
                )
                if event is None:
                    with lock:
                        refused_reports += 1
                else:
                    keep(event)

        return report

    def canceller() -> None:
        start.wait(timeout=JOIN_TIMEOUT)
        cancel_now.wait(timeout=JOIN_TIMEOUT)
        try:
            keep(execution_cancel(execution_id=execution.id))
            outcome = "won"
        except NotCancellableError as exc:
            outcome = exc.status
        with lock:
            cancel_outcomes.append(outcome)

    def completer() -> None:
        # A run finishing at the same moment as the cancels: only one end may win.
        start.wait(timeout=JOIN_TIMEOUT)
        cancel_now.wait(timeout=JOIN_TIMEOUT)
        event = event_record(
            execution_id=execution.id,
            event_type=EventType.COMPLETED,
            progress=final_progress(STEPS),
            outputs={"done": True},
        )
        if event is not None:
            keep(event)

    errors = run_threads(
        [reporter(i) for i in range(REPORTERS)] + [canceller for _ in range(CANCELLERS)] + [completer]
    )
    assert errors == [], errors

    history = stored_events(execution.id)
    seqs = [seq for seq, _ in history]
    final = Execution.objects.get(pk=execution.id)
    # Contiguous from 1, no duplicate, and the row's seq is the last one.
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert final.seq == seqs[-1]
    # What the calls were told matches what is stored: each returned seq once.
    assert sorted(e.seq for e in recorded) == list(range(first_seq, final.seq + 1))
    assert {e.seq: e.type for e in recorded} == {seq: kind for seq, kind in history if seq >= first_seq}
    # Exactly one terminal event, the last one, and the status says the same.
    terminal = [(seq, kind) for seq, kind in history if kind in TERMINAL_EVENT_TYPES]
    assert len(terminal) == 1, terminal
    assert terminal[0][0] == final.seq
    assert final.status == terminal[0][1]
    # Everyone else was refused cleanly: the losing cancels saw the winner's status.
    assert len(cancel_outcomes) == CANCELLERS
    assert cancel_outcomes.count("won") == int(final.status == "cancelled")
    assert all(outcome in {"won", final.status} for outcome in cancel_outcomes), cancel_outcomes
    progress_stored = sum(kind == EventType.PROGRESS for seq, kind in history if seq >= first_seq)
    assert progress_stored + refused_reports == REPORTERS * REPORTS_EACH
    print(
        f"\n{REPORTERS} reporters x {REPORTS_EACH} + {CANCELLERS} cancels + 1 completion on {connection.vendor}: "
        f"{len(seqs)} events, seq 1..{final.seq} contiguous, ended {final.status}; "
        f"{refused_reports} reports refused after the end"
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="select_for_update is a no-op on SQLite; its IMMEDIATE transaction serialises writers instead",
)
@pytest.mark.django_db(transaction=True)
def test_a_writer_waits_for_the_row_lock_and_then_sees_the_committed_end(make_execution: Any, alice: Any) -> None:
    """A report racing an uncommitted cancel waits for it, then is refused.

    Without the row lock the report would read the execution as still running
    (the cancel is not committed yet), take the same next ``seq`` and fail on
    the unique (execution, seq) constraint, or worse record progress after
    the end. With it, the report blocks until the cancel commits and then sees
    ``cancelled``: ``event_record`` returns None.
    """
    execution = make_execution(alice, "running", steps_entered=2)
    writer_pid: queue.Queue[int] = queue.Queue()
    outcome: queue.Queue[RecordedEvent | None | BaseException] = queue.Queue()

    def report() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            writer_pid.put(cursor.fetchone()[0])
        try:
            outcome.put(
                event_record(execution_id=execution.id, event_type=EventType.PROGRESS, progress=step_progress(3, STEPS))
            )
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome.put(exc)

    with transaction.atomic():
        cancelled = event_record(execution_id=execution.id, event_type=EventType.CANCELLED)
        assert cancelled is not None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            holder_pid = cursor.fetchone()[0]
        writer = threading.Thread(target=lambda: _closing(report), daemon=True)
        writer.start()
        pid = writer_pid.get(timeout=JOIN_TIMEOUT)

        def writer_blocked_by_us() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT %s = ANY(pg_blocking_pids(%s))", [holder_pid, pid])
                return bool(cursor.fetchone()[0])

        wait_for(writer_blocked_by_us, timeout=10, what="the report to wait for the cancel's row lock")
        assert outcome.empty(), "the report finished while the cancel held the row lock"
    writer.join(timeout=JOIN_TIMEOUT)

    assert outcome.get(timeout=JOIN_TIMEOUT) is None
    history = stored_events(execution.id)
    assert history[-1] == (cancelled.seq, "cancelled")
    assert [seq for seq, _ in history] == list(range(1, cancelled.seq + 1))
    assert Execution.objects.get(pk=execution.id).status == "cancelled"


def _closing(target: Callable[[], None]) -> None:
    try:
        target()
    finally:
        connection.close()

