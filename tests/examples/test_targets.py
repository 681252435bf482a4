"""The examples' targets run in this process, and the setting that loads them.

Importing the modules registers the targets here (as EXECUTION_TARGET_MODULES does in
the servers); the runs go through the real runner, as a worker runs them.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import examples.streaming_agent
import examples.substep_pipeline
from executions.models import Execution, ProgressSnapshot
from executions.registry import get_target
from executions.runner import execution_run
from tests.helpers import create_execution

pytestmark = pytest.mark.django_db(transaction=True)


def run(owner: Any, type_: str, target_id: str, inputs: dict[str, Any]) -> Execution:
    execution = create_execution(owner, type=type_, target_id=target_id, inputs=inputs)
    execution_run(execution_id=execution.id)
    execution.refresh_from_db()
    return execution


def progress_of(execution: Execution) -> list[dict[str, Any]]:
    events = ProgressSnapshot.objects.filter(execution=execution, type="progress").order_by("seq")
    return [event.progress for event in events]


def test_the_pipeline_reports_within_its_long_step(alice: Any) -> None:
    execution = run(alice, "pipeline", examples.substep_pipeline.TARGET_ID, {"images": 15, "seconds_per_image": 0.03})
    assert execution.status == "completed" and execution.outputs == {"resized": 15}
    progress = progress_of(execution)
    names = [p["current_step_name"] for p in progress]
    assert names[0] == "fetch" and names[-1] == "upload" and set(names) == {"fetch", "resize", "upload"}
    within = [p["percentage"] for p in progress if p["current_step_name"] == "resize"]
    low, high = 100 / 3, 200 / 3  # the step's boundaries (stored to two decimals or more)
    assert within[0] == pytest.approx(low, abs=0.01) and len(within) >= 3, within
    assert all(low - 0.01 <= p <= high + 0.01 for p in within) and within == sorted(within)
    assert any(low + 1 < p < high - 1 for p in within), "the bar moved between the step boundaries"


def test_the_agent_steps_are_its_work(alice: Any) -> None:
    inputs = {"question": "Why is the sky blue?", "sources": 2, "seconds": 0}
    execution = run(alice, "agent", examples.streaming_agent.TARGET_ID, inputs)
    assert execution.status == "completed"
    steps = []
    for progress in progress_of(execution):
        if progress["current_step_name"] not in steps:
            steps.append(progress["current_step_name"])
    assert steps == ["plan", "read source 1 of 2", "read source 2 of 2", "write the answer"]
    assert execution.outputs is not None and execution.outputs["sources"] == 2
    assert execution.outputs["answer"].startswith("An answer to 'Why is the sky blue?', from 2 sources:")


def test_execution_target_modules_are_imported_when_the_app_is_ready() -> None:
    config = apps.get_app_config("executions")
    with override_settings(EXECUTION_TARGET_MODULES=["examples.substep_pipeline"]):
        config.ready()  # importing it again registers nothing twice
    assert get_target("pipeline", examples.substep_pipeline.TARGET_ID) is not None
    with (
        override_settings(EXECUTION_TARGET_MODULES=["examples.no_such_module"]),
        pytest.raises(ImproperlyConfigured, match=r"EXECUTION_TARGET_MODULES names 'examples\.no_such_module'"),
    ):
        config.ready()
