"""The run context: what a running target reports through (steps, progress, sleeps and waits).

A target never touches the database or the channel layer: everything it
reports goes through ``executions.events.event_record``. Cancellation is
cooperative: a monitor thread polls the status and watches the deadline,
every report checks the flag, and :meth:`RunContext.sleep` and
:meth:`RunContext.wait` wake at once when it is set. The same thread flushes a
coalesced report at most one interval late, and beats the run's heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from django.db import connection
from django.utils import timezone

from .events import event_record
from .frames import Progress
from .models import TERMINAL_STATUSES, EventType, Execution, ExecutionStatus

logger = logging.getLogger(__name__)


class ExecutionInterrupted(Exception):
    """Raised inside a target to stop it; the target should let it propagate."""


class ExecutionCancelled(ExecutionInterrupted):
    """The execution was cancelled (through the API or the admin)."""


class ExecutionTimeout(ExecutionInterrupted):
    """``config.timeout`` has passed since the execution started."""

    def __init__(self, timeout: float):
        super().__init__(f"Execution exceeded its timeout of {timeout:g} s")
        self.timeout = timeout


class StepError(RuntimeError):
    """A target entered a step that is not the next one it declared."""


class RunContext:
    """What a running target sees. One instance per run; not shared across threads."""

    def __init__(
        self,
        *,
        execution_id: str,
        inputs: Mapping[str, Any],
        config: Mapping[str, Any],
        steps: list[str],
        timeout: float | None,
        coalesce_seconds: float,
        poll_seconds: float,
        heartbeat_seconds: float = 5.0,
    ):
        self.execution_id = execution_id
        self.inputs = dict(inputs)
        self.config = dict(config)
        self.steps = steps
        self.timeout = timeout
        self._started = time.monotonic()
        self._deadline = None if timeout is None else self._started + timeout
        self._coalesce = coalesce_seconds
        self._poll = poll_seconds
        self._heartbeat = heartbeat_seconds
        self._finished_steps = 0
        self._step_index = -1  # 0-based index of the step running now; -1 before the first
        self._percentage = 0.0
        self._last_recorded = float("-inf")
        self._pending: Progress | None = None
        self._record_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason: ExecutionInterrupted | None = None
        self._monitor: threading.Thread | None = None
        self._monitor_done = threading.Event()

    # --- what a target calls -----------------------------------------------------
    @property
    def total_steps(self) -> int:
        return len(self.steps)

    @property
    def cancelled(self) -> bool:
        """True once the run should stop (cancelled or timed out)."""
        return self._stop.is_set() or self._deadline_passed()

    def check(self) -> None:
        """Raise :class:`ExecutionInterrupted` if the run should stop."""
        if self._deadline_passed():
            self._set_stop(ExecutionTimeout(self.timeout or 0))
        if self._stop.is_set():
            assert self._stop_reason is not None
            raise self._stop_reason

    def enter_step(self, name: str | None = None) -> None:
        """Start the next declared step; always recorded (never coalesced)."""
        self.check()
        index = self._step_index + 1
        if index >= self.total_steps:
            raise StepError(f"No step left to enter: the {self.total_steps} declared steps are done")
        expected = self.steps[index]
        if name is not None and name != expected:
            raise StepError(f"Entered step {name!r}, but the next declared step is {expected!r}")
        self._step_index = index
        self._finished_steps = index
        self._percentage = max(self._percentage, self._base_percentage(index))
        self._record_progress(self.current_progress(), force=True)

    def report(self, fraction: float) -> None:
        """Report how far the current step is, from 0.0 to 1.0; cheap to call often."""
        self.check()
        if self._step_index < 0 or self.total_steps == 0:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        pct = (self._step_index + fraction) / self.total_steps * 100
        if pct <= self._percentage:
            return
        self._percentage = min(pct, self._base_percentage(self._step_index + 1))
        self._record_progress(self.current_progress(), force=False)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once (raising) on cancel or timeout."""
        self.wait(None, seconds)

    def wait(self, event: threading.Event | None, timeout: float | None = None) -> bool:
        """Wait for ``event`` (or just ``timeout``); raise on cancel or timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self.check()
            now = time.monotonic()
            slices = [self._poll]
            if end is not None:
                if now >= end:
                    return bool(event and event.is_set())
                slices.append(end - now)
            if self._deadline is not None:
                slices.append(max(self._deadline - now, 0.0))
            slice_ = max(min(slices), 0.0)
            if event is not None:
                if event.wait(slice_):
                    self.check()
                    return True
            elif self._stop.wait(slice_):
                self.check()

    # --- used by the runner --------------------------------------------------------
    def start_monitor(self) -> None:
        self._monitor = threading.Thread(target=self._watch, name=f"monitor-{self.execution_id}", daemon=True)
        self._monitor.start()

    def stop_monitor(self) -> None:
        self._monitor_done.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)

    def final_progress(self) -> Progress:
        return {
            "current_step": self.total_steps,
            "total_steps": self.total_steps,
            "percentage": 100.0,
            "current_step_name": None,
        }

    def discard_pending(self) -> None:
        """A terminal event supersedes a coalesced report: fold it in by dropping it."""
        with self._record_lock:
            self._pending = None

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _set_stop(self, reason: ExecutionInterrupted) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def _base_percentage(self, finished: int) -> float:
        return 0.0 if self.total_steps == 0 else finished / self.total_steps * 100

    def current_progress(self) -> Progress:
        return {
            "current_step": self._finished_steps,
            "total_steps": self.total_steps,
            "percentage": self._percentage,
            "current_step_name": self.steps[self._step_index] if self._step_index >= 0 else None,
        }

    def _record_progress(self, progress: Progress, *, force: bool) -> None:
        with self._record_lock:
            now = time.monotonic()
            if not force and now - self._last_recorded < self._coalesce:
                self._pending = progress
                return
            self._pending = None
            self._write(progress, now)

    def _write(self, progress: Progress, now: float) -> None:
        if event_record(execution_id=self.execution_id, event_type=EventType.PROGRESS, progress=progress) is None:
            # Someone else ended it (a cancel through the API): stop the target.
            self._set_stop(ExecutionCancelled("Execution was cancelled"))
            assert self._stop_reason is not None
            raise self._stop_reason
        self._last_recorded = now

    def _flush_due(self) -> None:
        with self._record_lock:
            if self._pending is None:
                return
            now = time.monotonic()
            if now - self._last_recorded >= self._coalesce:
                pending, self._pending = self._pending, None
                with contextlib.suppress(ExecutionInterrupted):
                    self._write(pending, now)

    def _watch(self) -> None:
        """Poll for a cancel, watch the deadline, flush coalesced reports, and beat.

        The heartbeat (``heartbeat_at``, no event) tells the sweepers that this
        run is alive; a run whose heartbeat stops is failed as lost. A failing
        iteration (the database briefly unreachable) is logged and retried: if
        the monitor itself died, the run would be declared lost while alive.
        """
        tick = max(min(self._poll, self._coalesce or self._poll) / 2, 0.01)
        next_poll = next_beat = time.monotonic()
        try:
            while not self._monitor_done.wait(tick):
                try:
                    now = time.monotonic()
                    if self._deadline_passed():
                        self._set_stop(ExecutionTimeout(self.timeout or 0))
                    if now >= next_beat:
                        next_beat = now + self._heartbeat
                        Execution.objects.filter(pk=self.execution_id, status=ExecutionStatus.RUNNING).update(
                            heartbeat_at=timezone.now()
                        )
                    if now >= next_poll:
                        next_poll = now + self._poll
                        status = Execution.objects.filter(pk=self.execution_id).values_list("status", flat=True).first()
                        if status is None or status in TERMINAL_STATUSES:
                            self._set_stop(ExecutionCancelled("Execution was cancelled"))
                    if not self._stop.is_set():
                        self._flush_due()
                except Exception:  # a monitor failure must not kill the run
                    logger.exception("progress monitor of %s failed; retrying", self.execution_id)
                    self._monitor_done.wait(1.0)
        finally:
            connection.close()
