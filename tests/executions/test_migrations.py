"""Migrations that carry stored data forward.

ProgressSnapshot moved from ``progress`` to ``executions`` without touching the
data: a database made before the move (migrations up to executions 0002 and
progress 0001, rows written through that state's models) is migrated forward,
and its events are then read through today's model. Progress stored before
``eta_seconds`` existed gets the key (0005). Executions stored before durable
runs are plain first attempts (0006).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from executions.models import Execution, ExecutionStep, ProgressSnapshot

BEFORE_THE_MOVE = [("executions", "0002_webhookattempt"), ("progress", "0001_initial")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_events_stored_before_the_move_are_read_after_it(django_user_model: Any) -> None:
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old_apps = migrate(BEFORE_THE_MOVE)
    try:
        assert old_apps.get_model("progress", "ProgressSnapshot")._meta.db_table == "progress_progresssnapshot"
        with pytest.raises(LookupError):
            old_apps.get_model("executions", "ProgressSnapshot")
        user = old_apps.get_model("auth", "User").objects.create(username="before-the-move")
        execution = old_apps.get_model("executions", "Execution").objects.create(
            id="exec_0123456789ab", owner_id=user.pk, type="pipeline", target_id="demo_steps", seq=2, status="completed"
        )
        snapshots = old_apps.get_model("progress", "ProgressSnapshot")
        for seq, kind in ((1, "started"), (2, "completed")):
            snapshots.objects.create(
                execution_id=execution.id, seq=seq, type=kind, status="running" if seq == 1 else kind,
                timestamp=timezone.now(), frame=f'{{"type":"{kind}","seq":{seq}}}',
            )
    finally:
        new_apps = migrate(latest)

    with pytest.raises(LookupError):
        new_apps.get_model("progress", "ProgressSnapshot")
    moved = list(ProgressSnapshot.objects.filter(execution_id="exec_0123456789ab").values_list("seq", "type", "frame"))
    assert moved == [(1, "started", '{"type":"started","seq":1}'), (2, "completed", '{"type":"completed","seq":2}')]


BEFORE_ETA = [("executions", "0004_liveness")]


@pytest.mark.django_db(transaction=True)
def test_progress_stored_before_eta_seconds_gets_the_key() -> None:
    """Every progress the API shows has ``eta_seconds``: 0 for a completed execution, null otherwise."""
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old_apps = migrate(BEFORE_ETA)
    progress = {"current_step": 1, "total_steps": 2, "percentage": 50.0, "current_step_name": "step_2"}
    final = {"current_step": 2, "total_steps": 2, "percentage": 100.0, "current_step_name": None}
    try:
        user = old_apps.get_model("auth", "User").objects.create(username="before-eta")
        executions = old_apps.get_model("executions", "Execution")
        snapshots = old_apps.get_model("executions", "ProgressSnapshot")
        running = executions.objects.create(
            id="exec_00000000aaaa", owner_id=user.pk, type="pipeline", target_id="demo_steps", status="running",
            seq=2, progress=progress,
        )
        done = executions.objects.create(
            id="exec_00000000bbbb", owner_id=user.pk, type="pipeline", target_id="demo_steps", status="completed",
            seq=2, progress=final,
        )
        pending = executions.objects.create(
            id="exec_00000000cccc", owner_id=user.pk, type="pipeline", target_id="demo_steps"
        )
        now = timezone.now()
        snapshots.objects.create(
            execution_id=running.id, seq=1, type="started", status="running", timestamp=now,
            frame='{"type":"started","execution_id":"exec_00000000aaaa","status":"running","seq":1}',
        )
        snapshots.objects.create(
            execution_id=running.id, seq=2, type="progress", status="running", timestamp=now, progress=progress,
            frame='{"type":"progress","execution_id":"exec_00000000aaaa","status":"running","progress":'
            '{"current_step":1,"total_steps":2,"percentage":50.0,"current_step_name":"step_2"},"seq":2}',
        )
        snapshots.objects.create(
            execution_id=done.id, seq=2, type="completed", status="completed", timestamp=now, progress=final,
            frame='{"type":"completed","progress":{"current_step":2,"total_steps":2,"percentage":100.0,'
            '"current_step_name":null},"outputs":{},"error":null,"seq":2}',
        )
    finally:
        migrate(latest)

    assert Execution.objects.get(pk=running.id).progress == {**progress, "eta_seconds": None}
    assert Execution.objects.get(pk=done.id).progress == {**final, "eta_seconds": 0.0}
    assert Execution.objects.get(pk=pending.id).progress is None
    frames = dict(ProgressSnapshot.objects.filter(execution_id__in=[running.id, done.id]).values_list("type", "frame"))
    assert frames["started"] == '{"type":"started","execution_id":"exec_00000000aaaa","status":"running","seq":1}'
    assert json.loads(frames["progress"])["progress"] == {**progress, "eta_seconds": None}
    assert json.loads(frames["completed"])["progress"] == {**final, "eta_seconds": 0.0}
    assert ProgressSnapshot.objects.get(execution_id=done.id).progress == {**final, "eta_seconds": 0.0}


BEFORE_DURABLE = [("executions", "0005_rerun_idempotency_eta")]


@pytest.mark.django_db(transaction=True)
def test_executions_stored_before_durable_runs_are_first_attempts_of_plain_runs() -> None:
    """0006: every existing execution is attempt 1, not durable, not a resume, and has no step rows;
    the migration also goes back."""
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old_apps = migrate(BEFORE_DURABLE)
    try:
        with pytest.raises(LookupError):
            old_apps.get_model("executions", "ExecutionStep")
        user = old_apps.get_model("auth", "User").objects.create(username="before-durable")
        old_apps.get_model("executions", "Execution").objects.create(
            id="exec_00000000dddd", owner_id=user.pk, type="pipeline", target_id="demo_steps", status="running",
            worker="celery@old",
        )
    finally:
        migrate(latest)

    execution = Execution.objects.get(pk="exec_00000000dddd")
    assert (execution.attempt, execution.durable, execution.from_failed_step) == (1, False, False)
    assert execution.worker == "celery@old"
    assert not ExecutionStep.objects.filter(execution=execution).exists()
    ExecutionStep.objects.create(execution=execution, index=0, name="step_1")
    try:
        migrate(BEFORE_DURABLE)
        migrate(latest)
        assert not ExecutionStep.objects.exists(), "going back drops the step table"
        assert Execution.objects.get(pk="exec_00000000dddd").attempt == 1
    finally:
        migrate(latest)
