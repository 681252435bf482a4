"""Throughput and latency of ``executions.events.event_record`` on SQLite.

Records ``started``, N ``progress`` events and ``completed`` for one execution,
each in its own IMMEDIATE transaction, with the publish to Redis after commit
(``progress/broadcast.py``: handed to the publisher thread, then sent on one
long-lived connection). Prints events/s, the per-call latency distribution, and
how long the publisher needed to drain what was still queued at the end.

The database is a throw-away SQLite file (``SQLITE_PATH``), migrated first;
Redis is ``REDIS_URL``, or an embedded one started for the run.

Run::

    .venv/bin/python -m bench.event_record            # N = 2000
    .venv/bin/python -m bench.event_record --events 5000
"""

from __future__ import annotations

import argparse
import time

from django.conf import settings

# Sets Django up at import (its docstring), so it comes before the models.
from bench._setup import BENCH, create_user_with_token, describe_ms
from executions.events import event_record
from executions.models import EventType, Execution, ProgressSnapshot
from progress import broadcast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="progress events to record (default 2000)")
    args = parser.parse_args()

    bench = BENCH
    user, _ = create_user_with_token()
    total = args.events
    execution = Execution.objects.create(
        owner=user, type="pipeline", target_id="demo_steps",
        inputs={"steps": total, "step_seconds": 0, "fail_at_step": None}, config={},
    )

    def progress(step: int) -> dict:
        return {
            "current_step": step,
            "total_steps": total,
            "percentage": step / total * 100,
            "current_step_name": f"step_{step + 1}" if step < total else None,
        }

    # Warm-up outside the measurement: the first transaction opens the
    # connection, the first publish starts the publisher thread.
    event_record(execution_id=execution.id, event_type=EventType.STARTED, progress=progress(0))
    broadcast.flush()

    latencies: list[float] = []
    started = time.perf_counter()
    for step in range(total):
        t0 = time.perf_counter()
        recorded = event_record(execution_id=execution.id, event_type=EventType.PROGRESS, progress=progress(step))
        latencies.append(time.perf_counter() - t0)
        assert recorded is not None
    recorded_all = time.perf_counter()
    broadcast.flush(timeout=60)
    drained = time.perf_counter()
    event_record(execution_id=execution.id, event_type=EventType.COMPLETED, progress=progress(total), outputs={})
    broadcast.flush()

    stored = ProgressSnapshot.objects.filter(execution_id=execution.id).count()
    assert stored == total + 2, stored
    elapsed = recorded_all - started
    print(f"event_record: {total} progress events for one execution, SQLite ({bench.sqlite_path.name}, "
          f"{settings.DATABASES['default']['OPTIONS']['init_command']!r}), Redis {bench.redis_url}")
    print(f"  recorded in {elapsed:.2f} s: {total / elapsed:,.0f} events/s")
    print(f"  per call: {describe_ms(latencies)}")
    print(f"  publisher drained {drained - recorded_all:.3f} s after the last commit "
          f"({total / (drained - started):,.0f} events/s recorded and published)")
    print(f"  stored events: {stored} (started + {total} progress + completed)")


if __name__ == "__main__":
    main()
