"""The faults of issue 8, once each, on real processes with the default liveness settings.

Runs every scenario of ``tests/faults/scenarios.py`` (the same code the fault
tests run with short settings): a worker killed with SIGKILL (its whole group,
or only the pool process running the task), stopped with SIGTERM (its whole
group, or its main process with a run longer and shorter than the grace),
Redis restarted without persistence, a task message delivered twice, a
submit while Redis is down, and a durable run's worker killed or stopped
(``tests/faults/durable.py``: the time from the kill to ``resumed``). Each gets its own embedded Redis and daphne, and
the workers it needs, on one throw-away SQLite database; a WebSocket client
watches every execution. Every invariant the tests check is checked here too.

The liveness variables (``EXECUTION_HEARTBEAT_SECONDS`` and the others in
``scenarios.LIVENESS_VARIABLES``) are removed from the environment first: the
point is to measure what a deployment gets by default. That takes a few
minutes, mostly waiting for the 30 s heartbeat timeout, requeue delay and
shutdown grace. The output ends with a Markdown table, "fault | what happened |
recovery time", as on docs/operations/reliability.md.

Run::

    .venv/bin/python -m bench.faults
    .venv/bin/python -m bench.faults --only worker_killed redis_restarted
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import bench._django  # noqa: F401 - sets Django up before anything below needs it
from devtools import processes
from tests.faults import durable, scenarios
from tests.faults.scenarios import FaultLab, Liveness, Outcome

#: ``manage.py drf_create_token`` prints "Generated token <key> for user <name>".
TOKEN_LINE = re.compile(r"Generated token (\w+) for user")
USERNAME = "bench-faults"


def prepare_database(work_dir: Path) -> tuple[dict[str, str], str]:
    """A migrated SQLite file and a user with an API token; (the processes' environment, the token)."""
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # settings would prefer it over SQLITE_PATH
    env["SQLITE_PATH"] = str(work_dir / "bench.sqlite3")
    env.setdefault("DJANGO_DEBUG", "1")  # a development secret key
    processes.manage(env, "migrate", "--noinput", "--verbosity", "0")
    processes.manage(env, "createsuperuser", "--noinput", "--username", USERNAME, "--email", "bench@example.com")
    match = TOKEN_LINE.search(processes.manage(env, "drf_create_token", USERNAME))
    if match is None:
        raise RuntimeError("drf_create_token printed no token")
    return env, match.group(1)


def run_one(
    scenario: Callable[[FaultLab], Outcome], *, env: dict[str, str], token: str, liveness: Liveness, work_dir: Path
) -> Outcome:
    """One scenario in a lab of its own; a failure becomes its row of the table."""
    lab = FaultLab(
        base_env=env, work_dir=work_dir / scenario.__name__, liveness=liveness, liveness_env=False, token=token
    )
    started = time.monotonic()
    try:
        lab.start()
        outcome = scenario(lab)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the next fault still runs
        traceback.print_exc()
        first_line = (str(exc) or type(exc).__name__).splitlines()[0]
        outcome = Outcome(scenario.__name__, f"**FAILED**: {first_line} (logs: {lab.work_dir})")
    finally:
        lab.close()
    elapsed = time.monotonic() - started
    print(f"[{elapsed:5.1f} s] {outcome.fault}: {outcome.happened}; {outcome.recovery_text}", flush=True)
    return outcome


#: Every scenario the benchmark runs, in the order of the table.
ALL_SCENARIOS = (*scenarios.SCENARIOS, *durable.BENCH_SCENARIOS)


def main(argv: Sequence[str] | None = None) -> int:
    names = [scenario.__name__ for scenario in ALL_SCENARIOS]
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=names, metavar="FAULT", help=f"some of: {', '.join(names)}")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = parser.parse_args(argv)
    for name in scenarios.LIVENESS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_DEBUG", "1")
    liveness = Liveness.from_settings()
    work_dir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    try:
        env, token = prepare_database(work_dir)
        print(f"liveness settings (defaults): {liveness}; work directory {work_dir}", flush=True)
        outcomes = [
            run_one(scenario, env=env, token=token, liveness=liveness, work_dir=work_dir)
            for scenario in ALL_SCENARIOS
            if not args.only or scenario.__name__ in args.only
        ]
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    print()
    print(
        f"Heartbeat every {liveness.heartbeat:g} s, timeout {liveness.timeout:g} s, sweep every "
        f"{liveness.sweep:g} s, requeue after {liveness.requeue:g} s, shutdown grace {liveness.grace:g} s "
        f"(bounds include {scenarios.SLACK_SECONDS:g} s of slack)."
    )
    print()
    print(scenarios.table(outcomes))
    return 1 if any(o.happened.startswith("**FAILED**") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
