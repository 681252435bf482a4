"""Redis restarted without persistence, and Redis down during a submit (see ``scenarios``)."""

from __future__ import annotations

from collections.abc import Callable

from . import scenarios
from .scenarios import FaultLab, Outcome


def test_every_execution_ends_after_redis_restarts_without_persistence(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.redis_restarted(fault_lab))


def test_a_submit_while_redis_is_down_answers_503_and_works_once_it_is_back(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.submit_while_redis_down(fault_lab))


def test_a_client_watching_across_a_redis_restart_gets_its_whole_stream(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(scenarios.redis_restarted_while_watching(fault_lab))
