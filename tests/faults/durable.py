"""Durable runs (issue 15) on real processes: a lost or stopped worker hands its run over.

Each scenario runs ``demo_durable`` in a :class:`~tests.faults.scenarios.FaultLab`
while a WebSocket client watches, injects its fault, and checks what the
contract promises: the run is not failed but resumed at its first step not
completed by another attempt (one ``resumed`` event), each step ran in the
attempt its stored result names, the watcher got its whole stream (``status``,
every later event once and in order, one terminal frame, close 1000), within
the bound. ``bench/faults.py`` runs the first two with the default settings.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from .scenarios import (
    SLACK_SECONDS,
    WAIT_SECONDS,
    FaultLab,
    Outcome,
    Watcher,
    assert_exits,
    finish,
    stamp,
    wait_until,
)

#: What the contract allows from the loss bound to the ``resumed`` event: a sweep's hand-over,
#: the queue, a worker's claim (docs/guides/durable-runs.md).
RESUME_SECONDS = 10.0
#: Long enough that a fault lands inside the step the scenario waits for.
STEP_SECONDS = 1.0
STEPS = 6


def loss_bound(lab: FaultLab) -> float:
    """From a kill to the sweeper's hand-over at the latest: heartbeat + timeout + sweep."""
    live = lab.liveness
    return live.heartbeat + live.timeout + live.sweep


def is_claimed(frame: dict[str, Any]) -> bool:
    """The run has a worker: its ``started`` event, or a ``status`` frame sent after it."""
    return frame.get("status") == "running"


def submit_durable(lab: FaultLab, **inputs: Any) -> str:
    body = {"steps": STEPS, "step_seconds": STEP_SECONDS, **inputs}
    return str(lab.api.submit("demo_durable", inputs=body)["execution_id"])


def in_step(number: int) -> Callable[[dict[str, Any]], bool]:
    """The progress frame that enters step ``number`` (1-based)."""
    return lambda f: f["type"] == "progress" and f["progress"]["current_step_name"] == f"step_{number}"


def steps_of(lab: FaultLab, execution_id: str) -> list[dict[str, Any]]:
    response = lab.api.session.get(f"{lab.http_url}/api/v1/executions/{execution_id}/steps", timeout=WAIT_SECONDS)
    assert response.status_code == 200, response.text
    return list(response.json()["steps"])


def rerun(lab: FaultLab, execution_id: str, body: dict[str, Any] | None) -> Any:
    return lab.api.session.post(
        f"{lab.http_url}/api/v1/executions/{execution_id}/rerun", json=body, timeout=WAIT_SECONDS
    )


def assert_resumed_once(
    lab: FaultLab, watcher: Watcher, events: list[dict[str, Any]], *, at_step: int, attempts: int = 2
) -> dict[str, Any]:
    """Completed in attempt ``attempts`` after one hand-over at step ``at_step``: the outputs, the steps,
    the stored events and the watcher's frames all say so. The ``resumed`` event."""
    execution_id = watcher.execution_id
    resumed = [e for e in events if e["type"] == "resumed"]
    assert len(resumed) == attempts - 1, [e["type"] for e in events]
    assert resumed[-1]["attempt"] == attempts and resumed[-1]["progress"]["current_step"] == at_step - 1
    assert events[-1]["type"] == "completed", events[-1]
    ran_in = [1 if n < at_step else attempts for n in range(1, STEPS + 1)]
    outputs = events[-1]["outputs"]["steps"]
    assert [(s["name"], s["execution_id"], s["attempt"]) for s in outputs] == [
        (f"step_{n}", execution_id, attempt) for n, attempt in enumerate(ran_in, start=1)
    ]
    assert [(s["name"], s["status"], s["attempt"]) for s in steps_of(lab, execution_id)] == [
        (f"step_{n}", "completed", attempt) for n, attempt in enumerate(ran_in, start=1)
    ]
    assert lab.api.get(execution_id)["attempt"] == attempts
    assert watcher.stream.types.count("resumed") == attempts - 1, watcher.stream.types
    return resumed[-1]


# --- the faults ---------------------------------------------------------------------------------


def durable_worker_killed(lab: FaultLab) -> Outcome:
    """SIGKILL to the whole worker during step 4 of 6; another worker was running, one more starts.

    Both survivors sweep: the first that finds the heartbeat older than the
    timeout hands the run over and queues it, the other finds it handed over.
    A worker claims it (``resumed``, attempt 2) and goes on at step 4.
    """
    doomed = lab.start_worker("worker-a")
    watcher = lab.watch(submit_durable(lab))
    watcher.wait_for_frame(is_claimed)
    lab.start_worker("worker-b")  # started after the claim, so the run is worker-a's
    watcher.wait_for_frame(in_step(4))
    killed_at = time.time()
    doomed.signal_group(signal.SIGKILL)
    lab.start_worker("worker-c")
    bound = loss_bound(lab) + RESUME_SECONDS
    events = finish(lab, watcher, timeout=bound + STEPS * STEP_SECONDS + WAIT_SECONDS)
    resumed = assert_resumed_once(lab, watcher, events, at_step=4)
    recovery = stamp(resumed) - killed_at
    assert recovery <= bound, f"resumed {recovery:.2f} s after the kill, bound {bound:g} s"
    return Outcome(
        "SIGKILL to the whole worker during step 4 of 6 of a durable run (two workers sweep)",
        "handed over once, `resumed` at step 4 with attempt 2, `completed`: steps 1-3 ran in attempt 1, "
        "4-6 in attempt 2; client: whole stream, 1 `resumed`, 1 terminal frame, close 1000",
        recovery,
        bound,
        "kill → resumed",
    )


def durable_worker_terminated(lab: FaultLab) -> Outcome:
    """SIGTERM to the main process (``docker stop``) while a durable run needs longer than the grace.

    When the grace ends the run is handed over at once (no loss bound to wait
    for) and the other worker, free, resumes it; the stopping worker's run is
    stopped by its monitor and the worker exits.
    """
    live = lab.liveness
    stopping = lab.start_worker("worker-a")
    # From step 2 on, the run needs longer than the grace: 5 steps of a third of it.
    step_seconds = max(STEP_SECONDS, live.grace / 3)
    watcher = lab.watch(submit_durable(lab, step_seconds=step_seconds))
    watcher.wait_for_frame(is_claimed)
    lab.start_worker("worker-b")
    watcher.wait_for_frame(in_step(2))
    signalled_at = time.time()
    stopping.signal_leader(signal.SIGTERM)
    bound = live.grace + SLACK_SECONDS
    events = finish(lab, watcher, timeout=bound + STEPS * step_seconds + WAIT_SECONDS)
    assert "failed" not in [e["type"] for e in events]
    resumed = assert_resumed_once(lab, watcher, events, at_step=resumed_step(events))
    recovery = stamp(resumed) - signalled_at
    assert live.grace <= recovery <= bound, f"resumed {recovery:.2f} s after SIGTERM, grace {live.grace:g} s"
    assert_exits(stopping, WAIT_SECONDS)
    return Outcome(
        f"SIGTERM to the main process during a durable run longer than the {live.grace:g} s grace",
        f"not failed: handed over when the grace ended, `resumed` by the other worker at step "
        f"{resumed['progress']['current_step'] + 1}, `completed`; the stopped worker finished its warm shutdown",
        recovery,
        bound,
        "SIGTERM → resumed",
    )


def durable_worker_group_terminated(lab: FaultLab) -> Outcome:
    """SIGTERM to every process of the worker (systemd's default) during a durable run.

    The pool process, told to stop, hands its run over before it exits (no
    grace, no loss bound); the other worker resumes it.
    """
    stopping = lab.start_worker("worker-a")
    watcher = lab.watch(submit_durable(lab))
    watcher.wait_for_frame(is_claimed)
    lab.start_worker("worker-b")
    watcher.wait_for_frame(in_step(3))
    signalled_at = time.time()
    stopping.signal_group(signal.SIGTERM)
    bound = SLACK_SECONDS
    events = finish(lab, watcher, timeout=bound + STEPS * STEP_SECONDS + WAIT_SECONDS)
    resumed = assert_resumed_once(lab, watcher, events, at_step=3)
    recovery = stamp(resumed) - signalled_at
    assert recovery <= bound, f"resumed {recovery:.2f} s after SIGTERM, bound {bound:g} s"
    assert_exits(stopping, WAIT_SECONDS)
    return Outcome(
        "SIGTERM to every worker process during step 3 of 6 of a durable run",
        "handed over by the pool process as it stopped, `resumed` at step 3 by the other worker, `completed`",
        recovery,
        bound,
        "SIGTERM → resumed",
    )


def resumed_step(events: list[dict[str, Any]]) -> int:
    """The step (1-based) the ``resumed`` event goes on at."""
    (resumed,) = [e for e in events if e["type"] == "resumed"]
    return int(resumed["progress"]["current_step"]) + 1


def durable_attempt_cap(lab: FaultLab) -> Outcome:
    """With ``EXECUTION_MAX_ATTEMPTS=2``: the pool process is killed in attempt 1, then in attempt 2.

    The first loss is handed over (by the main process, or the sweeper if it
    comes first) and the same worker's new pool process resumes it; the second
    is beyond the cap: ``failed`` ``WorkerLostError`` with ``details.attempts`` 2.
    """
    lab.env["EXECUTION_MAX_ATTEMPTS"] = "2"
    worker = lab.start_worker("worker", concurrency=1)
    watcher = lab.watch(submit_durable(lab))
    watcher.wait_for_frame(in_step(2))
    (child,) = worker.children()
    os.kill(child, signal.SIGKILL)
    watcher.wait_for_frame(lambda f: f["type"] == "resumed", timeout=loss_bound(lab) + RESUME_SECONDS + WAIT_SECONDS)
    watcher.wait_for_frame(lambda f: f["type"] == "progress" and f["seq"] > resumed_seq(watcher))
    (child,) = wait_until(lambda: [c for c in worker.children() if c != child], WAIT_SECONDS, "a new pool process")
    os.kill(child, signal.SIGKILL)
    events = finish(lab, watcher, timeout=loss_bound(lab) + WAIT_SECONDS)
    failed = events[-1]
    assert failed["type"] == "failed" and failed["error"]["type"] == "WorkerLostError", failed
    assert failed["error"]["details"]["attempts"] == 2, failed["error"]
    assert [e["type"] for e in events].count("resumed") == 1
    assert lab.api.get(watcher.execution_id)["attempt"] == 2
    return Outcome(
        "Pool process killed in attempt 1 and in attempt 2 of a durable run (EXECUTION_MAX_ATTEMPTS=2)",
        "the first loss handed over and resumed; the second `failed` WorkerLostError with details.attempts 2",
    )


def resumed_seq(watcher: Watcher) -> int:
    return int(next(f["seq"] for f in watcher.stream.frames if f["type"] == "resumed"))


def durable_cancelled_during_hand_over(lab: FaultLab) -> Outcome:
    """A cancel while the run waits for a worker after its hand-over wins: it never resumes.

    The survivor's pool process is busy and its one prefetch slot holds another
    message, so the handed-over run waits in the queue (its ``attempt`` is 2
    already); it is cancelled then, and when the survivor takes its message,
    the claim finds it cancelled.
    """
    survivor = lab.start_worker("worker-b", concurrency=1)
    blockers = [str(lab.api.submit("demo_steps", inputs={"steps": 1, "step_seconds": 60})["execution_id"])]
    lab.api.wait_for(blockers[0], lambda e: e["status"] == "running")
    blockers.append(str(lab.api.submit("demo_steps", inputs={"steps": 1, "step_seconds": 60})["execution_id"]))
    wait_until(lambda: lab.broker_counts() == (0, 1), WAIT_SECONDS, "the survivor to hold the second blocker")
    doomed = lab.start_worker("worker-a")  # the only one that can take the durable run
    watcher = lab.watch(submit_durable(lab))
    watcher.wait_for_frame(in_step(2))
    doomed.signal_group(signal.SIGKILL)
    lab.api.wait_for(watcher.execution_id, lambda e: e["attempt"] == 2, timeout=loss_bound(lab) + WAIT_SECONDS)
    # Queued after the hand-over's commit: it waits there, no worker can take it.
    wait_until(lambda: lab.broker_counts()[0] == 1, WAIT_SECONDS, "the handed-over run's message in the queue")
    assert lab.api.cancel(watcher.execution_id).status_code == 200
    for blocker in reversed(blockers):
        assert lab.api.cancel(blocker).status_code == 200
    events = finish(lab, watcher, timeout=WAIT_SECONDS)
    assert events[-1]["type"] == "cancelled" and "resumed" not in [e["type"] for e in events], events
    wait_until(lambda: lab.broker_counts() == (0, 0), WAIT_SECONDS, "the handed-over run's message consumed")
    assert "resumed" not in [e["type"] for e in lab.api.events(watcher.execution_id)]
    assert survivor.alive()
    return Outcome(
        "Cancel while a durable run waits for a worker after its hand-over",
        "`cancelled`; the worker that took its message later found it ended: no `resumed`",
    )


def durable_resumed_from_its_failed_step(lab: FaultLab) -> Outcome:
    """``POST .../rerun {"from_failed_step": true}`` on a durable run that failed at step 4 of 6; and the refusals.

    The new execution reuses steps 1-3 (their results name the original) and
    runs 4-6; anything but a failed durable execution gets a 400 with ``detail``;
    a plain rerun (no body, or ``{}``) starts over as before.
    """
    lab.start_worker("worker", concurrency=2)
    original = submit_durable(lab, step_seconds=0.05, fail_at_step=4)
    assert lab.api.wait_until_ended(original)["status"] == "failed"
    plain = str(lab.api.submit("demo_steps", inputs={"steps": 2, "step_seconds": 0, "fail_at_step": 2})["execution_id"])
    running = submit_durable(lab, steps=2, step_seconds=30)
    lab.api.wait_until_ended(plain)
    lab.api.wait_for(running, lambda e: e["status"] == "running")
    refusals = {}
    for label, execution_id in (("not durable", plain), ("not failed", running)):
        response = rerun(lab, execution_id, {"from_failed_step": True})
        assert response.status_code == 400 and response.json()["detail"], response.text
        refusals[label] = response.json()["detail"]
    assert lab.api.cancel(running).status_code == 200

    response = rerun(lab, original, {"from_failed_step": True})
    assert response.status_code == 202, response.text
    resumed = str(response.json()["execution_id"])
    watcher = lab.watch(resumed)
    events = finish(lab, watcher, timeout=WAIT_SECONDS)
    assert events[-1]["type"] == "completed", events[-1]
    outputs = events[-1]["outputs"]["steps"]
    assert [(s["name"], s["execution_id"]) for s in outputs] == [
        (f"step_{n}", original if n <= 3 else resumed) for n in range(1, STEPS + 1)
    ]
    steps = steps_of(lab, resumed)
    assert [(s["name"], s["status"], s["reused_from"]) for s in steps] == [
        (f"step_{n}", "completed", original if n <= 3 else None) for n in range(1, STEPS + 1)
    ]
    entered = [e["progress"]["current_step_name"] for e in events if e["type"] == "progress"]
    assert entered == ["step_4", "step_5", "step_6"], "the reused steps record no events"
    for body in (None, {}):
        again = rerun(lab, original, body)
        assert again.status_code == 202, again.text
        assert lab.api.wait_until_ended(again.json()["execution_id"])["status"] == "failed", "it starts over"
    return Outcome(
        "Resume from the failed step (a durable run failed at step 4 of 6)",
        "steps 1-3 reused from the original (`reused_from`), 4-6 run anew, `completed`; "
        f"400 with `detail` for a run that is not durable ({refusals['not durable']!r}) or not failed "
        f"({refusals['not failed']!r}); a plain rerun starts over",
    )


#: The durable scenarios the benchmark runs with the default settings (the others need short ones).
BENCH_SCENARIOS: tuple[Callable[[FaultLab], Outcome], ...] = (durable_worker_killed, durable_worker_terminated)
