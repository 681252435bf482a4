"""``progress.eta_seconds``: the estimator (``executions.eta``) and where it is computed (the event
writer), so that every surface shows the same value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from executions import events
from executions.eta import eta_seconds
from executions.events import event_record
from executions.frames import execution_dict
from executions.models import Execution
from executions.selectors import event_frames_after
from executions.services import execution_cancel

from ..helpers import create_execution, final_progress, start_progress, step_progress

START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "percentage", "elapsed", "expected"),
    [
        ("running", 50.0, 10.0, 10.0),
        ("running", 40.0, 10.0, 15.0),
        ("running", 33.333333, 1.0, 2.0),  # rounded to 0.1 s
        ("running", 3.0, 1.0, 32.3),
        ("running", 100.0, 7.0, 0.0),
        ("running", 0.0, 10.0, None),  # nothing done yet: unknown
        ("running", 25.0, None, None),
        ("running", None, 5.0, None),
        ("pending", None, None, None),
        ("completed", 100.0, 12.0, 0.0),
        ("completed", 60.0, None, 0.0),
        ("failed", 60.0, 12.0, None),
        ("cancelled", 60.0, 12.0, None),
    ],
)
def test_the_estimator(status: str, percentage: float | None, elapsed: float | None, expected: float | None) -> None:
    assert eta_seconds(status=status, percentage=percentage, elapsed_seconds=elapsed) == expected


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = START
        monkeypatch.setattr(events.timezone, "now", lambda: self.now)

    def at(self, seconds: float) -> None:
        self.now = START + timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def record(execution: Execution, event_type: str, **kwargs: Any) -> None:
    assert event_record(execution_id=execution.id, event_type=event_type, **kwargs) is not None


@pytest.mark.django_db
def test_the_writer_stores_the_estimate_in_the_progress_of_every_event(
    alice: Any, make_execution: Any, clock: Clock
) -> None:
    execution = make_execution(alice)
    record(execution, "started", progress=start_progress(5))
    clock.at(4)
    record(execution, "progress", progress=step_progress(2, 5))  # 20 % after 4 s: 16 s left
    clock.at(6)
    # A target's own eta_seconds is not taken: the writer's estimate is.
    record(execution, "progress", progress={**step_progress(3, 5), "eta_seconds": 999})  # 40 % after 6 s: 9 s left
    clock.at(10)
    record(execution, "completed", progress=final_progress(5), outputs={})
    stored = [json.loads(frame) for _, _, frame in event_frames_after(execution_id=execution.id)]
    assert [f.get("progress", {}).get("eta_seconds") for f in stored] == [None, 16.0, 9.0, 0.0]
    execution.refresh_from_db()
    assert execution.progress["eta_seconds"] == 0.0


@pytest.mark.django_db
def test_the_estimate_costs_the_lean_writer_no_fourth_statement(alice: Any, make_execution: Any, clock: Clock) -> None:
    """Lock, update, insert: ``started_at`` (and ``owner_id``) come with the lock's read."""
    execution = make_execution(alice)
    record(execution, "started", progress=start_progress(4))
    clock.at(3)
    with CaptureQueriesContext(connection) as queries:
        record(execution, "progress", progress=step_progress(2, 4))  # 25 % after 3 s: 9 s left
    statements = [q["sql"].split()[0].upper() for q in queries]
    assert [s for s in statements if s not in ("SAVEPOINT", "RELEASE", "BEGIN")] == ["SELECT", "UPDATE", "INSERT"]
    execution.refresh_from_db()
    assert execution.progress["eta_seconds"] == 9.0


@pytest.mark.django_db
def test_the_conditional_path_estimates_the_same(alice: Any, make_execution: Any, clock: Clock) -> None:
    """``only_if`` (the sweeper's) reads the row through the ORM: same columns, same estimate."""
    execution = make_execution(alice)
    record(execution, "started", progress=start_progress(4))
    clock.at(3)
    record(execution, "progress", progress=step_progress(2, 4), only_if=Q(status="running"))
    execution.refresh_from_db()
    assert execution.progress["eta_seconds"] == 9.0


@pytest.mark.django_db
def test_failed_and_cancelled_have_no_estimate(alice: Any, make_execution: Any, clock: Clock) -> None:
    failed = make_execution(alice)
    record(failed, "started", progress=start_progress(4))
    clock.at(2)
    record(failed, "progress", progress=step_progress(3, 4))
    record(failed, "failed", error={"type": "ValueError", "message": "boom", "details": None})
    cancelled = make_execution(alice)
    record(cancelled, "started", progress=start_progress(4))
    record(cancelled, "progress", progress=step_progress(3, 4))
    execution_cancel(execution_id=cancelled.id)
    for execution in (failed, cancelled):
        execution.refresh_from_db()
        assert execution.progress["eta_seconds"] is None
        assert execution.progress["current_step"] == 2, "the rest of the progress is kept"


@pytest.mark.django_db
def test_every_surface_shows_the_same_estimate(
    alice: Any, alice_client: APIClient, make_execution: Any, clock: Clock
) -> None:
    """REST execution, GET /progress, the stored event (events endpoint and sockets) and the page data."""
    execution = make_execution(alice)
    record(execution, "started", progress=start_progress(4))
    clock.at(3)
    record(execution, "progress", progress=step_progress(2, 4))  # 25 % after 3 s: 9 s left
    base = f"/api/v1/executions/{execution.id}"
    assert alice_client.get(base).json()["progress"]["eta_seconds"] == 9.0
    assert alice_client.get(f"{base}/progress").json()["eta_seconds"] == 9.0
    assert alice_client.get(f"{base}/events").json()["events"][-1]["progress"]["eta_seconds"] == 9.0
    execution.refresh_from_db()
    assert execution_dict(execution)["progress"]["eta_seconds"] == 9.0


@pytest.mark.django_db
def test_pending_has_no_progress_and_so_no_estimate(alice: Any, alice_client: APIClient, make_execution: Any) -> None:
    execution = make_execution(alice)
    assert alice_client.get(f"/api/v1/executions/{execution.id}").json()["progress"] is None
    assert alice_client.get(f"/api/v1/executions/{execution.id}/progress").status_code == 204


@pytest.mark.django_db
def test_a_real_run_estimates_from_its_own_pace(alice: Any, task_queue: Any) -> None:
    execution = create_execution(alice, "running", steps_entered=3)
    assert execution.progress["percentage"] == 40.0
    assert execution.progress["eta_seconds"] is not None and execution.progress["eta_seconds"] >= 0
