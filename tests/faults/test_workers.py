"""Workers that die or are stopped mid-run, and a task message delivered twice (see ``scenarios``)."""

from __future__ import annotations

from collections.abc import Callable

from . import scenarios
from .scenarios import FaultLab, Outcome


def test_sigkill_to_the_whole_worker_is_failed_by_another_workers_sweeper(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.worker_killed(fault_lab))


def test_sigkill_to_the_pool_child_fails_the_run_as_worker_lost(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.pool_child_killed(fault_lab))


def test_sigterm_to_every_worker_process_fails_the_run_with_worker_shutdown(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.worker_group_terminated(fault_lab))


def test_sigterm_to_the_main_process_fails_a_long_run_after_the_grace(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.worker_terminated_long_run(fault_lab))


def test_sigterm_to_the_main_process_lets_a_short_run_complete(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.worker_terminated_short_run(fault_lab))


def test_a_task_message_delivered_twice_runs_once(fault_lab: FaultLab, report: Callable[[Outcome], None]) -> None:
    report(scenarios.duplicate_message(fault_lab))
