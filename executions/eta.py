"""The estimated time left of a run (``progress.eta_seconds``), from its elapsed time and percentage.

Computed once, by the event writer, and stored in the progress: every surface
shows the same value, and no client repeats the rule. The estimate is a linear
extrapolation of the run so far, ``elapsed * (100 - p) / p`` rounded to a
tenth of a second, as of the event's ``timestamp`` (a countdown subtracts the
time since then).
"""

from __future__ import annotations

from datetime import datetime

from .frames import Progress
from .models import ExecutionStatus

#: Decimal places of ``eta_seconds`` (a tenth of a second).
ETA_DECIMALS = 1


def eta_seconds(*, status: str, percentage: float | None, elapsed_seconds: float | None) -> float | None:
    """Seconds left: ``0.0`` once completed, ``None`` when unknown or meaningless.

    Unknown: pending, not started, no progress yet (percentage 0). Meaningless:
    failed or cancelled (the run will never finish). A linear extrapolation
    because it needs nothing but what every run reports: steps of unequal
    length make it wrong mid-run, and right again as the run goes on.
    """
    if status == ExecutionStatus.COMPLETED:
        return 0.0
    if status != ExecutionStatus.RUNNING or percentage is None or elapsed_seconds is None:
        return None
    if percentage <= 0:
        return None
    remaining = max(elapsed_seconds, 0.0) * (100.0 - min(percentage, 100.0)) / percentage
    return round(remaining, ETA_DECIMALS)


def with_eta(progress: Progress | None, *, status: str, started_at: datetime | None, now: datetime) -> Progress | None:
    """``progress`` with its ``eta_seconds`` (any value a target reported in it is replaced)."""
    if progress is None:
        return None
    elapsed = (now - started_at).total_seconds() if started_at is not None else None
    return {
        **progress,
        "eta_seconds": eta_seconds(status=status, percentage=progress.get("percentage"), elapsed_seconds=elapsed),
    }
