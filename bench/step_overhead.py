"""What ``ctx.step`` costs per step on SQLite, against ``ctx.enter_step``.

One execution per variant, N steps (1,000 by default) whose work is nothing,
run through a ``RunContext`` in this process (no monitor thread: the loop alone
is timed), each step's progress event recorded and published to Redis as in a
worker:

* ``enter_step``: what a target that is not durable does (one event);
* ``ctx.step``, not durable: the same, plus the JSON check of the result;
* ``ctx.step``, durable, first attempt: the event plus the step's row, marked
  running then completed (two more short transactions, each fenced on the attempt);
* ``ctx.step``, durable, every step completed before (a later attempt): the
  stored result read back, no event.

Beginning a durable run (one pending row per step, one insert) is timed apart.
The database is a throw-away SQLite file; Redis is ``REDIS_URL`` or an embedded one.

Run::

    .venv/bin/python -m bench.step_overhead
    .venv/bin/python -m bench.step_overhead --steps 200 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

# Sets Django up at import (its docstring), so it comes before the models.
from bench._setup import BENCH, create_user_with_token
from executions.context import RunContext
from executions.events import event_record
from executions.models import EventType, Execution
from progress import broadcast


def claimed_context(owner: Any, steps: int, *, durable: bool, attempt: int = 1) -> RunContext:
    """A running execution of ``steps`` steps and its context (the claim done as the runner does it)."""
    names = [f"step_{i}" for i in range(1, steps + 1)]
    execution = Execution.objects.create(
        owner=owner, type="pipeline", target_id="demo_durable", durable=durable,
        inputs={"steps": steps, "step_seconds": 0, "fail_at_step": None}, config={},
    )
    start = {"current_step": 0, "total_steps": steps, "percentage": 0.0, "current_step_name": None}
    assert event_record(execution_id=execution.id, event_type=EventType.STARTED, progress=start, worker="bench")
    return context_for(execution.id, names, durable=durable, attempt=attempt)


def context_for(execution_id: str, names: list[str], *, durable: bool, attempt: int) -> RunContext:
    return RunContext(
        execution_id=execution_id, inputs={}, config={}, steps=names, timeout=None,
        coalesce_seconds=0.1, poll_seconds=0.1, durable=durable, attempt=attempt,
    )


def result_of(name: str) -> dict[str, Any]:
    return {"name": name, "execution_id": "exec_000000000000", "attempt": 1}


def timed(loop: Callable[[], None]) -> float:
    started = time.perf_counter()
    loop()
    return time.perf_counter() - started


def measure(owner: Any, steps: int) -> dict[str, float]:
    """Seconds per step of each variant, and of beginning a durable run."""
    out: dict[str, float] = {}

    ctx = claimed_context(owner, steps, durable=False)
    out["enter_step"] = timed(lambda: [ctx.enter_step(name) for name in ctx.steps]) / steps

    ctx = claimed_context(owner, steps, durable=False)
    out["ctx.step, not durable"] = timed(lambda: [ctx.step(name, result_of, name) for name in ctx.steps]) / steps

    ctx = claimed_context(owner, steps, durable=True)
    out["begin_steps (per step)"] = timed(ctx.begin_steps) / steps
    out["ctx.step, durable"] = timed(lambda: [ctx.step(name, result_of, name) for name in ctx.steps]) / steps

    # The same execution handed over: attempt 2 finds every step completed.
    Execution.objects.filter(pk=ctx.execution_id).update(attempt=2, worker="")
    progress = {"current_step": steps, "total_steps": steps, "percentage": 100.0, "current_step_name": None}
    assert event_record(
        execution_id=ctx.execution_id, event_type=EventType.RESUMED, progress=progress, worker="bench-2", attempt=2
    )
    again = context_for(ctx.execution_id, ctx.steps, durable=True, attempt=2)
    again.begin_steps()
    reused = timed(lambda: [again.step(name, result_of, name) for name in again.steps])
    out["ctx.step, durable, reused"] = reused / steps
    broadcast.flush(timeout=60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per run (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (default 3)")
    args = parser.parse_args()

    owner, _ = create_user_with_token()
    measure(owner, 20)  # warm-up: connections, the publisher thread, the SQL caches
    runs = [measure(owner, args.steps) for _ in range(args.repeat)]
    print(f"ctx.step bookkeeping: {args.steps:,} steps per run, {args.repeat} runs, SQLite ({BENCH.sqlite_path.name})")
    base = statistics.median(run["enter_step"] for run in runs)
    for variant in runs[0]:
        values = [run[variant] * 1e6 for run in runs]
        median = statistics.median(values)
        extra = "" if variant == "enter_step" or variant.startswith("begin") else f"  ({median - base * 1e6:+,.0f} us)"
        spread = ", ".join(f"{v:,.0f}" for v in values)
        print(f"  {variant:<28} {median:>8,.0f} us per step (runs: {spread}){extra}")


if __name__ == "__main__":
    main()
