"""ProgressSnapshot moved from ``progress`` to ``executions`` without touching the data.

A database made before the move (migrations up to executions 0002 and progress
0001, rows written through that state's models) is migrated forward, and its
events are then read through today's model.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from executions.models import ProgressSnapshot

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
