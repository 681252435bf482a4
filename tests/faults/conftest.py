"""Fault tests: real Redis, daphne and Celery workers, faults injected, recovery measured.

Every test in this directory is live (marked in tests/conftest.py). Each
test gets a :class:`~tests.faults.scenarios.FaultLab` of its own: an embedded
Redis that it may stop or restart, a daphne, and the workers its scenario
starts, on the test database, with the short liveness settings of
``scenarios.FAST`` so the whole directory runs in a couple of minutes. The
measured recovery times are printed with the test (``-s``), kept as
``record_property`` values (JUnit XML), and gathered in a table at the end of
the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import stack as stack_module

from .scenarios import FAST, FaultLab, Outcome, table

_outcomes = pytest.StashKey[list[Outcome]]()


@pytest.fixture
def fault_lab(api_user: tuple[Any, str], tmp_path: Path) -> Iterator[FaultLab]:
    """Redis, daphne (workers are the scenario's) on the test database; stopped before its flush.

    Depends on ``api_user`` (committed, ``transactional_db``), so it is torn
    down first: no process writes while the tables are emptied.
    """
    # The lab starts its own Redis and sets REDIS_URL; the session's Redis is left alone.
    lab = FaultLab(base_env=stack_module.stack_env(""), work_dir=tmp_path, liveness=FAST, token=api_user[1])
    lab.start()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def report(request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> Callable[[Outcome], None]:
    """Print a scenario's outcome, record it as properties, and keep it for the summary table."""

    def report_outcome(outcome: Outcome) -> None:
        record_property("fault", outcome.fault)
        record_property("what_happened", outcome.happened)
        record_property("recovery_seconds", outcome.recovery_seconds)
        record_property("bound_seconds", outcome.bound_seconds)
        print(f"\n[fault] {outcome.fault}: {outcome.happened}; recovery {outcome.recovery_text}")
        request.config.stash.setdefault(_outcomes, []).append(outcome)

    return report_outcome


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    outcomes = config.stash.get(_outcomes, [])
    if outcomes:
        terminalreporter.write_sep("-", f"fault recovery (tests/faults, liveness settings {FAST})")
        terminalreporter.write_line(table(outcomes))
