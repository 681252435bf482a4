"""The durable API of the run context: ``ctx.step`` and its stored results, the
attempt, checkpoints, the idempotency key, the limits, the step-order checks,
the fence that stops a superseded attempt, and ``ctx.step`` in a target that is
not durable; ``demo_durable`` handed over and resumed from its failed step.

Attempts run in this process (``execution_run``), against the real database,
with the run's monitor thread (its own connection, hence ``transaction=True``).
A lost worker is a target raising ``WorkerKilled``, or the test handing the
run over (the sweeper's compare-and-set) while a step runs.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest

from executions.context import RunContext, StepError
from executions.models import Execution, ExecutionStep, ProgressSnapshot
from executions.registry import Boolean, Integer, pipeline
from executions.runner import execution_run
from executions.services import execution_cancel
from executions.steps import StepOrderError

from ..helpers import create_execution, wait_for
from .durable import WorkerKilled, create_durable_execution, create_resume_execution, hand_over

pytestmark = pytest.mark.django_db(transaction=True)

#: How often each test target's step functions ran, by (execution id, step name).
CALLS: Counter[tuple[str, str]] = Counter()
#: What the test targets saw inside their steps, by execution id.
SEEN: dict[str, list[Any]] = {}
#: Per execution id, the step at which a test target dies (raises WorkerKilled) in its first attempt.
KILL_AT: dict[str, str] = {}
#: Per execution id, what a step of ``test_durable_checkpoints`` stores before dying.
PLAN: dict[str, dict[str, Any]] = {}


def counted(ctx: RunContext, name: str) -> dict[str, Any]:
    CALLS[(ctx.execution_id, name)] += 1
    if ctx.attempt == 1 and KILL_AT.get(ctx.execution_id) == name:
        raise WorkerKilled
    return {"name": name, "attempt": ctx.attempt}


@pipeline("test_durable_three", steps=["one", "two", "three"], durable=True)
def three_steps(ctx: RunContext) -> dict[str, Any]:
    return {"results": [ctx.step(name, counted, ctx, name) for name in ctx.steps]}


@pipeline("test_durable_checkpoints", steps=["fetch", "send"], durable=True)
def checkpoints(ctx: RunContext) -> dict[str, Any]:
    ctx.step("fetch", lambda: {"items": 3})

    def send() -> dict[str, Any]:
        SEEN.setdefault(ctx.execution_id, []).append(
            {"attempt": ctx.attempt, "resume_state": ctx.resume_state, "key": ctx.idempotency_key}
        )
        for value in PLAN.get(ctx.execution_id, {}).get("checkpoints", []):
            ctx.checkpoint(value)
        if ctx.attempt == 1 and PLAN.get(ctx.execution_id, {}).get("die"):
            raise WorkerKilled
        return {"sent": 3}

    return {"send": ctx.step("send", send)}


#: The step list of ``test_durable_changing``: a test changes it between attempts, as a deploy would.
CHANGING_STEPS = ["a", "b", "c"]


@pipeline("test_durable_changing", steps=lambda inputs: list(CHANGING_STEPS), durable=True)
def changing(ctx: RunContext) -> dict[str, Any]:
    return {"results": [ctx.step(name, counted, ctx, name) for name in ctx.steps]}


@pipeline(
    "test_durable_output", steps=["big"], durable=True,
    inputs={"size": Integer(default=10), "checkpoint": Boolean(default=False)},
)
def output_target(ctx: RunContext) -> dict[str, Any]:
    size = ctx.inputs["size"]
    if ctx.inputs["checkpoint"]:
        return {"r": ctx.step("big", lambda: ctx.checkpoint("x" * size))}
    return {"r": ctx.step("big", lambda: "x" * size)}


@pipeline("test_durable_misordered", steps=["a", "b"], durable=True)
def misordered(ctx: RunContext) -> dict[str, Any]:
    return {"b": ctx.step("b", lambda: 1)}


@pipeline("test_durable_nested", steps=["a", "b"], durable=True)
def nested(ctx: RunContext) -> dict[str, Any]:
    return {"a": ctx.step("a", lambda: ctx.step("b", lambda: 1))}


@pipeline("test_durable_enter_step", steps=["a"], durable=True)
def enters(ctx: RunContext) -> dict[str, Any]:
    ctx.enter_step("a")
    return {}


@pipeline(
    "test_durable_hand_over_inside", steps=["one", "two", "three"], durable=True,
    inputs={"report": Boolean(default=False)},
)
def hands_over_inside(ctx: RunContext) -> dict[str, Any]:
    """Step two's first run is handed over while it runs (the sweeper acting on a worker thought lost)."""

    def two() -> str:
        CALLS[(ctx.execution_id, "two")] += 1
        if ctx.attempt == 1:
            assert hand_over(ctx.execution_id)
            if ctx.inputs["report"]:
                ctx.report(0.5)  # a progress event of the superseded attempt
        return f"two by {ctx.attempt}"

    return {"results": [ctx.step("one", lambda: "one"), ctx.step("two", two), ctx.step("three", lambda: "three")]}


@pipeline("test_plain_steps", steps=["a", "b"])
def plain_steps(ctx: RunContext) -> dict[str, Any]:
    """Not durable: ctx.step enters the steps and stores nothing."""
    SEEN[ctx.execution_id] = []

    def step(name: str) -> dict[str, Any]:
        ctx.checkpoint({"at": name})
        SEEN[ctx.execution_id].append((ctx.idempotency_key, ctx.resume_state))
        return {"name": name, "tuple": (1, 2)}

    return {"results": [ctx.step(name, step, name) for name in ctx.steps]}


def rows(execution: Execution) -> list[tuple[str, str, int | None, Any]]:
    return list(
        ExecutionStep.objects.filter(execution=execution).order_by("index").values_list(
            "name", "status", "attempt", "result"
        )
    )


def frames(execution: Execution) -> list[dict[str, Any]]:
    texts = ProgressSnapshot.objects.filter(execution=execution).order_by("seq").values_list("frame", flat=True)
    return [json.loads(text) for text in texts]


def types(execution: Execution) -> list[str]:
    return [frame["type"] for frame in frames(execution)]


def refreshed(execution: Execution) -> Execution:
    execution.refresh_from_db()
    return execution


# --- ctx.step: stored results, at most one run once stored ----------------------------------------


def test_a_step_result_is_stored_and_returned(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_three")
    assert execution_run(execution_id=execution.id) == "completed"
    results = [{"name": name, "attempt": 1} for name in ("one", "two", "three")]
    assert refreshed(execution).outputs == {"results": results}
    assert rows(execution) == [(r["name"], "completed", 1, r) for r in results]
    assert types(execution) == ["started", "progress", "progress", "progress", "completed"]
    assert [f["progress"]["current_step_name"] for f in frames(execution)[1:4]] == ["one", "two", "three"]


def test_a_completed_step_is_not_run_again_in_a_later_attempt(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_three")
    KILL_AT[execution.id] = "three"
    with pytest.raises(WorkerKilled):
        execution_run(execution_id=execution.id, worker="worker-a")
    assert rows(execution)[2][:3] == ("three", "running", 1)
    assert hand_over(execution.id)

    assert execution_run(execution_id=execution.id, worker="worker-b") == "completed"
    assert {name: CALLS[(execution.id, name)] for name in ("one", "two", "three")} == {"one": 1, "two": 1, "three": 2}
    assert refreshed(execution).outputs == {
        "results": [{"name": "one", "attempt": 1}, {"name": "two", "attempt": 1}, {"name": "three", "attempt": 2}]
    }
    assert [(name, status, attempt) for name, status, attempt, _ in rows(execution)] == [
        ("one", "completed", 1), ("two", "completed", 1), ("three", "completed", 2),
    ]
    assert execution.attempt == 2 and execution.worker == "worker-b"
    history = frames(execution)
    assert [f["type"] for f in history] == ["started", "progress", "progress", "progress", "resumed", "progress",
                                            "completed"]
    assert [f["seq"] for f in history] == list(range(1, 8))
    resumed = history[4]
    assert list(resumed) == ["type", "execution_id", "status", "progress", "attempt", "seq", "timestamp"]
    assert resumed["attempt"] == 2 and resumed["status"] == "running"
    assert resumed["progress"]["current_step"] == 2 and resumed["progress"]["current_step_name"] is None
    assert resumed["progress"]["percentage"] == pytest.approx(200 / 3)
    # Re-entering step three records its progress event again.
    assert history[5]["progress"]["current_step"] == 2 and history[5]["progress"]["current_step_name"] == "three"


# --- attempt, checkpoints, idempotency key ----------------------------------------------------------


def test_checkpoint_is_read_back_as_resume_state_by_the_next_attempt(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_checkpoints")
    PLAN[execution.id] = {"checkpoints": [{"sent": 1}, {"sent": 2}], "die": True}
    with pytest.raises(WorkerKilled):
        execution_run(execution_id=execution.id)
    assert ExecutionStep.objects.get(execution=execution, name="send").checkpoint == {"sent": 2}
    assert hand_over(execution.id)
    PLAN[execution.id] = {"checkpoints": [{"sent": 3}]}
    assert execution_run(execution_id=execution.id) == "completed"

    key = f"{execution.id}:send"
    assert SEEN[execution.id] == [
        {"attempt": 1, "resume_state": None, "key": key},
        {"attempt": 2, "resume_state": {"sent": 2}, "key": key},
    ]
    assert ExecutionStep.objects.get(execution=execution, name="send").checkpoint == {"sent": 3}


def test_the_idempotency_key_and_resume_state_belong_to_a_step(alice: Any) -> None:
    ctx = RunContext(
        execution_id="exec_000000000000", inputs={}, config={}, steps=["a"], timeout=None,
        coalesce_seconds=0.1, poll_seconds=0.1,
    )
    with pytest.raises(StepError, match="inside one"):
        _ = ctx.idempotency_key
    with pytest.raises(StepError, match="inside one"):
        _ = ctx.resume_state
    with pytest.raises(StepError, match="inside one"):
        ctx.checkpoint({"x": 1})


def test_a_step_result_over_the_limit_fails_the_run_naming_size_and_limit(alice: Any) -> None:
    # 299,999 characters of "x" are 300,001 bytes as JSON (the quotes).
    execution = create_durable_execution(alice, target_id="test_durable_output", inputs={"size": 299_999})
    assert execution_run(execution_id=execution.id) == "failed"
    error = refreshed(execution).error
    assert error == {
        "type": "StepOutputTooLarge",
        "message": "step 'big' result is 300,001 bytes, over the limit of 262,144 (EXECUTION_STEP_OUTPUT_MAX_BYTES)",
        "details": {"step": "big", "size": 300_001, "limit": 262_144},
    }
    assert rows(execution) == [("big", "failed", 1, None)]


def test_a_checkpoint_over_the_limit_fails_the_run(alice: Any, settings: Any) -> None:
    settings.EXECUTION_STEP_OUTPUT_MAX_BYTES = 100
    execution = create_durable_execution(
        alice, target_id="test_durable_output", inputs={"size": 99, "checkpoint": True}
    )
    assert execution_run(execution_id=execution.id) == "failed"
    assert refreshed(execution).error["message"] == (
        "step 'big' checkpoint is 101 bytes, over the limit of 100 (EXECUTION_STEP_OUTPUT_MAX_BYTES)"
    )
    assert ExecutionStep.objects.get(execution=execution).checkpoint is None


def test_a_result_at_the_limit_is_stored(alice: Any, settings: Any) -> None:
    settings.EXECUTION_STEP_OUTPUT_MAX_BYTES = 100
    execution = create_durable_execution(alice, target_id="test_durable_output", inputs={"size": 98})
    assert execution_run(execution_id=execution.id) == "completed"
    assert rows(execution) == [("big", "completed", 1, "x" * 98)]


# --- step order -------------------------------------------------------------------------------------


def test_a_changed_step_list_fails_the_next_attempt_with_step_order_error(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_changing")
    KILL_AT[execution.id] = "b"
    with pytest.raises(WorkerKilled):
        execution_run(execution_id=execution.id)
    assert hand_over(execution.id)
    CHANGING_STEPS[1] = "renamed"
    try:
        assert execution_run(execution_id=execution.id) == "failed"
    finally:
        CHANGING_STEPS[1] = "b"
    assert refreshed(execution).error == {
        "type": "StepOrderError", "message": "step 'b' recorded where 'renamed' expected", "details": None,
    }
    assert CALLS[(execution.id, "a")] == 1, "nothing is replayed"
    assert execution.attempt == 2


def test_a_longer_step_list_fails_the_next_attempt_naming_the_counts(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_changing")
    KILL_AT[execution.id] = "a"
    with pytest.raises(WorkerKilled):
        execution_run(execution_id=execution.id)
    assert hand_over(execution.id)
    CHANGING_STEPS.append("d")
    try:
        assert execution_run(execution_id=execution.id) == "failed"
    finally:
        CHANGING_STEPS.pop()
    assert refreshed(execution).error["message"] == "no step recorded where 'd' expected (3 steps recorded, 4 declared)"


def test_a_step_entered_out_of_order_fails_the_run(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_misordered")
    assert execution_run(execution_id=execution.id) == "failed"
    assert refreshed(execution).error["type"] == "StepOrderError"
    assert execution.error["message"] == "step 'b' recorded where 'a' expected"
    assert rows(execution) == [("a", "pending", None, None), ("b", "pending", None, None)]


def test_steps_do_not_nest(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_nested")
    assert execution_run(execution_id=execution.id) == "failed"
    assert refreshed(execution).error["message"] == "step 'b' entered inside step 'a': steps do not nest"
    assert rows(execution) == [("a", "failed", 1, None), ("b", "pending", None, None)]


def test_no_step_is_left_after_the_last() -> None:
    ctx = RunContext(
        execution_id="exec_000000000000", inputs={}, config={}, steps=[], timeout=None,
        coalesce_seconds=0.1, poll_seconds=0.1,
    )
    with pytest.raises(StepOrderError) as caught:
        ctx.step("x", lambda: 1)
    assert str(caught.value) == "step 'x' recorded where no step expected (the 0 declared steps are done)"


def test_a_durable_target_enters_its_steps_with_ctx_step(alice: Any) -> None:
    execution = create_durable_execution(alice, target_id="test_durable_enter_step")
    assert execution_run(execution_id=execution.id) == "failed"
    assert refreshed(execution).error["type"] == "StepError"
    assert "ctx.step(name, fn)" in execution.error["message"]


# --- the fence ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("report", [False, True], ids=["step write", "progress event"])
def test_a_superseded_attempt_writes_nothing_and_stops(alice: Any, settings: Any, report: bool) -> None:
    settings.PROGRESS_COALESCE_SECONDS = 0  # the report is written at once, not coalesced
    execution = create_durable_execution(
        alice, target_id="test_durable_hand_over_inside", inputs={"report": True} if report else {}
    )
    assert execution_run(execution_id=execution.id, worker="worker-a") is None
    assert refreshed(execution).status == "running" and execution.attempt == 2 and execution.worker == ""
    assert types(execution) == ["started", "progress", "progress"], "nothing recorded after the hand-over"
    assert [(name, status, attempt) for name, status, attempt, _ in rows(execution)] == [
        ("one", "completed", 1), ("two", "running", 1), ("three", "pending", None),
    ]

    assert execution_run(execution_id=execution.id, worker="worker-b") == "completed"
    assert refreshed(execution).outputs == {"results": ["one", "two by 2", "three"]}
    assert CALLS[(execution.id, "two")] == 2
    assert types(execution) == ["started", "progress", "progress", "resumed", "progress", "progress", "completed"]


def test_a_superseded_attempt_stops_at_once_and_beats_no_more(alice: Any, settings: Any) -> None:
    settings.EXECUTION_HEARTBEAT_SECONDS = 0.02
    execution = create_durable_execution(alice, inputs={"steps": 2, "step_seconds": 30})
    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(execution_run(execution_id=execution.id)))
    worker.start()
    wait_for(lambda: ExecutionStep.objects.filter(execution=execution, status="running").exists(), what="step 1")
    assert hand_over(execution.id)
    handed_over_at = Execution.objects.get(pk=execution.id).heartbeat_at
    worker.join(timeout=5)
    assert not worker.is_alive(), "the monitor stops a superseded attempt within a poll"
    assert outcome == [None]
    assert Execution.objects.get(pk=execution.id).heartbeat_at == handed_over_at
    assert rows(execution)[0][:3] == ("step_1", "running", 1)


def test_a_cancel_stops_a_durable_run_and_leaves_the_step_unfinished(alice: Any) -> None:
    execution = create_durable_execution(alice, inputs={"steps": 2, "step_seconds": 30})
    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(execution_run(execution_id=execution.id)))
    worker.start()
    wait_for(lambda: ExecutionStep.objects.filter(execution=execution, status="running").exists(), what="step 1")
    execution_cancel(execution_id=execution.id)
    worker.join(timeout=5)
    assert outcome == [None]
    assert refreshed(execution).status == "cancelled"
    assert rows(execution)[0][:3] == ("step_1", "running", 1)


# --- not durable ------------------------------------------------------------------------------------


def test_ctx_step_in_a_target_that_is_not_durable_stores_nothing(alice: Any) -> None:
    execution = create_execution(alice, target_id="test_plain_steps", inputs={})
    assert execution_run(execution_id=execution.id) == "completed"
    assert refreshed(execution).outputs == {
        "results": [{"name": "a", "tuple": [1, 2]}, {"name": "b", "tuple": [1, 2]}]
    }, "the result as read back from JSON, as a durable run returns it"
    assert not ExecutionStep.objects.filter(execution=execution).exists()
    assert types(execution) == ["started", "progress", "progress", "completed"]
    assert SEEN[execution.id] == [(f"{execution.id}:a", None), (f"{execution.id}:b", None)]


# --- demo_durable ------------------------------------------------------------------------------------


def demo_results(execution: Execution) -> list[tuple[str, str, int]]:
    return [(r["name"], r["execution_id"], r["attempt"]) for r in refreshed(execution).outputs["steps"]]


def test_demo_durable_runs_its_steps_and_stores_who_ran_them(alice: Any) -> None:
    execution = create_durable_execution(alice, inputs={"steps": 3, "step_seconds": 0})
    assert execution.inputs == {"steps": 3, "step_seconds": 0, "fail_at_step": None}
    assert execution_run(execution_id=execution.id) == "completed"
    assert demo_results(execution) == [(f"step_{i}", execution.id, 1) for i in (1, 2, 3)]
    assert types(execution) == ["started", "progress", "progress", "progress", "completed"]


def test_demo_durable_handed_over_during_step_4_of_6_finishes_in_attempt_2(alice: Any) -> None:
    execution = create_durable_execution(alice, inputs={"step_seconds": 0.1})
    first: list[str | None] = []
    worker = threading.Thread(target=lambda: first.append(execution_run(execution_id=execution.id, worker="worker-a")))
    worker.start()
    wait_for(
        lambda: ExecutionStep.objects.filter(execution=execution, index=3, status="running").exists(),
        what="step 4 running",
    )
    assert hand_over(execution.id)
    worker.join(timeout=5)
    assert first == [None]

    assert execution_run(execution_id=execution.id, worker="worker-b") == "completed"
    assert demo_results(execution) == [(f"step_{i}", execution.id, 1 if i <= 3 else 2) for i in range(1, 7)]
    history = frames(execution)
    assert [f["seq"] for f in history] == list(range(1, len(history) + 1))
    assert [f["type"] for f in history] == (
        ["started"] + ["progress"] * 4 + ["resumed"] + ["progress"] * 3 + ["completed"]
    )
    assert history[5]["attempt"] == 2 and history[5]["progress"]["current_step"] == 3
    assert [f["progress"]["current_step_name"] for f in history[6:9]] == ["step_4", "step_5", "step_6"]


def test_demo_durable_fails_on_entering_fail_at_step(alice: Any) -> None:
    execution = create_durable_execution(alice, inputs={"steps": 4, "step_seconds": 0, "fail_at_step": 3})
    assert execution_run(execution_id=execution.id) == "failed"
    assert refreshed(execution).error["message"] == "Simulated failure at step 3"
    history = frames(execution)
    assert history[-2]["progress"]["current_step_name"] == "step_3", "its progress event comes first"
    assert [status for _, status, _, _ in rows(execution)] == ["completed", "completed", "failed", "pending"]


def test_demo_durable_resumed_from_its_failed_step_reuses_the_steps_before_it(alice: Any) -> None:
    original = create_durable_execution(alice, inputs={"steps": 6, "step_seconds": 0, "fail_at_step": 4})
    assert execution_run(execution_id=original.id) == "failed"
    resumed = create_resume_execution(refreshed(original))
    assert resumed.rerun_of == original.id and resumed.from_failed_step

    assert execution_run(execution_id=resumed.id) == "completed", "fail_at_step is not applied in a resume"
    assert demo_results(resumed) == [
        (f"step_{i}", original.id if i <= 3 else resumed.id, 1) for i in range(1, 7)
    ]
    assert list(ExecutionStep.objects.filter(execution=resumed).values_list("reused_from", flat=True)) == (
        [original.id] * 3 + [None] * 3
    )
    # No progress event for a reused step: the first is step 4's.
    history = frames(resumed)
    assert [f["type"] for f in history] == ["started"] + ["progress"] * 3 + ["completed"]
    assert history[1]["progress"]["current_step"] == 3 and history[1]["progress"]["current_step_name"] == "step_4"


def test_config_timeout_counts_the_earlier_attempts(alice: Any) -> None:
    ctx = RunContext(
        execution_id="exec_000000000000", inputs={}, config={}, steps=["a"], timeout=10.0,
        coalesce_seconds=0.1, poll_seconds=0.1, elapsed_seconds=10.5,
    )
    assert ctx.cancelled, "10.5 s already ran of a 10 s timeout"
