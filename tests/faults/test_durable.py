"""Durable runs handed over on real processes: killed, stopped, capped, cancelled, resumed (see ``durable``)."""

from __future__ import annotations

from collections.abc import Callable

from . import durable
from .scenarios import FaultLab, Outcome


def test_sigkill_during_step_4_of_6_resumes_at_step_4_in_attempt_2(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(durable.durable_worker_killed(fault_lab))


def test_sigterm_past_the_grace_hands_a_durable_run_to_the_next_worker(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(durable.durable_worker_terminated(fault_lab))


def test_sigterm_to_every_worker_process_hands_a_durable_run_over_at_once(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(durable.durable_worker_group_terminated(fault_lab))


def test_a_loss_beyond_the_attempt_cap_fails_with_the_attempts(
    fault_lab: FaultLab, report: Callable[[Outcome], None]
) -> None:
    report(durable.durable_attempt_cap(fault_lab))


def test_a_cancel_during_the_hand_over_wins(fault_lab: FaultLab, report: Callable[[Outcome], None]) -> None:
    report(durable.durable_cancelled_during_hand_over(fault_lab))


def test_resume_from_the_failed_step_and_its_refusals(fault_lab: FaultLab, report: Callable[[Outcome], None]) -> None:
    report(durable.durable_resumed_from_its_failed_step(fault_lab))
