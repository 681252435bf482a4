"""Cost of ``ctx.report()`` in a tight loop inside a running target.

Declares a one-step pipeline whose step calls ``ctx.report(i / N)`` N times
(100,000 by default) with a strictly rising fraction, so every call takes the
coalescing path of ``executions/runner.py`` (``RunContext._record_progress``):
at most one ``progress`` event per ``PROGRESS_COALESCE_SECONDS``, the rest folded
into the next one. The execution runs in this process through
``execution_run`` (the code a Celery worker runs), with its monitor thread, on
a throw-away SQLite file; the publish goes to Redis (``REDIS_URL``, or an
embedded one). Prints reports/s, ns per call, and how many events were recorded.

Run::

    .venv/bin/python -m bench.report_loop
    .venv/bin/python -m bench.report_loop --reports 1000000
    PROGRESS_COALESCE_SECONDS=0.02 .venv/bin/python -m bench.report_loop
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from django.conf import settings

# Sets Django up at import (its docstring), so it comes before the models.
from bench._setup import create_user_with_token
from executions.context import RunContext
from executions.models import Execution, ProgressSnapshot
from executions.registry import all_targets, pipeline
from executions.runner import execution_run

TARGET_ID = "bench_report_loop"


def measure(reports: int) -> tuple[float, list[str]]:
    """Run the loop target once; (seconds of the loop, the stored event types)."""
    measured: dict[str, float] = {}

    def report_loop(ctx: RunContext) -> dict[str, Any]:
        ctx.enter_step("loop")
        start = time.perf_counter()
        for i in range(1, reports + 1):
            ctx.report(i / reports)
        measured["seconds"] = time.perf_counter() - start
        return {"reports": reports}

    # A target of its own per call: a process may measure several sizes.
    target_id = f"{TARGET_ID}_{reports}_{len(all_targets())}"
    pipeline(target_id, steps=["loop"], inputs={})(report_loop)
    user, _ = create_user_with_token()
    execution = Execution.objects.create(owner=user, type="pipeline", target_id=target_id, inputs={}, config={})
    status = execution_run(execution_id=execution.id)
    assert status == "completed", status
    events = list(ProgressSnapshot.objects.filter(execution_id=execution.id).values_list("type", flat=True))
    return measured["seconds"], events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000, help="ctx.report() calls (default 100000)")
    args = parser.parse_args()

    reports = args.reports
    seconds, events = measure(reports)
    progress_events = events.count("progress")
    coalesce_ms = settings.PROGRESS_COALESCE_SECONDS * 1000
    print(f"report_loop: {reports:,} ctx.report() calls in one step, coalescing at {coalesce_ms:g} ms")
    print(
        f"  loop took {seconds:.3f} s: {reports / seconds:,.0f} reports/s, "
        f"{seconds / reports * 1e9:,.0f} ns per call"
    )
    counts = " + ".join(f"{events.count(t)} {t}" for t in dict.fromkeys(events))
    print(f"  events recorded: {len(events)} in all ({counts}); "
          f"{progress_events - 1} of them from the {reports:,} reports (the other progress event is entering the step)")
    if coalesce_ms:
        print(f"  the loop spans {seconds / settings.PROGRESS_COALESCE_SECONDS:.1f} coalescing intervals; "
              f"{reports / max(progress_events - 1, 1):,.0f} reports folded into each recorded event")


if __name__ == "__main__":
    main()
